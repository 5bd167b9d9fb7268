"""The run folder: ``runs/<name>-<YYYYmmdd-HHMMSS>/`` with config, history, log and figures.

Only rank 0 of a distributed run writes here. Everything is plain text (YAML, JSON, CSV) or PNG,
so a run can be inspected without defectlens installed.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

HISTORY_FIELDS = (
    "epoch",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "val_macro_f1",
    "val_threshold",
    "lr",
    "data_s",
    "compute_s",
    "eval_s",
    "epoch_s",
)


def new_run_dir(out: str | Path, name: str) -> Path:
    """Create ``<out>/<name>-<YYYYmmdd-HHMMSS>`` (with a numeric suffix if that exists already)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(out) / f"{name}-{stamp}"
    path, i = base, 1
    while path.exists():
        path, i = Path(f"{base}-{i}"), i + 1
    path.mkdir(parents=True)
    return path


def get_logger(run_dir: Path | None) -> logging.Logger:
    """A logger writing to ``run_dir/train.log`` (or nowhere, on non-zero ranks)."""
    logger = logging.getLogger(f"defectlens.train.{run_dir}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
    if run_dir is not None:
        handler = logging.FileHandler(run_dir / "train.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        logger.addHandler(handler)
    else:
        logger.addHandler(logging.NullHandler())
    return logger


def write_hparams(run_dir: Path, hparams: dict[str, Any]) -> Path:
    """``hparams.json``: the resolved config plus what was derived from it (sizes, steps, device)."""
    path = run_dir / "hparams.json"
    path.write_text(json.dumps(hparams, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    return path


def append_history(run_dir: Path, row: dict[str, Any]) -> None:
    """Append one epoch to ``history.csv`` and ``history.jsonl``."""
    csv_path = run_dir / "history.csv"
    new = not csv_path.exists()
    with csv_path.open("a", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=HISTORY_FIELDS, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow(row)
    with (run_dir / "history.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(row, sort_keys=True) + "\n")


def read_history(run_dir: Path) -> list[dict[str, Any]]:
    """The epochs recorded in ``history.jsonl``; unreadable lines (a crash mid-write, an editor) are skipped."""
    return _history_lines(run_dir)[0]


def _history_lines(run_dir: Path) -> tuple[list[dict[str, Any]], int]:
    path = run_dir / "history.jsonl"
    if not path.is_file():
        return [], 0
    rows, bad = [], 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if isinstance(row, dict) and isinstance(row.get("epoch"), int):
            rows.append(row)
        else:
            bad += 1
    return rows, bad


def truncate_history(run_dir: Path, last_epoch: int) -> tuple[list[dict[str, Any]], int]:
    """Keep only epochs ``<= last_epoch`` (a resumed run rewrites what happened after its checkpoint).

    Returns:
        The rows kept, and how many unreadable lines were dropped.
    """
    rows, bad = _history_lines(run_dir)
    rows = [r for r in rows if r["epoch"] <= last_epoch]
    for name in ("history.csv", "history.jsonl"):
        (run_dir / name).unlink(missing_ok=True)
    for r in rows:
        append_history(run_dir, r)
    return rows, bad


def save_samples(run_dir: Path, batch: np.ndarray, labels: list[str]) -> Path:
    """``train_samples.png``: a grid of augmented training images (float (N, C, H, W) in [0, 1])."""
    from defectlens.data.preview import image_grid

    path = run_dir / "train_samples.png"
    image_grid(list(batch[:16]), labels[:16], columns=4, tile=128).save(path)
    return path
