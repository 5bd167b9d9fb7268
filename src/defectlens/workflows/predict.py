"""Predicting a file, folder or glob: inputs, ground truth from class subfolders, the CSV, metrics.

This is the library behind ``defectlens predict``; the CLI only parses arguments and prints.
Every input gets a row, written to ``predictions.csv`` as soon as it is decided: an unreadable file
becomes an error row (``status="error"``) and the run goes on, so one bad file from a line camera
never hides the verdicts on the rest, and a crash never loses the rows already written.
"""

from __future__ import annotations

import csv
import glob
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from defectlens.core.errors import DefectlensError
from defectlens.core.progress import Progress
from defectlens.evaluation.metrics import compute_metrics
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


@dataclass
class FolderResult:
    """What predicting many files produced: counts per decision, errors, metrics on labelled files."""

    csv_path: Path | None
    files: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    mismatches: int = 0
    metrics: dict[str, Any] | None = None


def _metrics(
    predictor: Predictor, labelled: list[tuple[str, Prediction]], threshold: float | None
) -> dict[str, Any] | None:
    """Accuracy, per-class recall and confusion over files with ground truth (the evaluation's metrics)."""
    if not labelled:
        return None
    names = list(predictor.spec.class_names)
    y = np.array([names.index(t) for t, _ in labelled])
    probs = np.array([[p.probabilities[c] for c in names] for _, p in labelled])
    t = predictor.spec.threshold if threshold is None else threshold
    return compute_metrics(
        y, probs, class_names=names, positive_index=predictor.spec.positive_index, threshold=t, bootstrap=0
    )


def predict_files(
    predictor: Predictor,
    inputs: Inputs,
    *,
    out: str | Path | None = None,
    threshold: float | None = None,
    explain: bool = False,
    batch_size: int = 16,
    progress: Progress | None = None,
) -> FolderResult:
    """Predict every input, writing each row of ``predictions.csv`` (and Grad-CAM PNGs) into ``out`` as it comes."""
    names = list(predictor.spec.class_names)
    out_dir = Path(out) if out is not None else None
    result = FolderResult(csv_path=out_dir / CSV_FILE if out_dir is not None else None)
    labelled: list[tuple[str, Prediction]] = []
    counts: Counter[str] = Counter()
    results = predictor.predict_many([str(f) for f in inputs.files], batch_size=batch_size, threshold=threshold)
    with (
        _CsvSink(result.csv_path) as sink,
        (progress or Progress()).phase("predicting", total=len(inputs.files), unit="img") as phase,
    ):
        for i, (f, pred) in enumerate(zip(inputs.files, results, strict=True)):
            if explain and pred.ok and out_dir is not None:
                pred = _with_overlay(predictor, f, pred, out_dir / "gradcam" / f"{i:05d}_{f.stem}.png")
            truth = inputs.truth.get(f)
            row = row_of(pred, names, truth)
            sink.write(row)
            counts[pred.prediction if pred.ok else "ERROR"] += 1
            if not pred.ok:
                result.errors.append(row)
            elif truth:
                labelled.append((truth, pred))
                result.mismatches += row["match"] == "MISMATCH"
            phase.advance()
    result.files, result.counts = len(inputs.files), dict(counts)
    result.metrics = _metrics(predictor, labelled, threshold)
    return result


def _with_overlay(predictor: Predictor, file: Path, pred: Prediction, path: Path) -> Prediction:
    from defectlens.explain.gradcam import save_overlay

    saved = save_overlay(predictor, file, path, target=pred.prediction)
    return Prediction(**{**pred.__dict__, "extra": {**pred.extra, "overlay": str(saved)}})


class _CsvSink:
    """Writes CSV rows one at a time, flushed, so a crash keeps every row already decided."""

    def __init__(self, path: Path | None):
        self.path = path
        self._fh: Any = None
        self._writer: csv.DictWriter[str] | None = None

    def __enter__(self) -> _CsvSink:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("w", newline="", encoding="utf-8")
        return self

    def write(self, row: dict[str, Any]) -> None:
        if self._fh is None:
            return
        if self._writer is None:
            self._writer = csv.DictWriter(self._fh, fieldnames=list(row))
            self._writer.writeheader()
        self._writer.writerow(row)
        self._fh.flush()

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            self._fh.close()
