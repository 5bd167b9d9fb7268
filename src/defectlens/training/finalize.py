"""After training: evaluate the best checkpoint and write its decisions into its spec.

The calibration temperature and the binary operating threshold are fitted on validation by
:func:`defectlens.evaluation.runner.run_evaluation` (which also writes metrics.json, plots and
report.html into ``<run>/eval``); they are stored into ``best.pt``'s spec so every later consumer
(export, predict, serve) decides exactly as evaluated.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from defectlens.config import TrainConfig
from defectlens.data.manifest import Manifest
from defectlens.models.spec import TTA_VIEWS, ModelSpec
from defectlens.training.checkpoint import load_checkpoint, save_checkpoint


def evaluate_best(
    run_dir: Path, manifest: Manifest, config: TrainConfig, *, log: logging.Logger | None = None
) -> tuple[ModelSpec, dict[str, dict[str, Any]]]:
    """Evaluate ``run_dir/best.pt`` on val and test; returns the updated spec and metrics per split."""
    from defectlens.evaluation.runner import run_evaluation
    from defectlens.inference.predictor import Predictor

    model, spec, payload = load_checkpoint(run_dir / "best.pt")
    result = run_evaluation(
        Predictor.from_model(model, spec),
        manifest,
        out_dir=run_dir / "eval",
        # Training-set figures cost a full pass (times the TTA views) and say little; the curves in
        # history.csv show the fit. `defectlens evaluate --split train` reports them on request.
        splits=("val", "test"),
        batch_size=max(4, 32 // TTA_VIEWS[spec.tta]),  # the views share one forward pass
        threshold_method=config.threshold_method,
        target_recall=config.target_recall,
        cost_fn=config.cost_fn,
        cost_fp=config.cost_fp,
        calibrate=True,
        run_info={"run_dir": str(run_dir), "config": config.to_dict(), "history": str(run_dir / "history.csv")},
        quiet=True,
    )
    spec = spec.replace(
        temperature=float(result.temperature),
        threshold=result.threshold.threshold if result.threshold is not None else None,
        positive_class=result.positive_class,
    )
    extra = {k: v for k, v in payload.items() if k not in ("format", "state_dict", "spec", "config")}
    extra["evaluation"] = {split: _plain(m) for split, m in result.metrics.items()}
    save_checkpoint(run_dir / "best.pt", model, spec, config=payload["config"], **extra)
    if log is not None:
        for split, m in result.metrics.items():
            log.info("eval %s: %s", split, {k: m[k] for k in ("accuracy", "macro_f1", "defect_recall") if k in m})
    return spec, result.metrics


def _plain(value: Any) -> Any:
    """Numbers, strings, lists and dicts only (checkpoints load with weights_only=True)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)
