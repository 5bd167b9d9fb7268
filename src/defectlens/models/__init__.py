"""Models: the backbone registry, the :class:`Classifier` every backbone becomes, and its factories.

Importing ``defectlens.models`` imports the zoo, whose builders register themselves; the registry
itself imports no architecture. ``models`` depends only on ``defectlens.core``.
"""

from defectlens.models import (
    patchcore,  # noqa: F401  (registers the anomaly model's rebuilder)
    zoo,  # noqa: F401  (fills the registry)
)
from defectlens.models.classifier import (
    Classifier,
    create_model,
    dihedral,
    forward_batches,
    load_checkpoint,
    model_from_state,
)
from defectlens.models.registry import ModelEntry, default_spec, get_entry, list_models, register_model

__all__ = [
    "Classifier",
    "ModelEntry",
    "create_model",
    "default_spec",
    "dihedral",
    "forward_batches",
    "get_entry",
    "list_models",
    "load_checkpoint",
    "model_from_state",
    "register_model",
]
