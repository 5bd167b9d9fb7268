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
from defectlens.explain.maps import method
from defectlens.inference.predictor import Predictor
from defectlens.reporting import plots

#: Mistakes shown in the report (every one up to this; the rest are in predictions.csv).
MAX_MISTAKES = 200
#: The most confident mistakes get a Grad-CAM overlay (each costs a backward pass); the rest a plain image.
MAX_EXPLAINED = 24


def confident_mistakes(
    predictor: Predictor,
    paths: list[Path],
    y: np.ndarray,
    probs: np.ndarray,
    pred: np.ndarray,
    *,
    limit: int = MAX_MISTAKES,
    explained: int = MAX_EXPLAINED,
) -> tuple[list[bytes], list[str], str]:
    """PNG thumbnails and captions of the wrong predictions, most confident first (up to ``limit``).

    Returns:
        thumbnails, captions, and a note saying how many have Grad-CAM overlays.
    """
    names = predictor.spec.class_names
    wrong = np.flatnonzero(pred != y)
    order = wrong[np.argsort(-probs[wrong, pred[wrong]], kind="stable")][:limit]
    explain = _explainer(predictor)
    note = (
        f"the {min(explained, len(order))} most confident with {method(predictor)} overlays"
        if explain
        else "plain images (no CAM output in the graph and no torch weights for Grad-CAM)"
    )
    thumbs, captions = [], []
    for rank, i in enumerate(order):
        img = None
        if explain is not None and rank < explained:
            try:
                # explain the class the evaluation predicted (it may differ from the spec's own decision)
                img = displayable(explain(predictor, paths[i], target=int(pred[i])).overlay)
            except Exception as exc:  # an explainer failure must not lose the evaluation
                note = f"plain images ({method(predictor)} failed: {type(exc).__name__}: {exc})"
                explain = None
        if img is None:
            img = displayable(predictor.preprocess(paths[i]))
        thumbs.append(plots.thumbnail_png(img))
        captions.append(f"{paths[i].name}: true {names[y[i]]}, called {names[pred[i]]} (p={probs[i, pred[i]]:.3f})")
    return thumbs, captions, note


def _explainer(predictor: Predictor) -> Any:
    """:func:`defectlens.explain.maps.explain` when this install and model can explain (the graph's CAM, or
    Grad-CAM through torch), else None."""
    from defectlens.explain.maps import explain, unavailable

    return explain if unavailable(predictor) is None else None


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
    thumbs, captions, note = confident_mistakes(predictor, s.paths, s.y, probs, pred)
    figs["mistakes"] = list(zip(thumbs, captions, strict=True))
    figs["_mistakes_note"] = (
        f"{len(thumbs)} of {int((pred != s.y).sum())} mistakes on {split}, most confident first; {note}. "
        "Every decision is in predictions.csv."
    )
    return figs
