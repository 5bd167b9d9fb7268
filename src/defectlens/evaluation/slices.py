"""Results by slice: the error rate of each value of an image attribute, so errors that gather in one
group show (a cell type, the experts' confidence, a camera or a shift recorded in a CSV import).

Owns :func:`slice_keys` (which attributes are worth slicing by) and :func:`slice_table`. The
attributes are the manifest's per-image ``meta`` fields with a few distinct scalar values, plus the
image size and mode when a dataset mixes several. Nothing here is fitted: it only counts decisions
the metrics already made.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from defectlens.data.manifest import Record

MAX_VALUES = 12  # more distinct values than this is an identifier (a hash, a file name), not a group


def attribute(record: Record, key: str) -> Any:
    """The value of ``key`` for ``record``: a meta field, or ``size`` (``WxH``) and ``mode``."""
    if key == "size":
        return f"{record.width}x{record.height}"
    if key == "mode":
        return record.mode
    return record.meta.get(key)


def _label(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _order(value: Any) -> tuple[int, Any]:
    """Numbers in numeric order, then text."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value)
    return (1, str(value))


def slice_keys(records: Sequence[Record], *, max_values: int = MAX_VALUES) -> list[str]:
    """Attributes with 2 to ``max_values`` distinct scalar values over ``records``, in a stable order."""
    keys = sorted({k for r in records for k, v in r.meta.items() if isinstance(v, (str, int, float, bool))})
    chosen = []
    for key in [*keys, "size", "mode"]:
        values = {_label(attribute(r, key)) for r in records}
        if 2 <= len(values) <= max_values:
            chosen.append(key)
    return chosen


def slice_table(
    records: Sequence[Record],
    y: np.ndarray,
    pred: np.ndarray,
    *,
    class_names: Sequence[str],
    positive_index: int | None = None,
    keys: Sequence[str] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """For each attribute, one row per value: images, errors, accuracy and, with a defect class,
    the defects among them and how many were missed.

    Args:
        records: the images, in the order of ``y`` and ``pred``.
        y: true class indices.
        pred: decided class indices (after the threshold).
        class_names: names of the class indices.
        positive_index: index of the defect class of a binary task, or None.
        keys: attributes to slice by; default :func:`slice_keys` of ``records``.
    """
    if not (len(records) == len(y) == len(pred)):
        raise ValueError(f"{len(records)} records but {len(y)} labels and {len(pred)} decisions")
    out: dict[str, list[dict[str, Any]]] = {}
    for key in slice_keys(records) if keys is None else keys:
        raw = [attribute(r, key) for r in records]
        values = [_label(v) for v in raw]
        order = {label: _order(v) for label, v in zip(values, raw, strict=True)}
        rows = []
        for value in sorted(set(values), key=order.__getitem__):
            idx = np.array([v == value for v in values])
            errors = int((y[idx] != pred[idx]).sum())
            n = int(idx.sum())
            row: dict[str, Any] = {"value": value, "n": n, "errors": errors, "accuracy": (n - errors) / n}
            labels = sorted({class_names[k] for k in y[idx]})
            row["labels"] = labels
            if positive_index is not None:
                defects = idx & (y == positive_index)
                row["defects"] = int(defects.sum())
                row["missed_defects"] = int((pred[defects] != positive_index).sum())
            rows.append(row)
        out[key] = rows
    return out
