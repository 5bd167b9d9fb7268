"""Predicting a file, folder or glob: inputs, ground truth from class subfolders, CSV and metrics.

This is the library behind ``defectlens predict``; the CLI only parses arguments and prints.
Every input gets a row: unreadable files become error rows (``status="error"``) and the run
goes on, so one bad file from a line camera never hides the verdicts on the rest.
"""

from __future__ import annotations

import csv
import glob
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from defectlens.errors import DefectlensError
from defectlens.inference.predictor import Prediction, Predictor

CSV_FILE = "predictions.csv"


@dataclass
class Inputs:
    """Files to predict, their ground truth (class subfolder name) where known, and the input kind."""

    files: list[Path]
    truth: dict[Path, str] = field(default_factory=dict)
    kind: str = "file"  # "file", "folder" or "glob"


def collect_inputs(target: str | Path, class_names: Iterable[str] = ()) -> Inputs:
    """Resolve IMAGE, DIR or GLOB to files; in a folder whose subfolders are named after classes,
    each file below such a subfolder gets that class as ground truth.

    Raises:
        DefectlensError: when nothing matches.
    """
    p = Path(target)
    if p.is_file():
        return Inputs([p], kind="file")
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and not _hidden(f.relative_to(p)) and f.name != CSV_FILE)
        classes = set(class_names)
        truth = {}
        for f in files:
            top = f.relative_to(p).parts[0]
            if top in classes and len(f.relative_to(p).parts) > 1:
                truth[f] = top
        if not files:
            raise DefectlensError(f"{p}: folder has no files to predict")
        return Inputs(files, truth, "folder")
    if glob.has_magic(str(target)):
        # absolute or relative patterns alike; Path.glob cannot take an absolute pattern
        files = sorted(Path(f) for f in glob.glob(str(target), recursive=True) if Path(f).is_file())  # noqa: PTH207
        if not files:
            raise DefectlensError(f"{target}: the pattern matches no files")
        return Inputs(files, kind="glob")
    raise DefectlensError(f"{target}: no such file or folder (give an image, a folder or a glob pattern)")


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def row_of(pred: Prediction, class_names: Iterable[str], truth: str | None) -> dict[str, Any]:
    """A flat CSV row: status, prediction, confidence, one probability column per class, truth."""
    row: dict[str, Any] = {
        "file": pred.file,
        "status": pred.status,
        "prediction": pred.prediction,
        "confidence": round(pred.confidence, 6) if pred.ok else "",
    }
    for c in class_names:
        row[f"p_{c}"] = round(pred.probabilities[c], 6) if pred.ok else ""
    row["threshold"] = "" if pred.threshold is None else pred.threshold
    row["latency_ms"] = round(pred.latency_ms, 3)
    row["truth"] = truth or ""
    row["match"] = ("MATCH" if pred.prediction == truth else "MISMATCH") if truth and pred.ok else ""
    row["reason"] = pred.reason
    row["overlay"] = pred.extra.get("overlay", "")
    return row


def metrics_of(rows: list[dict[str, Any]], class_names: list[str]) -> dict[str, Any] | None:
    """Accuracy, per-class recall and confusion matrix (scikit-learn) over rows with ground truth."""
    scored = [r for r in rows if r["truth"] and r["status"] == "ok"]
    if not scored:
        return None
    from sklearn.metrics import accuracy_score, confusion_matrix, recall_score

    y_true = [r["truth"] for r in scored]
    y_pred = [r["prediction"] for r in scored]
    recall = recall_score(y_true, y_pred, labels=class_names, average=None, zero_division=0)
    present = set(y_true)
    return {
        "images": len(scored),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "recall": {c: float(r) for c, r in zip(class_names, recall, strict=True) if c in present},
        "confusion_matrix": {
            "labels": class_names,
            "matrix": confusion_matrix(y_true, y_pred, labels=class_names).tolist(),
        },
    }


def predict_files(
    predictor: Predictor,
    inputs: Inputs,
    *,
    out: str | Path | None = None,
    threshold: float | None = None,
    explain: bool = False,
    batch_size: int = 16,
    progress: Callable[[Iterable[Prediction], int], Iterable[Prediction]] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Predict every input; write ``predictions.csv`` (and Grad-CAM PNGs with ``explain``) into ``out``.

    Returns:
        The CSV rows and the metrics (None when no file had ground truth).
    """
    names = list(predictor.spec.class_names)
    results: Iterable[Prediction] = predictor.predict_many(
        [str(f) for f in inputs.files], batch_size=batch_size, threshold=threshold
    )
    if progress is not None:
        results = progress(results, len(inputs.files))
    out_dir = Path(out) if out is not None else None
    rows = []
    for i, (f, pred) in enumerate(zip(inputs.files, results, strict=True)):
        if explain and pred.ok and out_dir is not None:
            from defectlens.explain.gradcam import save_overlay

            path = save_overlay(predictor, f, out_dir / "gradcam" / f"{i:05d}_{f.stem}.png", target=pred.prediction)
            pred = Prediction(**{**pred.__dict__, "extra": {**pred.extra, "overlay": str(path)}})
        rows.append(row_of(pred, names, inputs.truth.get(f)))
    if out_dir is not None:
        write_csv(rows, out_dir / CSV_FILE)
    return rows, metrics_of(rows, names)


def write_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["file"])
        writer.writeheader()
        writer.writerows(rows)
    return path
