"""Which figures an evaluation draws, from which split, saved under ``plots/``.

Owns :func:`render_figures` (the report's figure list) and :func:`confident_mistakes` (the most
confidently wrong images, with Grad-CAM overlays when the model has torch weights). Drawing itself
lives in :mod:`defectlens.reporting.plots`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from defectlens.core.decision import softmax
from defectlens.data.images import displayable
from defectlens.evaluation.evaluate import EvaluationResult, SplitScores
from defectlens.inference.predictor import Predictor
from defectlens.reporting import plots

MAX_MISTAKES = 8


def confident_mistakes(
    predictor: Predictor,
    paths: list[Path],
    y: np.ndarray,
    probs: np.ndarray,
    pred: np.ndarray,
    *,
    limit: int = MAX_MISTAKES,
) -> tuple[list[np.ndarray], list[str], str]:
    """Images and captions of the ``limit`` wrong predictions with the highest confidence.

    Returns:
        images, captions, and a note saying whether Grad-CAM overlays were drawn.
    """
    names = predictor.spec.class_names
    wrong = np.flatnonzero(pred != y)
    order = wrong[np.argsort(-probs[wrong, pred[wrong]], kind="stable")][:limit]
    explain = _explainer(predictor)
    note = "Grad-CAM overlays" if explain else "plain images (no torch weights for Grad-CAM)"
    images, captions = [], []
    for i in order:
        img = None
        if explain is not None:
            try:
                # explain the class the evaluation predicted (it may differ from the spec's own decision)
                img = displayable(explain(predictor, paths[i], target=int(pred[i]))[1])
            except Exception as exc:  # an explainer failure must not lose the evaluation
                note = f"plain images (Grad-CAM failed: {type(exc).__name__}: {exc})"
                explain = None
        if img is None:
            img = displayable(predictor.preprocess(paths[i]))
        images.append(img)
        captions.append(f"{paths[i].name}\ntrue {names[y[i]]} / pred {names[pred[i]]} ({probs[i, pred[i]]:.2f})")
    return images, captions, note


def _explainer(predictor: Predictor) -> Any:
    """Grad-CAM's ``explain`` when this install and model can run it, else None."""
    if not predictor.has_torch_weights:
        return None
    try:
        from defectlens.explain.gradcam import explain
    except ImportError:  # an inference-only install has no torch / grad-cam
        return None
    return explain


def render_figures(
    predictor: Predictor,
    result: EvaluationResult,
    scores: dict[str, SplitScores],
    *,
    out_dir: Path,
    history: Path | None = None,
) -> dict[str, Any]:
    """Draw every figure into ``out_dir/plots`` and return ``{name: png bytes}`` plus captions."""
    names = list(predictor.spec.class_names)
    pdir = out_dir / "plots"
    pos_idx = result.positive_index
    figs: dict[str, Any] = {}
    for split in result.splits:
        s = scores[split]
        probs = softmax(s.logits, result.temperature)
        cm = result.metrics[split]["confusion_matrix"]
        figs[f"confusion_{split}"] = plots.confusion_png(cm, names, title=split, path=pdir / f"confusion_{split}.png")
        threshold = result.threshold.threshold if result.threshold is not None else None
        for kind, label in (("roc", "ROC"), ("pr", "PR")):
            figs[f"{kind}_{split}"] = plots.ranking_png(
                kind,
                s.y,
                probs,
                names,
                positive_index=pos_idx,
                threshold=threshold,
                title=f"{label} ({split})",
                path=pdir / f"{kind}_{split}.png",
            )
    cal = result.calibration
    figs["reliability"] = plots.reliability_png(
        cal["before"]["bins"],
        cal["after"]["bins"],
        title=f"reliability ({cal['fitted_on'] or 'not fitted'})",
        path=pdir / "reliability.png",
    )
    thr = result.threshold
    if thr is not None and thr.sweep:
        figs["threshold"] = plots.threshold_png(
            thr.sweep, chosen=thr.threshold, title="threshold sweep (val)", path=pdir / "threshold.png"
        )
    if history is not None and history.is_file():
        png = plots.learning_png(plots.read_history(history))  # the run folder keeps it as curves.png
        if png:
            figs["learning"] = png
    split = "test" if "test" in result.splits else result.splits[-1]
    s = scores[split]
    probs, pred = result.decisions(s)
    images, captions, note = confident_mistakes(predictor, s.paths, s.y, probs, pred)
    png = plots.mistakes_png(images, captions, title=f"most confident mistakes ({split})", path=pdir / "mistakes.png")
    if png:
        figs["mistakes"] = png
    figs["_mistakes_note"] = f"{len(images)} of {int((pred != s.y).sum())} mistakes on {split}; {note}"
    return figs
