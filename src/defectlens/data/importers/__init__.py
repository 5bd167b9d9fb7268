"""Dataset import: turn a folder, the casting/NEU-DET/ELPV layouts or a CSV into a Manifest.

Every importer runs the same pipeline: a source scanner names candidate files and labels, each
file is probed once in a process pool (decode, sha256, perceptual hash), class names are
remapped, and every file found ends up either as a :class:`~defectlens.data.manifest.Record` or as
an entry of ``info["skipped"]`` with its reason. Nothing is dropped silently and no image is copied.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from defectlens.core.errors import DefectlensError
from defectlens.core.progress import Progress
from defectlens.core.spec import name_problem
from defectlens.core.text import utf8_text
from defectlens.core.version import __version__
from defectlens.data.importers._probe import mode_note, probe_files
from defectlens.data.importers._scan import SPLIT_DIRS, Scan
from defectlens.data.importers.neu import scan_neu
from defectlens.data.importers.sources import CASTING_CLASSES, scan_casting, scan_csv, scan_elpv, scan_folder
from defectlens.data.manifest import Manifest, Record

FORMATS = ("folder", "casting", "neu-det", "elpv", "csv")
#: Class names taken to be the defect side of a binary dataset when no --positive is given.
DEFECT_NAMES = ("defect", "defects", "defective", "def", "ng", "nok", "bad", "anomaly", "def_front")


def detect_format(src: str | Path) -> tuple[str, str]:
    """The import format of ``src`` and the layout that gave it away, for ``--format auto``.

    Raises:
        DefectlensError: when ``src`` does not exist or holds no folder a format could read.
    """
    path = Path(src).expanduser()
    if str(src).lower() in ("elpv", "elpv-dataset", "elpv_dataset"):
        return "elpv", "the ELPV solar-cell images of the installed elpv-dataset package"
    if path.is_file() and path.suffix.lower() == ".csv":
        return "csv", "a CSV file of path,label[,split] rows"
    if not path.is_dir():
        raise DefectlensError(f"{path}: no such folder or CSV file")
    subdirs = {c.name.lower(): c for c in path.iterdir() if c.is_dir() and not c.name.startswith(".")}
    if {"images", "annotations"} <= set(subdirs):
        return "neu-det", "IMAGES/ and ANNOTATIONS/ folders (NEU-DET, Pascal VOC)"
    if (path / "labels.csv").is_file() and "images" in subdirs:
        return "elpv", "labels.csv and images/ (ELPV)"
    splits = sorted(set(subdirs) & set(SPLIT_DIRS))
    if splits:
        classes = sorted({c.name for s in splits for c in subdirs[s].iterdir() if c.is_dir()})
        if classes and set(classes) <= set(CASTING_CLASSES):
            return "casting", f"split folders {', '.join(splits)} with def_front/ok_front (Kaggle casting)"
        return "folder", f"split folders {', '.join(splits)} with class subfolders {', '.join(classes) or '(none)'}"
    if not subdirs:
        raise DefectlensError(f"{path}: no subfolders; put the images in one subfolder per class (e.g. good/, bad/)")
    return "folder", f"class folders {', '.join(sorted(c.name for c in subdirs.values()))}"


def _scanner(fmt: str, elpv_classes: int, neu_labels: str, outside_ok: bool) -> Callable[[str | Path], Scan]:
    scanners: dict[str, Callable[[str | Path], Scan]] = {
        "folder": scan_folder,
        "casting": scan_casting,
        "neu-det": lambda src: scan_neu(src, labels=neu_labels),
        "csv": lambda src: scan_csv(src, allow_outside_root=outside_ok),
        "elpv": lambda src: scan_elpv(src, classes=elpv_classes),
    }
    if fmt not in scanners:
        raise DefectlensError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return scanners[fmt]


def remap(label: str, mapping: Mapping[str, str] | None) -> str:
    """Apply a class mapping; ``"*"`` stands for every class not named in it."""
    if not mapping:
        return label
    return mapping.get(label, mapping.get("*", label))


def choose_positive(classes: list[str], *, requested: str | None, default: str | None) -> str | None:
    """The defect class of a binary dataset (None for multi-class unless ``requested``)."""
    if requested is not None:
        if requested not in classes:
            raise DefectlensError(f"--positive {requested!r} is not one of the classes {classes}")
        return requested
    if len(classes) != 2:
        return None
    if default in classes:
        return default
    named = [c for c in classes if c.lower() in DEFECT_NAMES]
    return named[0] if len(named) == 1 else None


def cross_split_duplicates(records: list[Record]) -> dict[str, Any]:
    """Byte-identical files that the source itself placed in different splits (train/test leakage).

    Returns:
        ``{"sets": n, "images": n, "by_splits": {"test/train": n}, "examples": [...], "warning": str}``;
        ``images`` counts the copies outside train, i.e. the test/val images that are not unseen.
    """
    by_sha: dict[str, list[Record]] = {}
    for r in records:
        if r.sha256 and r.split:
            by_sha.setdefault(r.sha256, []).append(r)
    sets = [rs for rs in by_sha.values() if len({r.split for r in rs}) > 1]
    by_splits: dict[str, int] = {}
    for rs in sets:
        key = "/".join(sorted({r.split for r in rs}))
        by_splits[key] = by_splits.get(key, 0) + 1
    images = sum(1 for rs in sets for r in rs if r.split != "train")
    warning = ""
    if sets:
        named = ", ".join(f"{n} across {k}" for k, n in sorted(by_splits.items()))
        warning = (
            f"leakage in the source's own splits: {len(sets)} set(s) of byte-identical files ({named}); "
            f"{images} val/test image(s) also occur in train, so they are not unseen. 'defectlens evaluate' "
            "reports the test split with and without them"
        )
    examples = [sorted(f"{r.split}/{r.path}" for r in rs) for rs in sets[:10]]
    return {"sets": len(sets), "images": images, "by_splits": by_splits, "examples": examples, "warning": warning}


def _name_not_utf8(ref: str) -> str | None:
    """Why a file cannot be listed in manifest.csv (a UTF-8 text file): a name that is not valid UTF-8."""
    if utf8_text(ref) == ref:
        return None
    return "its name is not valid UTF-8 (the manifest could not point at it); rename the file"


def _records(
    scan: Scan, probes: list[dict[str, Any]], mapping: Mapping[str, str] | None
) -> tuple[list[Record], list[str]]:
    """Records of the usable candidates (the others join ``scan.skipped``) and the scan's warnings,
    plus one warning per unusual image mode that was kept."""
    records: list[Record] = []
    odd_modes: dict[str, list[str]] = {}
    flagged: list[str] = []
    for cand, probe in zip(scan.candidates, probes, strict=True):
        label = remap(cand.label, mapping)
        problem = name_problem("label", label) or _name_not_utf8(cand.ref)
        if problem or "reason" in probe:
            scan.skipped.append({"path": utf8_text(cand.ref), "reason": problem or probe["reason"]})
            continue
        if probe.get("warning"):
            flagged.append(f"{cand.ref} ({probe['warning']})")
        meta = {**cand.meta, "phash": probe["phash"]}
        if label != cand.label:
            meta["source_label"] = cand.label
        if mode_note(probe["mode"]):
            odd_modes.setdefault(probe["mode"], []).append(cand.ref)
        records.append(
            Record(
                path=cand.ref,
                label=label,
                split=cand.split,
                sha256=probe["sha256"],
                width=probe["width"],
                height=probe["height"],
                mode=probe["mode"],
                meta=meta,
            )
        )
    warnings = list(scan.warnings)
    for mode, paths in sorted(odd_modes.items()):
        shown = ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
        warnings.append(f"{len(paths)} image(s) in mode {mode} kept ({mode_note(mode)}): {shown}")
    if flagged:
        more = f" and {len(flagged) - 5} more" if len(flagged) > 5 else ""
        warnings.append(f"{len(flagged)} image(s) kept although decoding warned: {'; '.join(flagged[:5])}{more}")
    return records, warnings


def import_dataset(
    src: str | Path,
    *,
    fmt: str,
    elpv_classes: int = 2,
    neu_labels: str = "boxes",
    mapping: Mapping[str, str] | None = None,
    positive: str | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
    allow_outside_root: bool = False,
) -> Manifest:
    """Import a dataset source into a (not yet written) Manifest.

    Args:
        src: the source folder (a CSV file for ``csv``; the word ``elpv`` for the installed ELPV package).
        fmt: one of ``folder``, ``casting``, ``neu-det``, ``elpv``, ``csv``, or ``auto`` (:func:`detect_format`).
        elpv_classes: 2 (functional/defective) or 4 (p000 p033 p067 p100) for ELPV.
        neu_labels: NEU-DET labels from the largest box area (``boxes``) or the file name (``file``).
        mapping: class remapping such as ``{"scratches": "defect", "*": "ok"}``.
        positive: the defect class of a binary dataset, when it cannot be inferred.
        workers: decode/hash processes (default 2).
        progress: receives the hashing phase.
        allow_outside_root: let a CSV name files outside its own folder (refused by default).

    Raises:
        DefectlensError: the source is missing, malformed or holds no usable image.
    """
    if fmt == "auto":
        fmt = detect_format(src)[0]
    scan = _scanner(fmt, elpv_classes, neu_labels, allow_outside_root)(src)
    if not scan.candidates and not scan.skipped:
        raise DefectlensError(f"{scan.root}: no image files found for format {fmt!r}; check the path and --format")
    return import_scan(
        scan, fmt=fmt, source=str(src), mapping=mapping, positive=positive, workers=workers, progress=progress
    )


def import_scan(
    scan: Scan,
    *,
    fmt: str,
    source: str,
    mapping: Mapping[str, str] | None = None,
    positive: str | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> Manifest:
    """The shared half of every import: probe a scan's candidates and make the Manifest.

    A source outside this package (the inspection log, :mod:`defectlens.workflows.from_log`) names its candidates
    in a :class:`~defectlens.data.importers._scan.Scan` and comes through here like any folder.

    Args:
        scan: the candidates and the files already refused.
        fmt: the source's format name, recorded in ``info["format"]``.
        source: where the images came from as a person reads it, recorded in ``info["source"]``.

    Raises:
        DefectlensError: when no candidate is a usable image (the first reasons named).
    """
    probes = probe_files([str(c.file) for c in scan.candidates], workers=workers, progress=progress)
    records, warnings = _records(scan, probes, mapping)
    leakage = cross_split_duplicates(records)
    if leakage["images"]:
        warnings.append(leakage["warning"])
    if not records:
        first = "; ".join(f"{s['path']}: {s['reason']}" for s in scan.skipped[:3])
        raise DefectlensError(f"{scan.root}: no usable image among {len(scan.skipped)} file(s) ({first})")
    classes = sorted({r.label for r in records})
    if mapping:
        unused = sorted(k for k in mapping if k != "*" and k not in {c.label for c in scan.candidates})
        if unused:
            warnings.append(f"--map names classes not in the source: {unused}")
    if len(classes) < 2:
        warnings.append(f"only one class ({classes[0]}): a classifier needs at least two")
    default_positive = scan.positive_class if not mapping else None
    positive_class = choose_positive(classes, requested=positive, default=default_positive)
    if len(classes) == 2 and positive_class is None:
        warnings.append(f"binary dataset but no defect class recognised among {classes}; pass --positive NAME")
    info: dict[str, Any] = {
        "name": scan.name,
        "format": fmt,
        "root": str(scan.root),
        "classes": classes,
        "positive_class": positive_class,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "defectlens_version": __version__,
        "source": source,
        "mapping": dict(mapping) if mapping else None,
        "skipped": scan.skipped,
        "warnings": warnings,
        "leakage": leakage,
        **scan.info,
    }
    return Manifest(records=records, info=info)


__all__ = [
    "DEFECT_NAMES",
    "FORMATS",
    "choose_positive",
    "cross_split_duplicates",
    "detect_format",
    "import_dataset",
    "import_scan",
    "remap",
]
