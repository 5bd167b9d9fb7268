"""defectlens: visual inspection for manufacturing.

Import images of parts, train an honest defect classifier, see why it decides, and run it
fast on an ordinary CPU, offline. ``import defectlens`` stays cheap: heavy modules (torch,
onnxruntime, matplotlib, fastapi) load only when the function that needs them runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["DefectlensError", "Manifest", "ModelSpec", "Predictor", "__version__", "create_model", "list_models"]

from defectlens.errors import DefectlensError

if TYPE_CHECKING:
    from defectlens.data.manifest import Manifest
    from defectlens.inference.predictor import Predictor
    from defectlens.models.registry import create_model, list_models
    from defectlens.models.spec import ModelSpec

_LAZY = {
    "Manifest": "defectlens.data.manifest",
    "ModelSpec": "defectlens.models.spec",
    "Predictor": "defectlens.inference.predictor",
    "create_model": "defectlens.models.registry",
    "list_models": "defectlens.models.registry",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'defectlens' has no attribute {name!r}")
