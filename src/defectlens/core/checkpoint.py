"""Checkpoints: state_dict + ModelSpec + config, nothing pickled.

A checkpoint is a plain dict of tensors, strings and numbers, so it loads with
``torch.load(weights_only=True)``; loading refuses anything else (a pickled module or a tampered
file), because unpickling a file from a user path can run arbitrary code. Rebuilding the network
from a checkpoint is :func:`defectlens.models.load_checkpoint` (this layer knows no architectures).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from defectlens.core.errors import DefectlensError
from defectlens.core.spec import ModelSpec

if TYPE_CHECKING:
    from torch import nn

FORMAT = "defectlens-checkpoint/1"


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
    torch.save(payload, tmp)
    tmp.replace(path)  # atomic: a crash never leaves half a checkpoint
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint dict safely.

    Raises:
        DefectlensError: if the file is missing, not a defectlens checkpoint, or needs unpickling.
    """
    import torch

    path = Path(path)
    if path.is_dir():
        path = path / "best.pt"
    if not path.is_file():
        raise DefectlensError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DefectlensError(
            f"{path}: refused: not a plain-data defectlens checkpoint (weights_only load failed: "
            f"{str(exc).splitlines()[0]})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise DefectlensError(f"{path}: not a defectlens checkpoint (expected format {FORMAT})")
    return payload
