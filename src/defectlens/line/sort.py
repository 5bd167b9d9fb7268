"""The sort sink: each image into ``OUT/<decision>/``, for a person to look through or a script to pick up.

A decision's folder is its class name; a frame without one goes to ``needs_review/``, ``error/`` or
``dropped/``. An image is copied (or moved, ``mode: move``) under its own name, never over another file:
a name already taken gets ``-1``, ``-2``... before its suffix. A camera frame (pixels, no file) is written as
a PNG. File names are data: separators and a leading dot are replaced, so a name can never leave its folder.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from defectlens.line.base import LineError, Result, StationControl

MODES = ("copy", "move")
_OPTIONS = ("type", "path", "mode")


def safe_name(name: str) -> str:
    """A file name that stays inside its folder (no separators, no leading dot, not empty)."""
    cleaned = re.sub(r"[/\\\x00-\x1f]", "_", name).lstrip(".")
    return cleaned[:200] or "frame"


def bucket(result: Result) -> str:
    """The folder a result goes to: its class, or its status when there is no decision."""
    return safe_name(result.decision) if result.status == "ok" and result.decision else result.status


def claim_path(folder: Path, name: str) -> Path:
    """Create ``folder/name`` (or the first free ``stem-N.suffix``) empty and exclusively; returns it."""
    stem, suffix = Path(name).stem, Path(name).suffix
    candidate, n = name, 0
    while True:
        target = folder / candidate
        try:
            with target.open("xb"):
                return target
        except FileExistsError:
            n += 1
            candidate = f"{stem}-{n}{suffix}"


class SortSink:
    """Copies or moves each result's image into ``out/<decision>/``.

    Args:
        out: the folder to sort into (created at open).
        mode: ``copy`` or ``move`` (a hot folder's file; a camera frame is always written).
    """

    def __init__(self, out: Path, *, mode: str = "copy"):
        if mode not in MODES:
            raise LineError(f"sort sink: mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.out, self.mode = Path(out), mode
        self.endpoint = f"sort:{self.out}"

    @classmethod
    def from_config(cls, options: dict[str, Any], *, station: str, base: Path) -> SortSink:
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise LineError(f"sort sink: unknown option {unknown[0]!r} (options: path, mode)")
        path = options.get("path")
        if not isinstance(path, str) or not path:
            raise LineError(f"sort sink: 'path' must name the folder to sort into, got {path!r}")
        return cls(base / Path(path).expanduser(), mode=str(options.get("mode", "copy")))

    def open(self, control: StationControl) -> None:
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LineError(f"{self.endpoint}: cannot create the folder ({exc})") from None
        if not os.access(self.out, os.W_OK):
            raise LineError(f"{self.endpoint}: the folder is not writable")

    def publish(self, result: Result) -> None:
        folder = self.out / bucket(result)
        folder.mkdir(exist_ok=True)
        frame = result.frame
        name = safe_name(frame.name)
        if isinstance(frame.data, np.ndarray) and not name.lower().endswith(".png"):
            name += ".png"
        target = claim_path(folder, name)
        try:
            self._write(result, target)
        except BaseException:
            target.unlink(missing_ok=True)
            raise

    def _write(self, result: Result, target: Path) -> None:
        frame = result.frame
        if frame.path is not None and frame.path.is_file():
            if self.mode == "move":
                shutil.move(frame.path, target)  # onto the placeholder claimed for it
            else:
                shutil.copyfile(frame.path, target)
        elif isinstance(frame.data, np.ndarray):
            from PIL import Image

            Image.fromarray(frame.data).save(target, format="PNG")
        else:
            target.write_bytes(bytes(frame.data))

    def set_status(self, online: bool, alarm: str = "") -> None:
        pass  # a folder has no status to show

    def close(self) -> None:
        pass
