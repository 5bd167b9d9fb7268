"""Train, then evaluate: the run ``defectlens train`` and ``defectlens demo`` perform.

Owns :func:`train_and_evaluate`: the training stage (:func:`defectlens.training.train`, ranking
epochs by validation macro-F1 at the F1-optimal threshold), the learning curves, then an evaluation
of ``best.pt`` on val and test whose calibration temperature and operating threshold are written
into its spec, so export, predict and serve decide exactly as evaluated.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from defectlens.core.anomaly import ANOMALY_TASK
from defectlens.core.checkpoint import save_checkpoint
from defectlens.core.errors import DefectlensError
from defectlens.core.progress import Progress
from defectlens.core.spec import TTA_VIEWS, ModelSpec
from defectlens.data.manifest import Manifest
from defectlens.evaluation.evaluate import EvalSettings
from defectlens.evaluation.threshold import f1_decisions
from defectlens.inference.predictor import Predictor
from defectlens.models import load_checkpoint
from defectlens.reporting.plots import learning_png, read_history
from defectlens.training import RunResult, train
from defectlens.training.config import TrainConfig
from defectlens.workflows.anomaly import train_anomaly
from defectlens.workflows.evaluate import evaluate_model


def train_and_evaluate(
    config: TrainConfig, *, resume: str | Path | None = None, progress: Progress | None = None
) -> RunResult:
    """Train as ``config`` says, draw ``curves.png``, and (``config.evaluate``) evaluate ``best.pt``.

    Returns:
        The training result; ``metrics`` holds the val and test metrics, ``spec`` the evaluated spec.
    """
    start = time.perf_counter()
    if config.task == ANOMALY_TASK:
        if resume is not None:
            raise DefectlensError("an anomaly run has no epochs to resume: train it again (it takes one pass)")
        result, run_dir = train_anomaly(config, progress=progress)
    else:
        result = train(config, resume=resume, progress=progress, val_decisions=f1_decisions)
        run_dir = result.run_dir
    if run_dir is None:  # a non-main process of a distributed run writes nothing
        return result
    if (run_dir / "history.csv").is_file():
        learning_png(read_history(run_dir / "history.csv"), path=run_dir / "curves.png")
    if config.evaluate and result.best_epoch > 0:
        result.spec, result.metrics = evaluate_best(run_dir, config, progress=progress)
    result.seconds = time.perf_counter() - start
    return result


def eval_settings(config: TrainConfig) -> EvalSettings:
    """How a training run's final evaluation decides: the threshold policy of its config."""
    return EvalSettings(
        # an anomaly score has no temperature to calibrate: its scale is set from held-out normal images
        calibrate=config.task != ANOMALY_TASK,
        threshold_method=config.threshold_method,
        target_recall=config.target_recall,
        cost_fn=config.cost_fn,
        cost_fp=config.cost_fp,
    )


def evaluate_best(
    run_dir: Path, config: TrainConfig, *, progress: Progress | None = None
) -> tuple[ModelSpec, dict[str, dict[str, Any]]]:
    """Evaluate ``run_dir/best.pt`` on val and test into ``run_dir/eval``; store T and the threshold in its spec."""
    model, spec, payload = load_checkpoint(run_dir / "best.pt")
    manifest = Manifest.read(payload["config"]["data"])
    evaluation = evaluate_model(
        Predictor.from_model(model, spec),
        manifest,
        out_dir=run_dir / "eval",
        # Training-set figures cost a full pass (times the TTA views) and say little; the curves in
        # history.csv show the fit. `defectlens evaluate --split train` reports them on request.
        splits=("val", "test"),
        # the views share one forward pass; an anomaly model's distances to its bank take the memory
        batch_size=8 if config.task == ANOMALY_TASK else max(4, 32 // len(TTA_VIEWS[spec.tta])),
        settings=eval_settings(config),
        run_info={"run_dir": run_dir.name, "config": config.to_dict()},
        history=run_dir / "history.csv",
        progress=progress,
    )
    result = evaluation.result
    spec = spec.replace(
        temperature=float(result.temperature),
        threshold=result.threshold.threshold if result.threshold is not None else None,
        positive_class=result.positive_class,
    )
    extra = {k: v for k, v in payload.items() if k not in ("format", "state_dict", "spec", "config")}
    extra["evaluation"] = {split: _plain(m) for split, m in result.metrics.items()}
    save_checkpoint(run_dir / "best.pt", model, spec, config=payload["config"], **extra)
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
