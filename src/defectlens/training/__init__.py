"""Training: ``train(config) -> RunResult``, the in-memory data path, input strategies, augmentation,
DDP and the run folder. Training knows nothing of evaluation or inference; the workflow layer
evaluates what it produced.

Heavy imports (torch) happen when an attribute is first used, so ``import defectlens.training`` is cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = ["RunResult", "config_from_run", "train"]


def __getattr__(name: str) -> Any:
    if name == "config_from_run":
        from defectlens.training.resume import config_from_run

        return config_from_run
    if name in __all__:
        from defectlens.training import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'defectlens.training' has no attribute {name!r}")
