"""Which model class a class subfolder stands for: as named, and for an anomaly model every defect kind
beside the normal class's folder is ``anomalous`` (MVTec AD's ``test/``)."""

from __future__ import annotations

from defectlens.core.anomaly import ANOMALOUS, subfolder_classes


def test_a_classifier_takes_only_folders_named_like_its_classes() -> None:
    assert subfolder_classes(("ok", "defect"), {"ok", "defect", "scratch"}) == {"ok": "ok", "defect": "defect"}


def test_an_anomaly_model_takes_the_defect_kinds_beside_its_normal_folder_as_anomalous() -> None:
    got = subfolder_classes(("good", ANOMALOUS), {"good", "scratch", "crack"})
    assert got == {"good": "good", "scratch": ANOMALOUS, "crack": ANOMALOUS}


def test_without_the_normal_folder_other_folders_stay_unlabelled() -> None:
    assert subfolder_classes(("good", ANOMALOUS), {"batch1", "batch2"}) == {}
    assert subfolder_classes(("good", ANOMALOUS), {"anomalous", "batch1"}) == {ANOMALOUS: ANOMALOUS}
