"""Scanners for the class-per-folder, casting (Kaggle), CSV and ELPV sources.

Each scanner only walks the source and names candidate files with their labels; opening,
hashing and refusing broken files happens once, in the shared pipeline of
:mod:`defectlens.data.importers`.
"""

from __future__ import annotations

import csv
from importlib import resources
from pathlib import Path

from defectlens.core.errors import DefectlensError
from defectlens.data.importers._scan import (
    SPLIT_DIRS,
    Candidate,
    Scan,
    files_under,
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
    for entry in sorted(root.iterdir()):
        if entry not in splits:
            for f in files_under(entry) if entry.is_dir() else [entry]:
                scan.skip(f, "outside the train/val/test folders")
    return scan


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


def scan_csv(src: str | Path) -> Scan:
    """A CSV with a header ``path,label[,split]``; paths relative to the CSV's folder or absolute.

    Any other column (camera, line, shift, lot...) is kept as per-image metadata, so evaluation can
    count errors by it.
    """
    path = Path(src).expanduser()
    if path.is_dir():
        raise DefectlensError(f"{path}: is a folder; the csv format expects the path of a .csv file")
    if not path.is_file():
        raise DefectlensError(f"{path}: CSV file not found")
    root = path.resolve().parent
    scan = Scan(root=root, name=path.stem)
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        fields = [f.strip().lower() for f in reader.fieldnames or []]
        if "path" not in fields or "label" not in fields:
            raise DefectlensError(f"{path}: header must name the columns path,label[,split]; found {fields}")
        for lineno, raw in enumerate(reader, start=2):
            row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items()}
            ref, label, split = row.get("path", ""), row.get("label", ""), row.get("split", "").lower()
            if not ref:
                scan.skipped.append({"path": f"{path.name}:{lineno}", "reason": "empty path"})
                continue
            if not label:
                scan.skip(ref, f"empty label ({path.name} line {lineno})")
                continue
            if split and split not in SPLIT_DIRS:
                raise DefectlensError(f"{path} line {lineno}: split {split!r} must be train, val, test or empty")
            file = Path(ref) if Path(ref).is_absolute() else root / ref
            extra = {k: v for k, v in row.items() if k and k not in ("path", "label", "split")}
            scan.candidates.append(
                Candidate(file=file, ref=ref, label=label, split=SPLIT_DIRS.get(split, ""), meta=extra)
            )
    return scan


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
    for f in files_under(data / "images") if (data / "images").is_dir() else []:
        if f not in listed:
            scan.skip(f, "image not listed in labels.csv")
    if prefix:
        for s in scan.skipped:
            s["path"] = prefix + s["path"] if not s["path"].startswith("labels.csv") else s["path"]
    return scan
