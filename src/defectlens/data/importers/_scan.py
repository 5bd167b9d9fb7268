"""What every source scanner returns: candidate files with labels, and files already refused."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from defectlens.core.errors import DefectlensError
from defectlens.data.walk import inspect, walk

#: Folder names accepted as splits (lower case) and the split each stands for.
SPLIT_DIRS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


@dataclass
class Candidate:
    """One file a source names as an image, before it is opened."""

    file: Path  # where to read it
    ref: str  # how the manifest names it (relative to the root, or a pkg: reference)
    label: str
    split: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Scan:
    """The result of walking a source: candidates, refused files and source-specific reports."""

    root: Path
    name: str
    candidates: list[Candidate] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    positive_class: str | None = None

    def skip(self, path: Path | str, reason: str) -> None:
        self.skipped.append({"path": rel(path, self.root), "reason": reason})


def rel(path: Path | str, root: Path) -> str:
    """``path`` relative to ``root`` with forward slashes, or as given when outside it."""
    p = Path(path)
    try:
        return p.relative_to(root).as_posix()
    except ValueError:
        return str(p)


def require_dir(src: str | Path, what: str) -> Path:
    """The source folder as an absolute path, or a clear error when it is missing."""
    path = Path(src).expanduser()
    if not path.exists():
        raise DefectlensError(f"{path}: source not found; pass the folder that holds the {what}")
    if not path.is_dir():
        raise DefectlensError(f"{path}: not a folder; pass the folder that holds the {what}")
    return path.resolve()


def files_under(folder: Path, scan: Scan) -> list[Path]:
    """Every regular file below ``folder``, sorted; what cannot be read (dangling or looping symlinks,
    FIFOs, unlistable folders, a folder named like an image) joins ``scan.skipped`` with its reason."""
    files = []
    for entry in walk(folder):
        if entry.problem is None:
            files.append(entry.path)
        else:
            scan.skip(entry.path, entry.problem)
    return files


def scan_class_folders(scan: Scan, folder: Path, *, split: str) -> None:
    """Add every file in ``folder/<class>/...`` as a candidate of that class; loose files are skipped."""
    for entry in sorted(folder.iterdir()):
        kind, problem = inspect(entry)
        if kind == "dir":
            for f in files_under(entry, scan):
                scan.candidates.append(Candidate(file=f, ref=rel(f, scan.root), label=entry.name, split=split))
        elif kind == "file":
            scan.skip(entry, f"not inside a class folder (expected {rel(folder, scan.root) or '.'}/<class>/<image>)")
        else:
            scan.skip(entry, problem or "not a file or folder")
