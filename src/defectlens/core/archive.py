"""Why a file cannot be a zip archive (bundles and checkpoints are both zips), before any parser sees it."""

from __future__ import annotations

import zipfile
from pathlib import Path

#: :func:`zip_problem`'s answer for a zero-byte file (a copy interrupted, a disk that filled up).
EMPTY = "empty file (0 bytes)"


def zip_problem(path: Path) -> str | None:
    """None for a readable zip archive; otherwise :data:`EMPTY`, ``"truncated or damaged zip"`` (it starts
    like a zip but its directory is unreadable) or ``"not a zip file (starts with b'...')"``."""
    if path.stat().st_size == 0:
        return EMPTY
    if zipfile.is_zipfile(path):
        return None
    with path.open("rb") as fh:
        head = fh.read(4)
    return "truncated or damaged zip" if head.startswith(b"PK") else f"not a zip file (starts with {head!r})"
