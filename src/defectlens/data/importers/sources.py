"""Scanners for the class-per-folder, casting (Kaggle), CSV and ELPV sources.

Each scanner only walks the source and names candidate files with their labels; opening,
hashing and refusing broken files happens once, in the shared pipeline of
:mod:`defectlens.data.importers`.
"""

from __future__ import annotations

import csv
import io
import os
from importlib import resources
from pathlib import Path
from typing import Any

from defectlens.core.errors import DefectlensError
from defectlens.data.importers._scan import (
    SPLIT_DIRS,
    Candidate,
    Scan,
    files_under,
    rel,
    require_dir,
    scan_class_folders,
)

CASTING_CLASSES = ("def_front", "ok_front")
ELPV_CLASSES = (2, 4)
ELPV_PACKAGE = "elpv_dataset"


def _split_dirs(root: Path) -> dict[Path, str]:
    return {
        p: SPLIT_DIRS[p.name.lower()] for p in sorted(root.iterdir()) if p.is_dir() and p.name.lower() in SPLIT_DIRS
    }


def scan_folder(src: str | Path) -> Scan:
    """``root/<class>/*`` or ``root/{train,val,test}/<class>/*`` (splits kept)."""
    root = require_dir(src, "class folders")
    scan = Scan(root=root, name=root.name)
    splits = _split_dirs(root)
    if not splits:
        scan_class_folders(scan, root, split="")
        return scan
    for folder, split in splits.items():
        scan_class_folders(scan, folder, split=split)
    masks = _attach_masks(scan, root / MASK_DIR) if (root / MASK_DIR).is_dir() else set()
    for entry in sorted(root.iterdir()):
        if entry not in splits:
            for f in files_under(entry, scan) if entry.is_dir() else [entry]:
                if f not in masks:
                    scan.skip(f, _unused_reason(entry))
    return scan


#: MVTec AD's folder of defect masks: ``ground_truth/<class>/<image stem>_mask.png``.
MASK_DIR = "ground_truth"


def _attach_masks(scan: Scan, folder: Path) -> set[Path]:
    """Give each image its MVTec AD mask (``meta["mask"]``, relative to the root); returns the masks used.

    A mask without its image is listed as skipped (by the caller); a defect image without a mask is
    counted in a warning (pixel figures then leave it out).
    """
    used: set[Path] = set()
    for c in scan.candidates:
        mask = folder / c.label / f"{c.file.stem}_mask.png"
        if c.split == "test" and mask.is_file():
            _check_mask_size(mask, c)
            c.meta["mask"] = rel(mask, scan.root)
            used.add(mask)
    unmasked = [
        c for c in scan.candidates if c.split == "test" and "mask" not in c.meta and (folder / c.label).is_dir()
    ]
    if unmasked:
        scan.warnings.append(
            f"{len(unmasked)} test images of classes with masks in {MASK_DIR}/ have no mask (e.g. {unmasked[0].ref}): "
            "pixel figures leave them out"
        )
    scan.info["masks"] = len(used)
    return used


def _unused_reason(entry: Path) -> str:
    if entry.name == MASK_DIR:
        return (
            f"a mask that matches no test image (a mask is {MASK_DIR}/<class>/<image stem>_mask.png, beside "
            "test/<class>/<image stem>.<ext>)"
        )
    return "outside the train/val/test folders"


def _check_mask_size(mask: Path, image: Candidate) -> None:
    """Refuse a mask whose size is not its image's (read from the headers; an unreadable file is left to the
    pipeline, which names it)."""
    from PIL import Image

    try:
        with Image.open(mask) as m, Image.open(image.file) as i:
            mask_size, image_size = m.size, i.size
    except (OSError, ValueError):
        return
    if mask_size != image_size:
        raise DefectlensError(
            f"{mask}: the mask is {mask_size[0]}x{mask_size[1]} but its image {image.ref} is "
            f"{image_size[0]}x{image_size[1]}; a mask must match its image pixel for pixel"
        )


def scan_casting(src: str | Path) -> Scan:
    """Kaggle casting layout: ``train|test/def_front|ok_front``; the Kaggle zip's nesting is accepted."""
    root = require_dir(src, "casting train/ and test/ folders")
    for _ in range(2):  # the Kaggle zip unpacks as casting_data/casting_data/{train,test}
        if not _split_dirs(root) and (root / "casting_data").is_dir():
            root = root / "casting_data"
    if not _split_dirs(root):
        raise DefectlensError(
            f"{root}: no train/ or test/ folder; the casting format expects train|test/def_front|ok_front"
        )
    scan = scan_folder(root)
    scan.name = "casting"
    found = {c.label for c in scan.candidates}
    unexpected = sorted(found - set(CASTING_CLASSES))
    if unexpected:
        scan.warnings.append(f"unexpected class folders for the casting format: {unexpected}")
    scan.positive_class = "def_front" if "def_front" in found else None
    return scan


def scan_csv(src: str | Path, *, allow_outside_root: bool = False) -> Scan:
    """A CSV with a header ``path,label[,split]``; paths relative to the CSV's folder (or absolute).

    Any other column (camera, line, shift, lot...) is kept as per-image metadata, so evaluation can
    count errors by it. A CSV that is not UTF-8 is read as Windows-1252 (what spreadsheet programs
    write), with a warning. Rows are refused, each with its reason in the skipped list, when they have
    more fields than the header, name a path outside the CSV's folder (unless ``allow_outside_root``:
    a CSV from elsewhere must not make the import read ``/etc/passwd``), or list a path again: with
    the same label the repeat is dropped, with another label every row of that path is a conflict.

    Raises:
        DefectlensError: when the file is missing or its header lacks path and label.
    """
    path = Path(src).expanduser()
    if path.is_dir():
        raise DefectlensError(f"{path}: is a folder; the csv format expects the path of a .csv file")
    if not path.is_file():
        raise DefectlensError(f"{path}: CSV file not found")
    scan = Scan(root=path.resolve().parent, name=path.stem)
    text, encoding = _read_text(path)
    if encoding != "utf-8":
        scan.warnings.append(f"{path.name} is not UTF-8; read as {encoding} (save it as UTF-8 to be sure of names)")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    fields = [(f or "").strip().lower() for f in reader.fieldnames or []]
    if "path" not in fields or "label" not in fields:
        raise DefectlensError(f"{path}: header must name the columns path,label[,split]; found {fields}")
    rows: dict[str, list[tuple[int, Candidate]]] = {}
    for lineno, raw in enumerate(reader, start=2):
        cand = _csv_row(scan, path, lineno, raw, allow_outside_root)
        if cand is not None:
            rows.setdefault(os.path.normpath(cand.file), []).append((lineno, cand))
    for listed in rows.values():
        _add_listed(scan, path.name, listed)
    return scan


def _read_text(path: Path) -> tuple[str, str]:
    """The CSV's text and the encoding it was read with (UTF-8, else Windows-1252, else Latin-1)."""
    data = path.read_bytes()
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return data.decode(encoding), encoding.replace("-sig", "")
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1"), "latin-1"


def _csv_row(scan: Scan, path: Path, lineno: int, raw: dict[Any, Any], outside_ok: bool) -> Candidate | None:
    """One CSV row as a candidate, or None after recording why it was skipped."""
    where = f"{path.name}:{lineno}"
    if None in raw:  # csv.DictReader files surplus fields under the key None
        scan.skipped.append({"path": where, "reason": f"more fields than the header ({len(raw) - 1 + len(raw[None])})"})
        return None
    row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items()}
    ref, label, split = row.get("path", ""), row.get("label", ""), row.get("split", "").lower()
    if not ref:
        scan.skipped.append({"path": where, "reason": "empty path"})
        return None
    if not label:
        scan.skip(ref, f"empty label ({path.name} line {lineno})")
        return None
    if split and split not in SPLIT_DIRS:
        raise DefectlensError(f"{path} line {lineno}: split {split!r} must be train, val, test or empty")
    file = Path(os.path.normpath(Path(ref) if Path(ref).is_absolute() else scan.root / ref))
    if not outside_ok and not file.is_relative_to(scan.root):
        scan.skip(ref, f"outside the CSV's folder {scan.root} ({where}); pass --allow-outside-root to read it")
        return None
    extra = {k: v for k, v in row.items() if k and k not in ("path", "label", "split")}
    return Candidate(file=file, ref=ref, label=label, split=SPLIT_DIRS.get(split, ""), meta=extra)


def _add_listed(scan: Scan, csv_name: str, listed: list[tuple[int, Candidate]]) -> None:
    """Add a path listed once; drop exact repeats; refuse every row of a path listed with other labels."""
    labels = sorted({c.label for _, c in listed})
    first_line, first = listed[0]
    if len(labels) > 1:
        lines = ", ".join(str(n) for n, _ in listed)
        scan.skip(first.ref, f"conflict: listed {len(listed)} times with labels {', '.join(labels)} (lines {lines})")
        scan.warnings.append(f"{first.ref}: listed with conflicting labels {labels} in {csv_name}; not imported")
        return
    scan.candidates.append(first)
    for lineno, cand in listed[1:]:
        scan.skip(cand.ref, f"listed again on line {lineno} (first on line {first_line}); kept once")


def elpv_class(probability: float, classes: int) -> str:
    """``defective``/``functional`` (2 classes) or ``p000 p033 p067 p100`` (4 classes)."""
    if classes == 2:
        return "defective" if probability >= 0.5 else "functional"
    return f"p{round(round(probability * 3) / 3 * 100):03d}"


def scan_elpv(src: str | Path, *, classes: int = 2) -> Scan:
    """ELPV solar cells from the installed ``elpv-dataset`` package (``src="elpv"``) or a folder with labels.csv."""
    if classes not in ELPV_CLASSES:
        raise DefectlensError(f"elpv classes must be 2 or 4, got {classes}")
    if str(src).lower() in ("elpv", ELPV_PACKAGE, "elpv-dataset"):
        try:
            data = Path(str(resources.files(ELPV_PACKAGE).joinpath("data")))
        except ModuleNotFoundError:
            raise DefectlensError("the ELPV source needs the elpv-dataset package: pip install elpv-dataset") from None
        prefix = f"pkg:{ELPV_PACKAGE}/data/"
    else:
        data = require_dir(src, "ELPV labels.csv and images/")
        prefix = ""
    labels = data / "labels.csv"
    if not labels.is_file():
        raise DefectlensError(f"{labels}: ELPV labels file not found")
    scan = Scan(root=data, name="elpv", positive_class="defective" if classes == 2 else None)
    scan.info["elpv"] = {"classes": classes, "rule": "defective if probability >= 0.5" if classes == 2 else "p*100"}
    for lineno, line in enumerate(labels.read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        try:
            inner, probability, kind = parts[0], float(parts[1]), parts[2]
        except (IndexError, ValueError):
            scan.skipped.append({"path": f"labels.csv:{lineno}", "reason": f"malformed line {line!r}"})
            continue
        meta = {"probability": probability, "type": kind}
        scan.candidates.append(
            Candidate(file=data / inner, ref=prefix + inner, label=elpv_class(probability, classes), meta=meta)
        )
    listed = {c.file for c in scan.candidates}
    for f in files_under(data / "images", scan) if (data / "images").is_dir() else []:
        if f not in listed:
            scan.skip(f, "image not listed in labels.csv")
    if prefix:
        for s in scan.skipped:
            s["path"] = prefix + s["path"] if not s["path"].startswith("labels.csv") else s["path"]
    return scan
