"""defectlens: visual inspection for manufacturing.

Import images of parts, train an honest defect classifier, see why it decides, and run it
fast on an ordinary CPU, offline. ``import defectlens`` stays cheap: heavy modules (torch,
onnxruntime, matplotlib, fastapi) load only when the function that needs them runs.

The layers, bottom to top (each imports only those below it; ``tests/test_architecture.py``
enforces it): ``core``; ``data``, ``models``; ``training``, ``evaluation``; ``inference``;
``export``, ``explain``; ``reporting``, ``inspections``; ``workflows``; ``serve``, ``gui``; ``cli``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from defectlens.core.version import __version__

__all__ = [
    "DefectlensError",
    "Manifest",
    "ModelSpec",
    "Predictor",
    "__version__",
    "create_model",
    "evaluate_run",
    "export_bundle",
    "list_models",
    "train_and_evaluate",
]

from defectlens.core.errors import DefectlensError

if TYPE_CHECKING:
    from defectlens.core.spec import ModelSpec
    from defectlens.data.manifest import Manifest
    from defectlens.export.exporter import export_bundle
    from defectlens.inference.predictor import Predictor
    from defectlens.models import create_model, list_models
    from defectlens.workflows.evaluate import evaluate_run
    from defectlens.workflows.train import train_and_evaluate

_LAZY = {
    "Manifest": "defectlens.data.manifest",
    "ModelSpec": "defectlens.core.spec",
    "Predictor": "defectlens.inference.predictor",
    "create_model": "defectlens.models",
    "list_models": "defectlens.models",
    "train_and_evaluate": "defectlens.workflows.train",
    "evaluate_run": "defectlens.workflows.evaluate",
    "export_bundle": "defectlens.export.exporter",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'defectlens' has no attribute {name!r}")
