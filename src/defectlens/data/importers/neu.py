"""NEU-DET (steel surface defects): ``IMAGES/*.jpg`` + ``ANNOTATIONS/*.xml`` (Pascal VOC).

The image label is the class with the largest total box area in its XML ``<name>`` fields, not the
file name: 111 of the public XMLs hold boxes of other classes (e.g. a ``patches`` box in
``crazing_104.xml``). Every disagreement is reported, as are images without XML and XML without
image, so that the user sees exactly where the file name and the annotation part ways.
``labels="file"`` labels by file name instead, as NEU-CLS (where the published NEU classification
figures come from) does; the XML then only fills in for a file name that names no class.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from defectlens.core.errors import DefectlensError
from defectlens.data.importers._scan import Candidate, Scan, files_under, rel, require_dir

_NUMBERED = re.compile(r"^(?P<cls>.+?)_\d+$")


def file_class(stem: str) -> str | None:
    """Class named by a file name such as ``rolled-in_scale_12`` -> ``rolled-in_scale``."""
    m = _NUMBERED.match(stem)
    return m.group("cls") if m else None


def _find_dir(root: Path, name: str) -> Path | None:
    for p in root.iterdir():
        if p.is_dir() and p.name.lower() == name.lower():
            return p
    return None


def parse_voc(path: Path) -> tuple[str, list[list[Any]]]:
    """``(<filename> text, [[name, xmin, ymin, xmax, ymax], ...])`` of one VOC XML file.

    Raises:
        DefectlensError: when the XML does not parse or a box lacks a coordinate.
    """
    try:
        root = ET.parse(path).getroot()
        boxes = []
        for obj in root.iter("object"):
            bb = obj.find("bndbox")
            name = (obj.findtext("name") or "").strip()
            if bb is None or not name:
                raise ValueError("an <object> without <name> or <bndbox>")
            coords = [_coordinate(bb.findtext(k), k) for k in ("xmin", "ymin", "xmax", "ymax")]
            boxes.append([name, *coords])
    except (ET.ParseError, ValueError) as exc:
        raise DefectlensError(f"{path}: bad VOC XML ({exc})") from None
    return (root.findtext("filename") or "").strip(), boxes


def _coordinate(text: str | None, key: str) -> int:
    """A box coordinate as an integer pixel; a missing, non-numeric or non-finite one is an error."""
    try:
        value = float(text) if text is not None else math.nan
    except ValueError:
        raise ValueError(f"<{key}> {text!r:.40} is not a number") from None
    if not math.isfinite(value) or abs(value) > 1e7:
        raise ValueError(f"<{key}> {text!r:.40} is not a finite pixel coordinate")
    return round(value)


def box_label(boxes: list[list[Any]], fallback: str | None) -> str | None:
    """Class with the largest total box area; ties go to ``fallback`` (the file-name class), then by name."""
    area: dict[str, float] = {}
    for name, x0, y0, x1, y1 in boxes:
        area[name] = area.get(name, 0.0) + max(0, x1 - x0) * max(0, y1 - y0)
    if not area:
        return fallback
    best = max(area.values())
    tied = sorted(n for n, a in area.items() if a == best)
    return fallback if fallback in tied else tied[0]


LABEL_SOURCES = ("boxes", "file")


def scan_neu(src: str | Path, *, labels: str = "boxes") -> Scan:
    """Walk a NEU-DET folder; see the module docstring for the labelling rules and reports.

    Args:
        src: the folder holding ``IMAGES/`` and ``ANNOTATIONS/``.
        labels: ``boxes`` (the class with the largest total box area) or ``file`` (the file name).
    """
    if labels not in LABEL_SOURCES:
        raise DefectlensError(f"NEU-DET labels must come from one of {', '.join(LABEL_SOURCES)}, got {labels!r}")
    root = require_dir(src, "NEU-DET IMAGES/ and ANNOTATIONS/ folders")
    images_dir, xml_dir = _find_dir(root, "IMAGES"), _find_dir(root, "ANNOTATIONS")
    if images_dir is None or xml_dir is None:
        raise DefectlensError(f"{root}: the neu-det format expects IMAGES/ and ANNOTATIONS/ folders inside it")
    scan = Scan(root=root, name="neu-det")
    report: dict[str, list[Any]] = {
        "label_disagrees_with_file_name": [],
        "xml_with_other_classes": [],
        "images_without_xml": [],
        "xml_without_image": [],
        "bad_xml": [],
    }
    images = {f.stem: f for f in files_under(images_dir, scan)}
    xmls: dict[str, Path] = {}
    for f in files_under(xml_dir, scan):
        if f.suffix.lower() == ".xml":
            xmls[f.stem] = f
        else:
            scan.skip(f, "not an .xml annotation file")
    used_xml: set[Path] = set()
    for stem, image in images.items():
        named = file_class(stem)
        xml = xmls.get(stem)
        boxes: list[list[Any]] = []
        if xml is None:
            report["images_without_xml"].append(rel(image, root))
        else:
            used_xml.add(xml)
            try:
                _, boxes = parse_voc(xml)
            except DefectlensError as exc:
                report["bad_xml"].append({"path": rel(xml, root), "reason": str(exc).split(": ", 1)[-1]})
        boxed = box_label(boxes, named)
        label = named if labels == "file" and named is not None else boxed
        if label is None:
            scan.skip(image, "no usable annotation and the file name names no class (expected <class>_<n>.jpg)")
            continue
        others = sorted({b[0] for b in boxes} - {named})
        ref = rel(image, root)
        if others:
            report["xml_with_other_classes"].append({"path": ref, "file_class": named, "xml_classes": others})
        if named is not None and boxed != named:
            report["label_disagrees_with_file_name"].append({"path": ref, "file_class": named, "label": boxed})
        meta = {"boxes": boxes, "file_class": named}
        scan.candidates.append(Candidate(file=image, ref=ref, label=label, meta=meta))
    # XMLs are matched by file stem, never by their <filename> field, which in the public data
    # sometimes lacks the extension.
    report["xml_without_image"] = [rel(x, root) for x in xmls.values() if x not in used_xml]
    scan.info["neu"] = report
    for key, items in report.items():
        if items:
            scan.warnings.append(f"NEU-DET: {len(items)} {key.replace('_', ' ')} (see info['neu']['{key}'])")
    return scan
