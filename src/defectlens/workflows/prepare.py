"""From whatever ``--data`` names to a dataset folder training can use, in one step.

``defectlens train --data parts/`` on a plain folder of class subfolders (or a casting, NEU-DET,
ELPV or CSV source) detects the format, imports and splits it leakage-safely, and keeps the dataset
folder beside the runs (``<out>/data-<name>/``), so every run that used it can be reproduced. A
dataset folder written by ``defectlens data import`` is used as it is.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from defectlens.core.anomaly import ANOMALY_TASK, MIN_NORMAL_IMAGES, pick_normal
from defectlens.core.errors import DefectlensError
from defectlens.core.progress import Progress
from defectlens.data.importers import detect_format, import_dataset
from defectlens.data.manifest import INFO_FILE, MANIFEST_FILE, Manifest
from defectlens.data.split import split_manifest

#: The split ``train --data FOLDER`` makes when the source has none: 70 % train, 10 % val, 20 % test.
DEFAULT_VAL, DEFAULT_TEST = 0.1, 0.2


@dataclass
class PreparedData:
    """The dataset folder to train on and what was done to get it (lines for the user)."""

    folder: Path
    messages: list[str] = field(default_factory=list)


def is_dataset(path: Path) -> bool:
    """True for a folder written by ``defectlens data import`` (manifest.csv + dataset.json)."""
    return (path / MANIFEST_FILE).is_file() and (path / INFO_FILE).is_file()


def prepare_training_data(
    data: str | Path,
    *,
    out: str | Path,
    force: bool = False,
    progress: Progress | None = None,
    task: str = "classify",
    normal: str | None = None,
    channels: int | None = None,
) -> PreparedData:
    """A dataset folder for ``data``: itself when it is one, else an imported and split copy of the source.

    Args:
        data: a dataset folder, a folder of images (class subfolders, optionally under train/val/test),
            a casting/NEU-DET/ELPV source, a CSV file, or the word ``elpv``.
        out: the runs folder; an imported source goes to ``<out>/data-<name>``.
        force: re-import even when that folder exists from an earlier run.
        progress: receives the import phases.
        task: the training task; for ``anomaly`` an imported source must have its normal class (``normal``,
            else the one named good/ok/normal) with at least ``MIN_NORMAL_IMAGES`` images outside its test split.
        channels: the model input's channels, to say what images of mixed pixel modes are converted to.

    Raises:
        DefectlensError: for an empty ``data``, a missing path, a folder already holding another source, or
            (anomaly mode) a source without enough normal images.
    """
    if not data:
        raise DefectlensError("no dataset given: pass --data DIR (a folder of class subfolders, or a dataset folder)")
    path = Path(data).expanduser()
    if path.is_dir() and is_dataset(path):
        return PreparedData(path)
    fmt, layout = detect_format(path)
    source = str(path.resolve()) if fmt != "elpv" or path.exists() else str(data)
    target = Path(out) / f"data-{path.resolve().name if path.exists() else str(data)}"
    if is_dataset(target) and not force:
        recorded = Manifest.read(target).info.get("source")
        if recorded != source:
            raise DefectlensError(
                f"{target} holds a dataset imported from {recorded}, not {source}; pass --out to another "
                "folder, or --force-split to replace it"
            )
        return PreparedData(
            target, [f"using the dataset imported earlier from {source}: {target} (--force-split re-imports)"]
        )
    manifest = import_dataset(source, fmt=fmt, progress=progress)
    if task == ANOMALY_TASK:
        _check_normal_images(manifest, normal, source)
    official = sorted({r.split for r in manifest.records if r.split})
    manifest = split_manifest(manifest, val=DEFAULT_VAL, test=DEFAULT_TEST, seed=0)
    manifest.write(target)
    counts = {s: sum(c.values()) for s, c in manifest.counts().items()}
    messages = [
        f"detected {fmt}: {layout}",
        f"imported {len(manifest.records)} images of {len(manifest.classes)} classes into {target}",
        "split (seed 0, duplicates kept on one side): "
        + ", ".join(f"{s} {counts.get(s, 0)}" for s in ("train", "val", "test"))
        + (f"; the source's own {', '.join(official)} split kept" if official else ""),
    ]
    skipped = manifest.info.get("skipped") or []
    if skipped:
        messages.append(f"{len(skipped)} file(s) skipped (reasons in {target / INFO_FILE})")
        messages += [f"  {s['path']}: {s['reason']}" for s in skipped[:5]]
    messages += [f"warning: {w}" for w in manifest.info.get("warnings", [])]
    return PreparedData(target, messages + _mixed_modes(manifest, channels))


def _check_normal_images(manifest: Manifest, normal: str | None, source: str) -> None:
    """Refuse, before splitting, a source anomaly mode cannot fit on: no normal class, or too few of its images."""
    try:
        name = pick_normal(manifest.classes, normal)
    except DefectlensError as exc:
        raise DefectlensError(f"{source}: {exc}") from None
    fit = sum(r.label == name and r.split != "test" for r in manifest.records)
    if fit < MIN_NORMAL_IMAGES:
        raise DefectlensError(
            f"{source}: anomaly mode needs at least {MIN_NORMAL_IMAGES} {name!r} training images; the source has "
            f"{fit} outside its test split"
        )


def _mixed_modes(manifest: Manifest, channels: int | None) -> list[str]:
    """A note when the images mix pixel modes (gray and RGB): each is converted, none is left out."""
    modes = Counter(r.mode for r in manifest.records)
    if len(modes) < 2:
        return []
    target = {1: "1-channel (grayscale)", 3: "3-channel (RGB; a gray image repeated in each channel)"}
    listed = ", ".join(f"{m} ({n})" for m, n in sorted(modes.items()))
    return [
        f"note: the images mix pixel modes {listed}; each is converted to "
        f"{target.get(channels or 0, 'the model input')} model input, none left out"
    ]
