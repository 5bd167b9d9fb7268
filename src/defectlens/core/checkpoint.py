"""Checkpoints: state_dict + ModelSpec + config, nothing pickled.

A checkpoint is a plain dict of tensors, strings and numbers, so it loads with
``torch.load(weights_only=True)``; loading refuses anything else (a pickled module or a tampered
file), because unpickling a file from a user path can run arbitrary code. Rebuilding the network
from a checkpoint is :func:`defectlens.models.load_checkpoint` (this layer knows no architectures).

Each checkpoint is written to a temporary file, fsynced, then renamed over the old one, so a crash
(or ``kill -9``) leaves the previous checkpoint or the new one, never half of one. Beside it,
``<name>.sha256`` records its digest (and the previous one, for the instant between the two
renames); reading verifies it, so a bit flipped on disk or a file copied over another is refused
instead of resumed from. A checkpoint without that file (older runs, a copy) is read unverified.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from defectlens.core.archive import EMPTY, zip_problem
from defectlens.core.errors import DefectlensError
from defectlens.core.spec import ModelSpec

if TYPE_CHECKING:
    from torch import nn

FORMAT = "defectlens-checkpoint/1"
CHECKSUM_SUFFIX = ".sha256"


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    spec: ModelSpec,
    *,
    config: dict[str, Any] | None = None,
    **extra: Any,
) -> Path:
    """Write ``{"format", "state_dict", "spec", "config", **extra}``; ``extra`` must be plain data
    (numbers, strings, lists, dicts, tensors) such as epoch, optimizer state and metrics."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = getattr(model, "module", model)  # unwrap DDP
    payload = {
        "format": FORMAT,
        "state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()},
        "spec": spec.to_dict(),
        "config": config or {},
        **extra,
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("wb") as fh:
        torch.save(payload, fh)
        fh.flush()
        os.fsync(fh.fileno())  # on disk before the rename makes it the checkpoint
    digest = file_sha256(tmp)
    previous = _recorded_digests(path)[:1]
    _write_synced(checksum_path(path), "\n".join([digest, *previous]) + "\n")
    tmp.replace(path)  # atomic: a crash never leaves half a checkpoint
    _sync_folder(path.parent)
    return path


def checksum_path(path: str | Path) -> Path:
    """Where the digest of checkpoint ``path`` is kept: ``<path>.sha256``."""
    path = Path(path)
    return path.with_name(path.name + CHECKSUM_SUFFIX)


def file_sha256(path: str | Path, *, chunk: int = 1 << 20) -> str:
    """sha256 of a file, read ``chunk`` bytes at a time (never the whole file in memory)."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _recorded_digests(path: Path) -> list[str]:
    try:
        text = checksum_path(path).read_text(encoding="ascii", errors="replace")
    except OSError:
        return []
    return [line.strip() for line in text.splitlines() if line.strip()]


def _write_synced(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="ascii") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


def _sync_folder(folder: Path) -> None:
    """fsync a folder so the renames in it survive a power loss (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint dict safely, after checking its recorded sha256 when there is one.

    Raises:
        DefectlensError: if the file is missing, empty, truncated, altered since it was written, not a
            defectlens checkpoint, or needs unpickling (each with its own message).
    """
    import torch

    path = Path(path)
    if path.is_dir():
        path = path / "best.pt"
    _check_file(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:300]
        if "weights_only" in str(exc) or "Weights only load failed" in str(exc):
            raise DefectlensError(
                f"{path}: refused: not a plain-data defectlens checkpoint (it needs unpickling, which can run "
                f"code: {first})"
            ) from None
        raise DefectlensError(f"{path}: refused: corrupt checkpoint ({type(exc).__name__}: {first})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise DefectlensError(f"{path}: not a defectlens checkpoint (expected format {FORMAT})")
    return payload


def _check_file(path: Path) -> None:
    """Refuse, with the right reason, a file that cannot be a checkpoint, before torch parses it."""
    if not path.is_file():
        raise DefectlensError(f"{path}: checkpoint not found")
    problem = zip_problem(path)
    if problem == EMPTY:
        raise DefectlensError(f"{path}: {EMPTY}, not a checkpoint (a copy or a disk that filled up?)")
    if problem:
        raise DefectlensError(f"{path}: refused: {problem}; a defectlens checkpoint is a torch zip archive")
    with zipfile.ZipFile(path) as zf:
        if "spec.json" in zf.namelist():
            raise DefectlensError(f"{path}: this is a model bundle, not a checkpoint; load it as a bundle (.dlens)")
    recorded = _recorded_digests(path)
    if recorded and file_sha256(path) not in recorded:
        raise DefectlensError(
            f"{path}: refused: the file does not match its recorded sha256 ({checksum_path(path).name}): it changed "
            "after it was written (disk corruption, or another file copied over it)"
        )
