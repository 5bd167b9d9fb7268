"""NEU-DET importer on synthetic IMAGES/ + ANNOTATIONS/ with the real data's quirks."""

from __future__ import annotations

from pathlib import Path

import pytest

from defectlens.core.errors import DefectlensError
from defectlens.data.importers import import_dataset
from defectlens.data.importers.neu import box_label, file_class
from tests.unit.data.conftest import write_image, write_voc


def _neu(root: Path) -> Path:
    img, ann = root / "IMAGES", root / "ANNOTATIONS"
    for i, c in enumerate(("crazing", "patches", "rolled-in_scale")):
        write_image(img / f"{c}_1.jpg", i, mode="RGB")
        # <filename> without extension and <depth>1 on an RGB JPEG, as in the public XMLs
        write_voc(ann / f"{c}_1.xml", f"{c}_1", [(c, 0, 0, 10, 10)])
    # multi-class XML whose largest area is another class than the file name
    write_image(img / "crazing_2.jpg", 10, mode="RGB")
    write_voc(ann / "crazing_2.xml", "crazing_2.jpg", [("crazing", 0, 0, 5, 5), ("patches", 0, 0, 20, 20)])
    # multi-class XML that still agrees with the file name
    write_image(img / "patches_2.jpg", 11, mode="RGB")
    write_voc(ann / "patches_2.xml", "patches_2.jpg", [("patches", 0, 0, 20, 20), ("crazing", 0, 0, 3, 3)])
    write_image(img / "patches_3.jpg", 12, mode="RGB")  # no XML
    write_voc(ann / "inclusion_9.xml", "inclusion_9.jpg", [("inclusion", 1, 1, 4, 4)])  # no image
    (ann / "broken.xml").write_text("<annotation><object>")
    write_image(img / "patches_4.jpg", 13, mode="RGB")
    (ann / "patches_4.xml").write_text("<annotation><object>")  # bad XML for an existing image
    return root


def test_neu_labels_from_largest_box_area_and_reports(tmp_path: Path) -> None:
    m = import_dataset(_neu(tmp_path), fmt="neu-det")
    labels = {r.path: r.label for r in m.records}
    assert labels == {
        "IMAGES/crazing_1.jpg": "crazing",
        "IMAGES/patches_1.jpg": "patches",
        "IMAGES/rolled-in_scale_1.jpg": "rolled-in_scale",
        "IMAGES/crazing_2.jpg": "patches",
        "IMAGES/patches_2.jpg": "patches",
        "IMAGES/patches_3.jpg": "patches",
        "IMAGES/patches_4.jpg": "patches",
    }
    rec = next(r for r in m.records if r.path == "IMAGES/crazing_2.jpg")
    assert rec.meta["boxes"] == [["crazing", 0, 0, 5, 5], ["patches", 0, 0, 20, 20]]
    assert rec.meta["file_class"] == "crazing"
    neu = m.info["neu"]
    assert neu["label_disagrees_with_file_name"] == [
        {"path": "IMAGES/crazing_2.jpg", "file_class": "crazing", "label": "patches"}
    ]
    assert [e["path"] for e in neu["xml_with_other_classes"]] == ["IMAGES/crazing_2.jpg", "IMAGES/patches_2.jpg"]
    assert neu["images_without_xml"] == ["IMAGES/patches_3.jpg"]
    assert sorted(neu["xml_without_image"]) == ["ANNOTATIONS/broken.xml", "ANNOTATIONS/inclusion_9.xml"]
    assert [e["path"] for e in neu["bad_xml"]] == ["ANNOTATIONS/patches_4.xml"]
    assert m.info["positive_class"] is None and len(m.classes) == 3


def test_neu_labels_from_file_names_keep_the_disagreement_report(tmp_path: Path) -> None:
    m = import_dataset(_neu(tmp_path), fmt="neu-det", neu_labels="file")
    labels = {r.path: r.label for r in m.records}
    assert labels["IMAGES/crazing_2.jpg"] == "crazing"  # the XML's largest box says patches
    assert labels["IMAGES/patches_2.jpg"] == "patches" and len(labels) == 7
    assert m.info["neu"]["label_disagrees_with_file_name"] == [
        {"path": "IMAGES/crazing_2.jpg", "file_class": "crazing", "label": "patches"}
    ]
    with pytest.raises(DefectlensError, match="one of boxes, file"):
        import_dataset(tmp_path, fmt="neu-det", neu_labels="names")


def test_file_class_and_tie_break() -> None:
    assert file_class("rolled-in_scale_12") == "rolled-in_scale"
    assert file_class("noclass") is None
    assert box_label([["a", 0, 0, 2, 2], ["b", 0, 0, 2, 2]], "b") == "b"
    assert box_label([["a", 0, 0, 2, 2], ["b", 0, 0, 2, 2]], "c") == "a"
    assert box_label([], "c") == "c"
