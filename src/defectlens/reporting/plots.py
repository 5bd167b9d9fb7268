"""Figures of the evaluation report, each returned as PNG bytes (and optionally saved).

Owns confusion matrices, ROC and PR curves, the reliability diagram, the threshold/cost curve,
learning curves from ``history.csv`` and the grid of most confident mistakes. matplotlib is
imported inside :func:`_figure` with the Agg backend, so importing this module is cheap and no
display is ever needed.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _figure(w: float = 5.0, h: float = 4.0, ncols: int = 1) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt.subplots(1, ncols, figsize=(w * ncols, h), squeeze=False)


def _png(fig: Any, path: str | Path | None = None) -> bytes:
    import matplotlib
    import matplotlib.pyplot as plt
    from matplotlib.text import Text

    # Class and file names are data: a "$" in one (``bad$^$``) must print as it is, not start mathtext
    # (an unparsable formula would abort the figure, and with it the report). No label here is a formula.
    with matplotlib.rc_context({"text.parse_math": False}):  # also for tick labels made while drawing
        for text in fig.findobj(Text):
            text.set_parse_math(False)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    data = buf.getvalue()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(data)
    return data


def confusion_png(cm: Sequence[Sequence[int]], class_names: Sequence[str], *, title: str, path: Any = None) -> bytes:
    """Counts (left) and row-normalised rates (right); rows are true classes."""
    m = np.asarray(cm, dtype=np.float64)
    rows = m.sum(axis=1, keepdims=True)
    norm = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    k = len(class_names)
    side = max(3.5, 0.6 * k + 2)
    fig, axes = _figure(side, side * 0.85, ncols=2)
    for ax, data, sub, fmt in ((axes[0, 0], m, "counts", "{:.0f}"), (axes[0, 1], norm, "row-normalised", "{:.2f}")):
        ax.imshow(data, cmap="Blues", vmin=0)
        ax.set_xticks(range(k), class_names, rotation=45, ha="right")
        ax.set_yticks(range(k), class_names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{title} ({sub})")
        hi = data.max() if data.size else 0
        for i in range(k):
            for j in range(k):
                color = "white" if hi and data[i, j] > hi / 2 else "black"
                ax.text(j, i, fmt.format(data[i, j]), ha="center", va="center", color=color, fontsize=8)
    return _png(fig, path)


def _curve_classes(probs: np.ndarray, positive_index: int | None) -> list[int]:
    if probs.shape[1] == 2:
        return [1 if positive_index is None else positive_index]
    return list(range(probs.shape[1]))


_CURVES = {
    "roc": ("false positive rate", "true positive rate", "AUC", "lower right"),
    "pr": ("recall", "precision", "AP", "lower left"),
}


def _curve(kind: str, yc: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

    if kind == "roc":
        fpr, tpr, _ = roc_curve(yc, scores)
        return fpr, tpr, float(roc_auc_score(yc, scores))
    prec, rec, _ = precision_recall_curve(yc, scores)
    return rec, prec, float(average_precision_score(yc, scores))


def _operating_point(kind: str, yc: np.ndarray, scores: np.ndarray, threshold: float) -> tuple[float, float]:
    """Where the decision ``score >= threshold`` sits on the curve."""
    pred = scores >= threshold
    tp, fp = int(np.sum(pred & (yc == 1))), int(np.sum(pred & (yc == 0)))
    pos, neg = int(yc.sum()), int(len(yc) - yc.sum())
    recall = tp / pos if pos else 0.0
    if kind == "roc":
        return fp / neg if neg else 0.0, recall
    return recall, tp / (tp + fp) if tp + fp else 1.0


def ranking_png(
    kind: str,
    y: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    *,
    positive_index: int | None,
    title: str,
    threshold: float | None = None,
    path: Any = None,
) -> bytes:
    """ROC (``kind="roc"``) or precision-recall (``"pr"``) curve of the defect class (binary) or
    one-vs-rest per class (multi-class); a binary curve marks the operating threshold's point."""
    xlabel, ylabel, score_name, legend = _CURVES[kind]
    fig, axes = _figure()
    ax = axes[0, 0]
    for c in _curve_classes(probs, positive_index):
        yc = (y == c).astype(int)
        if 0 < yc.sum() < len(yc):
            xs, ys, area = _curve(kind, yc, probs[:, c])
            ax.plot(xs, ys, label=f"{class_names[c]} ({score_name} {area:.3f})")
            if threshold is not None and probs.shape[1] == 2:
                px, py = _operating_point(kind, yc, probs[:, c], threshold)
                ax.plot([px], [py], "o", color="crimson", label=f"operating point (threshold {threshold:.3g})")
    if kind == "roc":
        ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title, xlim=(0, 1), ylim=(0, 1.02))
    if ax.get_legend_handles_labels()[0]:  # a split of one class (good-only validation) has no curve
        ax.legend(loc=legend, fontsize=7)
    return _png(fig, path)


def reliability_png(
    before: list[dict[str, Any]], after: list[dict[str, Any]], *, title: str, path: Any = None
) -> bytes:
    """Accuracy vs confidence per bin, before and after temperature scaling."""
    fig, axes = _figure()
    ax = axes[0, 0]
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8, label="perfect")
    for bins, label, marker in ((before, "before", "o"), (after, "after", "s")):
        pts = [(b["confidence"], b["accuracy"], b["count"]) for b in bins if b["count"]]
        if pts:
            xs, ys, _ = zip(*pts, strict=True)
            ax.plot(xs, ys, marker=marker, label=label)
    for b in after:  # how many images each calibrated bin holds: a bin of 2 says little
        if b["count"]:
            ax.annotate(
                f"n={b['count']}", (b["confidence"], b["accuracy"]), textcoords="offset points", xytext=(0, -11),
                ha="center", fontsize=6, color="dimgrey",
            )  # fmt: skip
    ax.set(xlabel="confidence", ylabel="accuracy", title=f"{title}; n per bin after", xlim=(0, 1), ylim=(0, 1.05))
    ax.legend(loc="upper left", fontsize=8)
    return _png(fig, path)


def threshold_png(sweep: list[dict[str, float]], *, chosen: float, title: str, path: Any = None) -> bytes:
    """Precision, recall, F1 (left axis) and expected cost (right axis) against the threshold."""
    fig, axes = _figure(6.0, 4.0)
    ax = axes[0, 0]
    t = [r["threshold"] for r in sweep]
    for key in ("precision", "recall", "f1"):
        ax.plot(t, [r[key] for r in sweep], label=key, drawstyle="steps-post")
    ax.set(xlabel="threshold on defect probability", ylabel="rate", title=title, xlim=(0, 1), ylim=(0, 1.05))
    ax2 = ax.twinx()
    ax2.plot(t, [r["cost"] for r in sweep], color="black", ls=":", label="cost / part", drawstyle="steps-post")
    ax2.set_ylabel("expected cost per part")
    ax.axvline(chosen, color="red", lw=1)
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="lower left", fontsize=7)
    return _png(fig, path)


def read_history(path: str | Path) -> dict[str, list[float]]:
    """Columns of a training ``history.csv`` as float lists (non-numeric cells become NaN)."""
    with Path(path).open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    cols: dict[str, list[float]] = {}
    for row in rows:
        for key, val in row.items():
            try:
                cols.setdefault(key, []).append(float(val))
            except (TypeError, ValueError):
                cols.setdefault(key, []).append(float("nan"))
    return cols


def learning_png(history: dict[str, list[float]], *, path: Any = None) -> bytes | None:
    """Losses (left) and every other per-epoch metric (right) from a history table."""
    if "epoch" not in history or not history["epoch"]:
        return None
    epoch = history["epoch"]
    losses = [k for k in history if k.endswith("loss")]
    # timings (data_s, epoch_s...) and the learning rate have other scales; keep quality metrics only
    others = [
        k
        for k in history
        if k not in losses and k.startswith(("train_", "val_")) and not k.endswith(("_s", "threshold"))
    ]
    fig, axes = _figure(5.0, 3.6, ncols=2)
    for ax, keys, label in ((axes[0, 0], losses, "loss"), (axes[0, 1], others, "metric")):
        for key in keys:
            ax.plot(epoch, history[key], marker=".", label=key)
        ax.set(xlabel="epoch", ylabel=label, title=f"learning curves ({label})")
        if keys:
            ax.legend(fontsize=7)
    return _png(fig, path)


def thumbnail_png(image: np.ndarray, size: int = 160) -> bytes:
    """A small PNG of an image (H, W) or (H, W, 3) uint8, for the report's galleries (PIL, no plotting)."""
    from PIL import Image

    img = Image.fromarray(image)
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
