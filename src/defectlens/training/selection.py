"""Which epoch is kept: ranking by validation macro-F1, ties to the later epoch, and early stopping."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def rank_epoch(val_f1: float, best_f1: float, tol: float = 1e-9) -> tuple[bool, bool]:
    """``(becomes_best, strictly_better)`` for an epoch's validation macro-F1: ties go to the later epoch."""
    return val_f1 >= best_f1 - tol, val_f1 > best_f1 + tol


@dataclass
class EpochSelector:
    """Which epoch is best so far, and early stopping.

    A tie in macro-F1 (common once validation is saturated, e.g. 1.0 on casting) goes to the later
    epoch: a saturated split cannot rank the epochs, and under the cosine schedule the later model has
    trained longer at a lower rate. (Breaking ties by validation loss kept an under-trained epoch-2
    casting model: train accuracy 0.995, while its unsmoothed val loss rose from a few over-confident
    samples.) Only a strict gain resets early stopping.
    """

    best_f1: float = -1.0
    best_epoch: int = 0
    best_loss: float = float("inf")
    bad_epochs: int = 0

    def update(self, epoch: int, row: dict[str, Any]) -> bool:
        """Rank one epoch; returns True when it becomes the best."""
        best, strict = rank_epoch(row["val_macro_f1"], self.best_f1)
        if best:
            self.best_f1, self.best_epoch = max(self.best_f1, row["val_macro_f1"]), epoch
            self.best_loss = row["val_loss"]
        self.bad_epochs = 0 if strict else self.bad_epochs + 1
        return self.best_epoch == epoch

    def state(self) -> dict[str, Any]:
        return {
            "best_val_macro_f1": self.best_f1,
            "best_val_loss": self.best_loss,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
        }

    @classmethod
    def from_state(cls, payload: dict[str, Any]) -> EpochSelector:
        return cls(
            best_f1=float(payload["best_val_macro_f1"]),
            best_epoch=int(payload["best_epoch"]),
            best_loss=float(payload.get("best_val_loss", float("inf"))),
            bad_epochs=int(payload["bad_epochs"]),
        )
