"""Probing files: decode, hash and describe each candidate image, in a process pool.

One probe per file reads the bytes once, hashes them (sha256, for exact duplicates), decodes
them through :func:`~defectlens.data.images.load_image` (the same path training uses, so a file
that imports is a file that trains) and computes the perceptual hash used by the split's
near-duplicate guard. A file that cannot be used comes back with a reason instead of raising,
so one bad file never stops an import.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from defectlens.core.checkpoint import file_sha256
from defectlens.core.errors import ImageError
from defectlens.core.progress import Progress

#: Files that operating systems drop into image folders; skipped without decoding.
SYSTEM_FILES = frozenset({".ds_store", "thumbs.db", "desktop.ini", "ehthumbs.db"})

# Modes models see directly; anything else is kept but reported, since it is converted at load.
_PLAIN_MODES = frozenset({"L", "RGB"})
_MODE_NOTES = {
    "I;16": "16-bit image, scaled to 8 bits by bit depth when loaded",
    "I": "32-bit integer image, scaled to 8 bits when loaded",
    "F": "floating-point image, scaled to 8 bits when loaded",
    "CMYK": "CMYK image, converted to RGB when loaded",
    "P": "palette image, expanded to RGB when loaded",
    "PA": "palette image with transparency, composited on white when loaded",
    "RGBA": "image with an alpha channel, composited on white when loaded",
    "LA": "grey image with an alpha channel, composited on white when loaded",
    "1": "1-bit image, expanded to 8 bits when loaded",
}
_POOL_MIN_FILES = 16  # below this, starting worker processes costs more than it saves


def is_system_file(path: Path) -> bool:
    """True for OS clutter such as ``Thumbs.db``, ``.DS_Store`` or macOS ``._`` resource forks."""
    return path.name.lower() in SYSTEM_FILES or path.name.startswith("._")


def mode_note(mode: str) -> str | None:
    """Why an image mode deserves a warning, or None for the plain L/RGB modes."""
    if mode in _PLAIN_MODES:
        return None
    key = "I;16" if mode.startswith("I;16") else mode
    return _MODE_NOTES.get(key, f"unusual image mode {mode}, converted when loaded")


def probe_file(path: str) -> dict[str, Any]:
    """Everything the manifest records about one file, or ``{"reason": ...}`` if it is unusable.

    The image is decoded from the file (never read whole into memory first) and the sha256 is computed
    a block at a time, so a 2 GB file costs a few megabytes.
    """
    from defectlens.data.dedup import phash_hex
    from defectlens.data.images import convert_mode, decode_image

    p = Path(path)
    if is_system_file(p):
        return {"reason": "system file, not an image"}
    mode = "?"
    try:
        decoded = decode_image(p, name=path)
        img = decoded.image
        mode = img.mode
        convert_mode(img, 3)  # proves the mode is one training can use
        phash = phash_hex(img)
        digest = file_sha256(p)
    except ImageError as exc:
        return {"reason": exc.reason}
    except PermissionError:
        return {"reason": "permission denied"}
    except (OSError, ValueError) as exc:
        return {"reason": f"unsupported image mode or content ({mode}): {exc}"}
    return {
        "sha256": digest,
        "width": img.width,
        "height": img.height,
        "mode": img.mode,
        "phash": phash,
        "warning": decoded.warning,
    }


def default_workers() -> int:
    """Two workers, or fewer on a single-core machine (the target machines have two cores)."""
    return max(1, min(2, os.cpu_count() or 1))


def probe_files(
    paths: list[str], *, workers: int | None = None, progress: Progress | None = None
) -> list[dict[str, Any]]:
    """Probe many files, in order; uses a process pool of ``workers`` (default 2) for large sets."""
    workers = default_workers() if workers is None else max(1, workers)
    out: list[dict[str, Any]] = []
    with (progress or Progress()).phase("reading and hashing images", total=len(paths), unit="img") as phase:
        if workers == 1 or len(paths) < _POOL_MIN_FILES:
            for p in paths:
                out.append(probe_file(p))
                phase.advance()
            return out
        # spawn, not fork: the caller may already hold threads (torch, a web server) that a fork
        # would copy in a locked state.
        ctx = multiprocessing.get_context("spawn")
        chunk = max(1, min(64, len(paths) // (workers * 8)))
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            for probe in pool.map(probe_file, paths, chunksize=chunk):
                out.append(probe)
                phase.advance()
    return out
