"""The files of an evaluation: ``metrics.json``, ``predictions.csv``, figures and ``report.html``.

Owns :func:`write_evaluation`, which turns an
:class:`~defectlens.evaluation.evaluate.EvaluationResult` and the scores it came from into those
files. ``predictions.csv`` decides with the same temperature and threshold as the metrics, so its
wrong rows are exactly the errors the metrics count.
"""

from __future__ import annotations

import csv
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from defectlens.data.manifest import SPLITS
from defectlens.evaluation.evaluate import EvaluationResult, SplitScores
from defectlens.inference.predictor import Predictor
from defectlens.reporting.figures import render_figures
from defectlens.reporting.report import write_report


def evaluation_payload(result: EvaluationResult, *, provenance: dict[str, Any]) -> dict[str, Any]:
    """The ``metrics.json`` content: decisions, metrics per split, calibration, slices and provenance."""
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "splits": result.splits,
        "temperature": result.temperature,
        "positive_class": result.positive_class,
        "threshold": result.threshold.to_dict() if result.threshold else None,
        "settings": result.settings.to_dict(),
        "calibration": result.calibration,
        "metrics": result.metrics,
        "slices": result.slices,
        "notes": result.notes,
        "gate": result.gate,
        "provenance": json.loads(json.dumps(provenance, default=str)),  # paths and odd types become strings
    }


def write_predictions(
    path: Path, result: EvaluationResult, scores: dict[str, SplitScores], *, root: Path | None
) -> Path:
    """One row per evaluated image: split, path, label, decision, correct, calibrated probabilities, and
    whether the gate flagged it (``needs_review`` true/false and the kinds of its reasons; empty without a gate).

    Paths are relative to the dataset folder when they lie inside it.
    """
    names = list(result.metrics[result.splits[0]]["class_names"])
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            ["split", "path", "label", "prediction", "correct", *(f"p_{c}" for c in names), "needs_review", "gate"]
        )
        for split in result.splits:
            if split not in SPLITS:  # a subset of a split (test_unseen): its rows are already written
                continue
            sc = scores[split]
            probs, pred = result.decisions(sc)
            kinds = sc.gate_kinds if sc.gate_kinds is not None else [None] * len(sc.y)
            for p, y, k, row, why in zip(sc.paths, sc.y, pred, probs, kinds, strict=True):
                shown = p.relative_to(root) if root is not None and p.is_relative_to(root) else p
                flag = "" if why is None else str(bool(why)).lower()
                writer.writerow(
                    [split, shown.as_posix(), names[y], names[k], int(y == k), *(f"{v:.6g}" for v in row), flag,
                     ";".join(why or ())]
                )  # fmt: skip
    return path


def write_evaluation(
    result: EvaluationResult,
    scores: dict[str, SplitScores],
    *,
    predictor: Predictor,
    out_dir: str | Path,
    provenance: dict[str, Any],
    root: Path | None = None,
    history: Path | None = None,
) -> Path:
    """Write metrics.json, predictions.csv, plots/ and report.html into ``out_dir``; returns the report path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload = evaluation_payload(result, provenance=provenance)
    (out / "metrics.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    write_predictions(out / "predictions.csv", result, scores, root=root)
    figures = render_figures(predictor, result, scores, out_dir=out, history=history)
    return write_report(payload, figures, out / "report.html")
