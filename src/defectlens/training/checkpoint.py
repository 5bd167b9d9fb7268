"""Checkpoints: state_dict + ModelSpec + config, nothing pickled.

A checkpoint is a plain dict of tensors, strings and numbers, so it loads with
``torch.load(weights_only=True)``; loading refuses anything else (a pickled module or a tampered
file), because unpickling a file from a user path can run arbitrary code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from defectlens.errors import DefectlensError
from defectlens.models.registry import Classifier, create_model
from defectlens.models.spec import ModelSpec

FORMAT = "defectlens-checkpoint/1"


def save_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    spec: ModelSpec,
    *,
    config: dict[str, Any] | None = None,
    **extra: Any,
) -> Path:
    """Write ``{"format", "state_dict", "spec", "config", **extra}``; ``extra`` must be plain data
    (numbers, strings, lists, dicts, tensors) such as epoch, optimizer state and metrics."""
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


def model_from_state(state_dict: dict[str, torch.Tensor], spec: ModelSpec) -> Classifier:
    """Rebuild the network described by ``spec`` and load ``state_dict`` into it (eval mode)."""
    model = create_model(
        spec.arch,
        num_classes=spec.num_classes,
        in_channels=spec.in_channels,
        input_size=spec.input_size,
        pretrained=False,
    )
    model.load_state_dict(state_dict, strict=True)
    model.tta = spec.tta
    return model.eval()


def load_checkpoint(path: str | Path) -> tuple[Classifier, ModelSpec, dict[str, Any]]:
    """Model (eval mode), its spec, and the whole checkpoint payload."""
    payload = read_checkpoint(path)
    spec = ModelSpec.from_dict(payload["spec"])
    return model_from_state(payload["state_dict"], spec), spec, payload
