"""Continuing a stopped run: its config, and a ``last.pt`` checked to belong to it before anything is written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from defectlens.core.checkpoint import read_checkpoint
from defectlens.core.errors import DefectlensError
from defectlens.training.config import TrainConfig


def config_from_run(run_dir: str | Path) -> TrainConfig:
    """The config a run was started with (from its ``last.pt``), for ``--resume``.

    Raises:
        DefectlensError: when ``last.pt`` cannot be resumed from (see :func:`resume_payload`).
    """
    payload = resume_payload(run_dir)
    cfg = {k: v for k, v in payload["config"].items() if k not in ("train_fingerprint", "data_fingerprint")}
    return TrainConfig.from_dict(cfg, source=str(Path(run_dir) / "last.pt"))


#: What ``last.pt`` must hold to continue a run (``best.pt`` has no optimizer state).
RESUME_KEYS = (
    "state_dict", "config", "epoch", "optimizer", "scheduler", "generator", "torch_rng",
    "best_val_macro_f1", "best_epoch", "bad_epochs",
)  # fmt: skip


def resume_payload(run_dir: str | Path) -> dict[str, Any]:
    """``run_dir/last.pt``, checked to be a complete checkpoint of this very run before anything is written.

    The checkpoint's digest is verified (see :mod:`defectlens.core.checkpoint`), its resume state must
    be complete, and its run id must be the one in the folder's ``hparams.json`` (runs from before run
    ids: its training-data fingerprint must match instead).

    Raises:
        DefectlensError: naming what is wrong and what to do.
    """
    run_dir = Path(run_dir)
    last = run_dir / "last.pt"
    if not run_dir.is_dir():
        raise DefectlensError(f"{run_dir}: not a run folder (give the folder 'defectlens train' created)")
    if not last.is_file():
        raise DefectlensError(f"{last}: not found; the run saved no epoch to resume from (start it again)")
    payload = read_checkpoint(last)
    missing = [k for k in RESUME_KEYS if k not in payload]
    if missing:
        raise DefectlensError(
            f"{last}: cannot resume: it lacks {', '.join(missing)} (best.pt keeps the weights only; was it copied "
            "over last.pt?). Start a new run, or fine-tune from best.pt"
        )
    if not isinstance(payload["config"], dict) or not isinstance(payload["epoch"], int) or payload["epoch"] < 1:
        raise DefectlensError(f"{last}: cannot resume: its config or epoch is malformed")
    hparams = _read_hparams(run_dir)
    mine, theirs = hparams.get("run_id"), payload.get("run_id")
    if mine or theirs:
        if mine != theirs:
            raise DefectlensError(
                f"{last}: refused: this checkpoint belongs to another run (run id {theirs or 'none'}, the folder's "
                f"hparams.json says {mine or 'none'}); nothing was changed. Resume the run folder it came from"
            )
    elif hparams.get("data_fingerprint") not in (None, payload.get("data_fingerprint")):
        raise DefectlensError(
            f"{last}: refused: this checkpoint was trained on other data than this run folder records "
            "(data fingerprints differ); nothing was changed. Resume the run folder it came from"
        )
    return payload


def _read_hparams(run_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((run_dir / "hparams.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
