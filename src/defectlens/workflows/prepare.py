"""From whatever ``--data`` names to a dataset folder training can use, in one step.

``defectlens train --data parts/`` on a plain folder of class subfolders (or a casting, NEU-DET,
ELPV or CSV source) detects the format, imports and splits it leakage-safely, and keeps the dataset
folder beside the runs (``<out>/data-<name>/``), so every run that used it can be reproduced. A
dataset folder written by ``defectlens data import`` is used as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

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
    data: str | Path, *, out: str | Path, force: bool = False, progress: Progress | None = None
) -> PreparedData:
    """A dataset folder for ``data``: itself when it is one, else an imported and split copy of the source.

    Args:
        data: a dataset folder, a folder of images (class subfolders, optionally under train/val/test),
            a casting/NEU-DET/ELPV source, a CSV file, or the word ``elpv``.
        out: the runs folder; an imported source goes to ``<out>/data-<name>``.
        force: re-import even when that folder exists from an earlier run.
        progress: receives the import phases.

    Raises:
        DefectlensError: for an empty ``data``, a missing path, or a folder already holding another source.
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
    messages += [f"warning: {w}" for w in manifest.info.get("warnings", [])]
    return PreparedData(target, messages)
