"""Models: the backbone registry, the :class:`Classifier` wrapper and the :class:`ModelSpec`.

``models`` never imports training, serving or GUI code.
"""

from defectlens.models.registry import (
    Classifier,
    ModelEntry,
    create_model,
    default_spec,
    get_entry,
    list_models,
    register_model,
)
from defectlens.models.spec import ModelSpec

__all__ = [
    "Classifier",
    "ModelEntry",
    "ModelSpec",
    "create_model",
    "default_spec",
    "get_entry",
    "list_models",
    "register_model",
]
