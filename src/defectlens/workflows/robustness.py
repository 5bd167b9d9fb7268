"""Robustness: a model's figures on a split under each shift of :mod:`defectlens.data.shifts`.

Owns :func:`evaluate_shifts`, behind ``defectlens evaluate --shifts`` and
``benchmarks/bench_robustness.py``. Every image is decoded once; each shift perturbs the decoded
image, then the Predictor preprocesses, scores and decides exactly as in production (stored
temperature and threshold: the model as deployed). The metrics are the evaluation's own.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from defectlens.core.progress import Progress
from defectlens.data.images import load_image
from defectlens.data.manifest import Manifest
from defectlens.data.shifts import Shift, family
from defectlens.evaluation.metrics import compute_metrics
from defectlens.inference.predictor import Predictor


@dataclass(frozen=True)
class ShiftScore:
    """A model's figures under one shift (``kind`` ``clean`` for the unperturbed images)."""

    name: str
    kind: str
    strength: str
    value: float
    n: int
    accuracy: float
    errors: int
    macro_f1: float
    defect_recall: float | None
    false_alarm_rate: float | None
    accuracy_change: float = 0.0


def _score(predictor: Predictor, images: list[Image.Image], y: np.ndarray, shift: Shift | None, batch: int) -> dict:
    logits = []
    for start in range(0, len(images), batch):
        chunk = images[start : start + batch]
        views = chunk if shift is None else [shift.apply(im, seed=start + i) for i, im in enumerate(chunk)]
        logits.append(predictor.logits(np.stack([predictor.preprocess(v) for v in views])))
    probs = predictor.probabilities(np.concatenate(logits))
    spec = predictor.spec
    return compute_metrics(
        y, probs, class_names=spec.class_names, positive_index=spec.positive_index, threshold=spec.threshold,
        bootstrap=0,
    )  # fmt: skip


def _row(name: str, kind: str, strength: str, value: float, m: dict[str, Any], clean: float | None) -> ShiftScore:
    return ShiftScore(
        name, kind, strength, value, m["n"], m["accuracy"], round((1 - m["accuracy"]) * m["n"]), m["macro_f1"],
        m.get("defect_recall"), m.get("false_alarm_rate"), 0.0 if clean is None else m["accuracy"] - clean,
    )  # fmt: skip


def evaluate_shifts(
    predictor: Predictor,
    manifest: Manifest,
    *,
    split: str = "test",
    shifts: Sequence[Shift] | None = None,
    batch_size: int = 32,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Accuracy, macro-F1, defect recall and false alarms on ``split``, clean and under each shift.

    Returns:
        ``{"split", "n", "threshold", "clean": row, "shifts": [rows], "worst": row, "worst_by_kind":
        {kind: {strength: row}}}``, rows as dicts of :class:`ShiftScore`.
    """
    shifts = list(family() if shifts is None else shifts)
    records = manifest.split(split)
    names = list(predictor.spec.class_names)
    y = np.array([names.index(rec.label) for rec in records])
    progress = progress or Progress()
    with progress.phase(f"decoding {split}", total=len(records), unit="img") as phase:
        images = []
        for rec in records:
            images.append(load_image(manifest.resolve(rec)))
            phase.advance()
    clean_m = _score(predictor, images, y, None, batch_size)
    clean = _row("clean", "clean", "", 0.0, clean_m, None)
    rows = []
    with progress.phase(f"{len(shifts)} shifts of {split}", total=len(shifts), unit="shift") as phase:
        for s in shifts:
            m = _score(predictor, images, y, s, batch_size)
            rows.append(_row(s.name, s.kind, s.strength, s.value, m, clean.accuracy))
            phase.advance()
    worst_by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for row in rows:
        worst = worst_by_kind.setdefault(row.kind, {}).get(row.strength)
        if worst is None or row.accuracy < worst["accuracy"]:
            worst_by_kind[row.kind][row.strength] = asdict(row)
    return {
        "split": split,
        "n": len(records),
        "threshold": predictor.spec.threshold,
        "model_id": predictor.model_id,
        "clean": asdict(clean),
        "shifts": [asdict(r) for r in rows],
        "worst": asdict(min(rows, key=lambda r: r.accuracy)) if rows else None,
        "worst_by_kind": worst_by_kind,
    }


def write_shift_report(result: dict[str, Any], out_dir: str | Path) -> Path:
    """``robustness.json`` in ``out_dir`` (beside an evaluation's metrics.json)."""
    path = Path(out_dir) / "robustness.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return path
