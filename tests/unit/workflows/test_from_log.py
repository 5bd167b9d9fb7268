"""Operator verdicts as training data: a dataset from the inspection log, merged into a split one without leakage."""

from __future__ import annotations

import hashlib
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from defectlens.core.errors import DefectlensError
from defectlens.data.manifest import MANIFEST_FILE, Manifest
from defectlens.inspections import ImageStore, InspectionLog, NewInspection
from defectlens.workflows.from_log import LOG_FORMAT, LogImportConfig, build_from_log


def png(seed: int) -> bytes:
    """A distinct 32 px noise image as PNG bytes (seeds are far apart in perceptual hash)."""
    arr = np.random.default_rng(seed).integers(0, 255, (32, 32), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr, mode="L").save(buf, "PNG")
    return buf.getvalue()


def record(log: InspectionLog, store: ImageStore | None, data: bytes, *, status: str = "ok", prediction=None) -> int:
    """One row as the service records it: with the stored copy's path when ``store`` is given."""
    return log.record(
        NewInspection(
            source="api",
            client_name=f"part-{hashlib.sha256(data).hexdigest()[:6]}.png",
            image_sha256=hashlib.sha256(data).hexdigest(),
            image_bytes=len(data),
            status=status,
            prediction=prediction if status == "ok" else None,
            model_id="m-1",
            station="line-1",
            image_path=store.put(data, image_format="PNG") if store is not None else None,
        )
    )


@pytest.fixture
def reviewed_log(tmp_path):
    """A log with every kind of row; returns (log path, image folder, {name: inspection id})."""
    store = ImageStore(tmp_path / "store")
    with InspectionLog(tmp_path / "log.sqlite") as log:
        ids = {
            "confirmed": record(log, store, png(1), prediction="defect"),
            "overridden": record(log, store, png(2), prediction="defect"),
            "unreviewed": record(log, store, png(3), prediction="ok"),
            "needs_review": record(log, store, png(4), status="needs_review"),
            "error": record(log, store, png(5), status="error"),
            "not_stored": record(log, None, png(6), prediction="ok"),
        }
        log.set_verdict(ids["confirmed"], "confirmed", operator="ana")
        log.set_verdict(ids["overridden"], "overridden", label="ok", operator="ben", comment="dust, not a crack")
        log.set_verdict(ids["not_stored"], "confirmed", operator="ana")
    return tmp_path / "log.sqlite", tmp_path / "store", ids


def by_inspection(manifest: Manifest) -> dict[int, object]:
    return {r.meta["inspection_id"]: r for r in manifest.records}


def test_verdicts_become_labels_with_provenance(reviewed_log):
    log, images, ids = reviewed_log
    built = build_from_log(LogImportConfig(log=log, images=images))
    m = built.manifest
    rows = by_inspection(m)
    assert sorted(rows) == [ids["confirmed"], ids["overridden"]]  # the unreviewed and the unstored stay out
    confirmed, overridden = rows[ids["confirmed"]], rows[ids["overridden"]]
    assert (confirmed.label, overridden.label) == ("defect", "ok")  # the override is the label, not the decision
    assert overridden.meta["verdict"] == "overridden" and overridden.meta["prediction"] == "defect"
    assert overridden.meta["operator"] == "ben" and overridden.meta["station"] == "line-1"
    assert overridden.meta["model_id"] == "m-1" and overridden.meta["verdict_utc"]
    assert overridden.meta["label_source"] == "operator" and len(overridden.meta["phash"]) == 64
    assert m.resolve(overridden).read_bytes() == png(2)  # the stored copy itself, not a new one
    assert m.info["format"] == LOG_FORMAT and m.info["classes"] == ["defect", "ok"]
    assert m.info["positive_class"] == "defect"
    counts = m.info["log"]
    assert (counts["rows"], counts["stored"], counts["by_operator"]) == (6, 5, 2)
    assert (counts["unreviewed"], counts["not_judged"], counts["missing_images"]) == (1, 2, 0)
    assert Manifest.read(m.write(log.parent / "ds")).records == m.records  # written and read back as any dataset


def test_unreviewed_decisions_only_on_request_and_marked(reviewed_log):
    log, images, ids = reviewed_log
    m = build_from_log(LogImportConfig(log=log, images=images, include_unreviewed=True)).manifest
    rows = by_inspection(m)
    assert sorted(rows) == [ids["confirmed"], ids["overridden"], ids["unreviewed"]]  # never needs_review / error
    assert rows[ids["unreviewed"]].label == "ok" and rows[ids["unreviewed"]].meta["label_source"] == "model"
    assert rows[ids["unreviewed"]].meta["verdict"] is None
    assert m.info["log"]["by_model"] == 1 and m.info["log"]["not_judged"] == 2


def test_station_and_model_narrow_the_rows(reviewed_log):
    log, images, _ = reviewed_log
    assert len(build_from_log(LogImportConfig(log=log, images=images, station="line-1")).manifest.records) == 2
    with pytest.raises(DefectlensError, match="no inspection matching --station/--model-id in the log"):
        build_from_log(LogImportConfig(log=log, images=images, station="line-1", model_id="m-2"))


def test_an_override_of_a_frame_the_model_did_not_judge_is_data(tmp_path):
    store = ImageStore(tmp_path / "store")
    with InspectionLog(tmp_path / "log.sqlite") as log:
        i = record(log, store, png(1), status="needs_review")
        log.set_verdict(i, "overridden", label="defect", operator="ana")
    m = build_from_log(LogImportConfig(log=tmp_path / "log.sqlite", images=tmp_path / "store")).manifest
    assert [(r.label, r.meta["inspection_id"]) for r in m.records] == [("defect", i)]


def test_an_image_inspected_twice_is_one_record_with_its_newest_verdict(tmp_path):
    store = ImageStore(tmp_path / "store")
    with InspectionLog(tmp_path / "log.sqlite") as log:
        first, again = record(log, store, png(1), prediction="defect"), record(log, store, png(1), prediction="defect")
        log.set_verdict(first, "confirmed")
        log.set_verdict(again, "overridden", label="ok")
        other = record(log, store, png(2), prediction="ok")
        log.set_verdict(other, "confirmed")
    m = build_from_log(LogImportConfig(log=tmp_path / "log.sqlite", images=tmp_path / "store")).manifest
    assert sorted((r.meta["inspection_id"], r.label) for r in m.records) == [(again, "ok"), (other, "ok")]
    assert m.info["log"]["repeated"] == 1
    assert any("different labels (defect, ok)" in w for w in m.info["warnings"])


def test_a_missing_stored_image_is_named_skipped_and_counted(reviewed_log):
    log, images, ids = reviewed_log
    with InspectionLog(log) as opened:
        gone = images / str(opened.get(ids["confirmed"]).image_path)
    gone.unlink()
    m = build_from_log(LogImportConfig(log=log, images=images)).manifest
    assert [r.meta["inspection_id"] for r in m.records] == [ids["overridden"]]
    assert m.info["log"]["missing_images"] == 1
    (skipped,) = m.info["skipped"]
    assert f"inspection {ids['confirmed']}" in skipped["reason"] and str(gone) in skipped["reason"]


@pytest.mark.parametrize(
    ("case", "says"),
    [
        ("no_stored_images", "start the service with --store-images"),
        ("nothing_reviewed", "1 await an operator's verdict, 1 were not judged"),
        ("empty_log", "no inspection in the log"),
        ("no_log", "no inspection log there"),
        ("no_folder", "--store-images wrote"),
        ("all_missing", "stored image missing"),
    ],
)
def test_bad_logs_are_refused_by_name(tmp_path, case, says):
    store = ImageStore(tmp_path / "store")
    path = tmp_path / "log.sqlite"
    with InspectionLog(path) as log:
        if case == "no_stored_images":
            log.set_verdict(record(log, None, png(1), prediction="ok"), "confirmed")
        elif case == "nothing_reviewed":
            record(log, store, png(1), prediction="ok")
            record(log, store, png(2), status="needs_review")
        elif case == "all_missing":
            log.set_verdict(record(log, store, png(1), prediction="ok"), "confirmed")
            shutil.rmtree(tmp_path / "store")
            (tmp_path / "store").mkdir()
    config = LogImportConfig(
        log=tmp_path / "elsewhere.sqlite" if case == "no_log" else path,
        images=tmp_path / "nowhere" if case == "no_folder" else tmp_path / "store",
    )
    with pytest.raises(DefectlensError) as err:
        build_from_log(config)
    assert says in str(err.value)
    if case in ("no_stored_images", "nothing_reviewed", "empty_log"):
        assert str(path) in str(err.value)  # the log is named


# -- merging into a split dataset ------------------------------------------------------------------------------------


@pytest.fixture
def split_dataset(tmp_path):
    """A dataset imported and split as ``data import`` + ``data split`` make it: 16 images a class (seed 0)."""
    from defectlens.data.importers import import_dataset
    from defectlens.data.split import split_manifest

    for label, base in (("defect", 100), ("ok", 200)):
        (tmp_path / "parts" / label).mkdir(parents=True)
        for i in range(16):
            (tmp_path / "parts" / label / f"{i:02d}.png").write_bytes(png(base + i))
    m = split_manifest(import_dataset(tmp_path / "parts", fmt="folder", workers=1), seed=0)
    return m.write(tmp_path / "dataset")


def test_merge_keeps_every_split_and_keeps_duplicates_of_test_and_val_out_of_train(split_dataset, tmp_path):
    before = (split_dataset / MANIFEST_FILE).read_text(encoding="utf-8")
    old = Manifest.read(split_dataset)
    test_img = next(r for r in old.split("test"))
    val_img = next(r for r in old.split("val"))
    store = ImageStore(tmp_path / "store")
    with InspectionLog(tmp_path / "log.sqlite") as log:
        near_test = record(log, store, nudged(old, test_img), prediction="defect")
        copy_val = record(log, store, old.resolve(val_img).read_bytes(), prediction=val_img.label)
        fresh = [record(log, store, png(300 + i), prediction="ok") for i in range(6)]
        for i in (near_test, *fresh):
            log.set_verdict(i, "confirmed", operator="ana")
        other = "ok" if val_img.label == "defect" else "defect"
        log.set_verdict(copy_val, "overridden", label=other, operator="ben")
    config = LogImportConfig(log=tmp_path / "log.sqlite", images=tmp_path / "store")
    built = build_from_log(config, merge_into=split_dataset)
    built.manifest.write(split_dataset)

    after = (split_dataset / MANIFEST_FILE).read_text(encoding="utf-8")
    assert after.startswith(before)  # the existing rows, byte for byte, in their place
    merged = Manifest.read(split_dataset)
    new = {r.meta["inspection_id"]: r for r in merged.records[len(old.records) :]}
    assert sorted(new) == sorted([near_test, *fresh])  # the exact copy of a val image is not added again
    assert new[near_test].split == test_img.split == "test" and new[near_test].group == test_img.group
    report = built.merge
    assert report is not None
    held = {"path": new[near_test].path, "inspection_id": near_test, "split": "test", "twin": test_img.path}
    assert report.held_out == [held]
    (left,) = report.left_out
    assert left["inspection_id"] == copy_val and f"a copy of {val_img.path} (val" in left["reason"]
    assert report.label_conflicts[0]["label"] == other and report.label_conflicts[0]["twin_label"] == val_img.label
    # new images are dealt by the dataset's seeded rule: the same merge gives the same splits
    again = build_from_log(config, merge_into=_copy(old, tmp_path))
    assert [r.split for r in again.manifest.records] == [r.split for r in merged.records]
    assert sum(report.added.values()) == 7 and merged.info["split"]["counts"] == merged.counts()
    assert merged.info["merges"][-1]["log"]["by_operator"] == 8
    assert all(Path(r.path).is_absolute() for r in new.values())  # the store's files, from the dataset's folder
    _loads_as_train_does(split_dataset)


def nudged(manifest: Manifest, record) -> bytes:
    arr = np.array(Image.open(manifest.resolve(record)))
    arr[0, :3] = arr[0, :3] // 2 + 1  # a re-shot of the same part: a few pixels differ
    buf = io.BytesIO()
    Image.fromarray(arr, mode="L").save(buf, "PNG")
    return buf.getvalue()


def _copy(manifest: Manifest, tmp_path: Path) -> Path:
    return manifest.write(tmp_path / "dataset-copy")


def _loads_as_train_does(folder: Path) -> None:
    """What ``defectlens train --data`` does with a dataset before the first batch, and one epoch of it."""
    import torch

    from defectlens.training import train
    from defectlens.training.config import TrainConfig

    torch.set_num_threads(1)
    result = train(
        TrainConfig(
            data=str(folder),
            model="simple_cnn",
            pretrained=False,
            channels=1,
            input_size=32,
            epochs=1,
            batch_size=16,
            augment="light",
            patience=0,
            workers=1,
            evaluate=False,
            out=str(folder.parent / "runs"),
            name="from-log",
        )
    )
    assert (result.run_dir / "best.pt").is_file()
    assert result.history[0]["epoch"] == 1


def test_merge_refuses_a_class_the_dataset_lacks_unless_asked(split_dataset, tmp_path):
    store = ImageStore(tmp_path / "store")
    with InspectionLog(tmp_path / "log.sqlite") as log:
        i = record(log, store, png(400), prediction="ok")
        log.set_verdict(i, "overridden", label="scratch")
    config = LogImportConfig(log=tmp_path / "log.sqlite", images=tmp_path / "store")
    with pytest.raises(DefectlensError, match=r"labelled 'scratch' \(1 image\(s\)\), not a class of the dataset"):
        build_from_log(config, merge_into=split_dataset)
    built = build_from_log(config, merge_into=split_dataset, add_classes=True)
    assert built.manifest.classes == ["defect", "ok", "scratch"]  # appended: the existing indices stay
    assert built.merge is not None and built.merge.added_classes == ["scratch"]


def test_merge_into_a_folder_that_is_no_dataset_is_refused(reviewed_log, tmp_path):
    log, images, _ = reviewed_log
    with pytest.raises(DefectlensError, match="not a defectlens dataset"):
        build_from_log(LogImportConfig(log=log, images=images), merge_into=tmp_path / "nothing")


# -- through the web service -----------------------------------------------------------------------------------------


def test_an_override_through_the_service_is_the_label_in_the_dataset(bundle, tmp_path):
    from tests.require import import_or_missing

    import_or_missing("fastapi", flag="SERVE", reason="the web service needs the [serve] extra")
    from fastapi.testclient import TestClient

    from defectlens.inference.predictor import Predictor
    from defectlens.serve import ServeConfig, create_app
    from tests.unit.serve.conftest import BASE, wait_ready

    log = InspectionLog(tmp_path / "log.sqlite")
    app = create_app(
        Predictor.load(bundle, threads=1),
        log,
        config=ServeConfig(worker_threads=1),
        store=ImageStore(tmp_path / "images"),
    )
    with TestClient(app, base_url=BASE) as client:
        wait_ready(client)
        ids = []
        for seed, threshold in ((1, "0"), (2, "0")):  # threshold 0: the model calls every part a defect
            r = client.post("/v1/predict", files=[("files", ("p.png", png(seed), "image/png"))],
                            data={"threshold": threshold})  # fmt: skip
            ids.append(r.json()["results"][0]["inspection_id"])
        r = client.post(f"/v1/inspections/{ids[0]}/verdict", json={"verdict": "overridden", "label": "ok"})
        assert r.status_code == 200, r.text
        assert client.post(f"/v1/inspections/{ids[1]}/verdict", json={"verdict": "confirmed"}).status_code == 200
    log.close()
    m = build_from_log(LogImportConfig(log=f"sqlite:///{tmp_path / 'log.sqlite'}", images=tmp_path / "images")).manifest
    labels = {r.meta["inspection_id"]: (r.label, r.meta["prediction"], r.meta["verdict"]) for r in m.records}
    assert labels == {ids[0]: ("ok", "defect", "overridden"), ids[1]: ("defect", "defect", "confirmed")}
