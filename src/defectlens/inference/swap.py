"""The model in force and the one before it: :class:`ModelSlot`, the one owner of "the current model" that the
web service and the line station swap through while they run.

A swap loads the new bundle *beside* the one serving (Predictor.load runs the bundle's own checks and the load
probe), checks that it names the same classes (a different class set changes what the log's columns mean:
refused unless asked for), warms it up with one call on a blank frame of its input size, and only then replaces
the reference under a lock. The old model is never touched: a caller that took :attr:`ModelSlot.current` before
the swap finishes on it, and any failure leaves it in force. The model it replaced stays loaded as
:attr:`ModelSlot.previous`, so :meth:`ModelSlot.rollback` is instant.

A swap blocks for as long as the load takes (seconds): the web service runs it on a worker thread, the station
on the thread that asked. Two swaps at once are taken one after the other.

Example:
    >>> slot = ModelSlot(Predictor.load("model.dlens"), path="model.dlens")  # doctest: +SKIP
    >>> slot.swap("model-v2.dlens").model_id  # doctest: +SKIP
    '9f2c...'
    >>> slot.rollback().model_id  # back to the first  # doctest: +SKIP
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from defectlens.core.bundle import is_bundle
from defectlens.core.errors import DefectlensError
from defectlens.inference.predictor import Predictor

#: What changed the model: a load of a given path, the start path re-read (SIGHUP), or a rollback.
SwapAction = Literal["load", "reload", "rollback"]


class ClassesDiffer(DefectlensError):
    """The new model names other classes than the one serving (and the caller did not allow it)."""


class NoPrevious(DefectlensError):
    """A rollback asked before any swap: there is no previous model."""


@dataclass(frozen=True)
class Swapped:
    """What a swap did: the model now in force and the one kept for a rollback, and how long the load took."""

    action: SwapAction
    model_id: str | None
    previous_model_id: str | None
    classes: tuple[str, ...]
    path: str | None
    load_ms: float

    def to_dict(self) -> dict[str, object]:
        return {
            "action": self.action,
            "model_id": self.model_id,
            "previous_model_id": self.previous_model_id,
            "classes": list(self.classes),
            "path": self.path,
            "load_ms": self.load_ms,
        }


def warm_up(predictor: Predictor) -> None:
    """One model call on a blank (black) frame of the model's input size: the runtime's first-call costs
    (allocations, kernel choice) are paid here, not by the first part."""
    spec = predictor.spec
    predictor.logits(np.zeros((1, spec.in_channels, spec.input_size, spec.input_size), np.uint8))


def check_classes(old: Predictor, new: Predictor, *, name: str, allow_new_classes: bool) -> None:
    """Refuse ``new`` when it names other classes (or the same in another order) than ``old``, unless allowed.

    Raises:
        ClassesDiffer: naming both lists and how to go ahead anyway.
    """
    before, after = old.spec.class_names, new.spec.class_names
    if tuple(before) != tuple(after) and not allow_new_classes:
        raise ClassesDiffer(
            f"{name}: refused: its classes [{', '.join(after)}] differ from the served model's "
            f"[{', '.join(before)}]; the log's prediction and probabilities would change meaning. "
            'To swap anyway, allow it explicitly (POST /v1/model with "allow_new_classes": true), or restart with it'
        )


class ModelSlot:
    """The current Predictor and the previous one, swapped atomically (see the module docstring).

    Args:
        predictor: the model in force at start.
        path: the file it was loaded from (what :meth:`reload` reads again; None: nothing to reload).
        threads: ``Predictor.load``'s ``threads`` for every model loaded here (as the first was loaded).
        precision: ``Predictor.load``'s ``precision`` likewise.

    The gate mode in force (``--gate``) carries over: a new model is loaded with the current model's mode.
    """

    def __init__(
        self,
        predictor: Predictor,
        *,
        path: str | Path | None = None,
        threads: int | None = None,
        precision: str = "auto",
    ):
        self._current = predictor
        self._previous: Predictor | None = None
        self.path = None if path is None else Path(path)
        self.threads, self.precision = threads, precision
        self._state = threading.Lock()  # current and previous change together
        self._swapping = threading.Lock()  # one load at a time

    @property
    def current(self) -> Predictor:
        """The model in force now: take it once per request or frame and use that one throughout."""
        return self._current

    @property
    def previous(self) -> Predictor | None:
        """The model the last swap replaced (None before any swap)."""
        return self._previous

    def ids(self) -> tuple[str | None, str | None]:
        """The current and previous model ids, read together."""
        with self._state:
            return self._current.model_id, None if self._previous is None else self._previous.model_id

    def swap(
        self,
        path: str | Path,
        *,
        allow_new_classes: bool = False,
        bundle_only: bool = False,
        check: Callable[[Predictor], object] | None = None,
        action: SwapAction = "load",
    ) -> Swapped:
        """Load ``path``, check and warm it up, then put it in force; the model it replaces becomes :attr:`previous`.

        Args:
            path: a ``.dlens`` bundle (or, unless ``bundle_only``, a run folder or checkpoint).
            allow_new_classes: accept a model whose classes differ from the current one's.
            bundle_only: refuse anything but a bundle (a checkpoint is a pickle: never from a remote caller).
            check: the caller's own test of the new model (raises DefectlensError to refuse it), before warm-up.
            action: how the swap is reported (``load`` or ``reload``).

        Raises:
            DefectlensError: for a missing, corrupt or refused file (:class:`ClassesDiffer` for other classes);
                the current model stays in force.
        """
        p = Path(path)
        if bundle_only and not is_bundle(p):
            what = "not found" if not p.exists() else "not a .dlens bundle"
            raise DefectlensError(f"{p}: {what}; give the path of a bundle on this machine ('defectlens export RUN')")
        with self._swapping:
            start = time.perf_counter()
            try:
                new = Predictor.load(p, threads=self.threads, precision=self.precision, gate=self._current.gate.mode)
            except DefectlensError:
                raise
            except Exception as exc:  # unreadable (permissions, I/O) or a runtime's own error type
                raise DefectlensError(f"{p}: refused: it could not be loaded ({type(exc).__name__}: {exc})") from None
            check_classes(self._current, new, name=str(p), allow_new_classes=allow_new_classes)
            if check is not None:
                check(new)
            try:
                warm_up(new)
            except Exception as exc:  # the load probe passed, so this is rare: a runtime that fails on black
                raise DefectlensError(f"{p}: refused: the warm-up call failed ({type(exc).__name__}: {exc})") from None
            load_ms = round((time.perf_counter() - start) * 1000.0, 1)
            with self._state:
                self._previous, self._current = self._current, new
            return self._report(action, str(p), load_ms)

    def reload(self, *, check: Callable[[Predictor], object] | None = None) -> Swapped:
        """Read the start path again (a bundle replaced on disk) and put it in force, as :meth:`swap` does.

        Raises:
            DefectlensError: when no start path is known, or as :meth:`swap`.
        """
        if self.path is None:
            raise DefectlensError("nothing to reload: this model was not loaded from a file")
        return self.swap(self.path, check=check, action="reload")

    def rollback(self) -> Swapped:
        """Put the previous model back in force (instant: it is still loaded); the current one becomes previous.

        Raises:
            DefectlensError: when no swap happened yet.
        """
        with self._swapping, self._state:
            if self._previous is None:
                raise NoPrevious("no previous model to roll back to: no swap has happened since the start")
            self._previous, self._current = self._current, self._previous
            return self._report("rollback", None, 0.0)

    def _report(self, action: SwapAction, path: str | None, load_ms: float) -> Swapped:
        current, previous = self._current, self._previous
        return Swapped(
            action=action,
            model_id=current.model_id,
            previous_model_id=None if previous is None else previous.model_id,
            classes=tuple(current.spec.class_names),
            path=path,
            load_ms=load_ms,
        )
