"""The inspector's batch: scored images, threshold re-labelling, metrics, filters and navigation.

The model scores each image once; its calibrated probabilities are kept. Moving the threshold or
the positive class re-labels the whole batch with :func:`defectlens.core.decision.decide` (no new
inference), and the figures at that threshold on labelled images (missed defects, false alarms,
accuracy, expected cost) come from :func:`defectlens.evaluation.metrics.compute_metrics`, so the
window, the CLI and the evaluation report agree. A frame the model's gate would not let it judge
(``needs_review``) has no probabilities, so no threshold ever gives it a class; it is neither unreadable
nor a decision, and the ``needs_review`` filter steps through it (with the frames ``--gate warn`` decided
but flagged). Nothing here draws or touches a display.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from defectlens.core.decision import decide
from defectlens.core.errors import DefectlensError
from defectlens.evaluation.metrics import compute_metrics
from defectlens.inference.gate import GateCheck
from defectlens.inference.predictor import Prediction

#: Filters the operator steps through, with the names the window shows.
FILTERS = {
    "all": "All images",
    "mistakes": "Mistakes only",
    "missed": "Missed defects (FN)",
    "false_alarms": "False alarms (FP)",
    "needs_review": "Needs review (not judged)",
    "errors": "Unreadable",
}
#: What the window says for a frame the gate would not let the model judge.
NOT_JUDGED = "NOT JUDGED: needs review"


@dataclass
class Item:
    """One image of the batch: what the model said, and what the operator said."""

    path: Path
    truth: str | None = None
    latency_ms: float | None = None
    error: str = ""
    refused: bool = False  # the gate sent the frame for review: no class (status needs_review)
    gate: GateCheck | None = None
    scored: bool = False
    inspection_id: int | None = None  # the image's row in the log for this model (this session's or earlier)
    logged_prediction: str | None = None  # the decision that row holds (it may differ at today's threshold)
    verdict: str | None = None
    verdict_label: str | None = None
    comment: str = ""
    unsaved: str = ""  # why the last verdict given could not be written (empty once one is saved)
    saving: bool = False  # a verdict is on its way to the log

    @property
    def review(self) -> str:
        """The gate's reasons when it flagged the frame (refused, or decided with the flag), else empty."""
        return self.gate.reason if self.gate is not None and self.gate.flagged else ""


@dataclass(frozen=True)
class ItemView:
    """What the window shows for one image at the current threshold."""

    index: int
    item: Item
    prediction: str | None
    confidence: float | None
    probabilities: dict[str, float]
    match: str | None  # "MATCH", "MISMATCH", or None without ground truth or prediction


@dataclass(frozen=True)
class MetricsInput:
    """Labels and probabilities of a batch's labelled images, and the decision settings to score them with."""

    y: np.ndarray
    probs: np.ndarray
    class_names: tuple[str, ...]
    positive_index: int | None
    threshold: float | None
    costs: tuple[float, float]

    def compute(self) -> dict[str, Any]:
        """The figures of :func:`compute_metrics` (no bootstrap: the window needs them at once)."""
        return compute_metrics(
            self.y,
            self.probs,
            class_names=self.class_names,
            positive_index=self.positive_index,
            threshold=self.threshold,
            cost_fn=self.costs[0],
            cost_fp=self.costs[1],
            bootstrap=0,
        )


class Session:
    """A batch of images and its decisions at the operator's threshold.

    Args:
        class_names: the model's classes, in output order.
        positive_class: the class the threshold applies to (None: most probable class wins).
        threshold: decision threshold on the positive class's probability.
        costs: cost of a missed defect and of a false alarm (expected cost per part).
        seed: seed of the Random button (tests fix it).
    """

    def __init__(
        self,
        class_names: Sequence[str] = (),
        *,
        positive_class: str | None = None,
        threshold: float | None = None,
        costs: tuple[float, float] = (10.0, 1.0),
        seed: int | None = None,
    ):
        self.class_names = tuple(class_names)
        self.costs = costs
        self.positive_class: str | None = None
        self.threshold: float | None = None
        self.items: list[Item] = []
        self.position: int | None = None
        self.filter = "all"
        self._probs = np.zeros((0, len(self.class_names)))
        self._rng = random.Random(seed)
        self.set_positive_class(positive_class)
        self.set_threshold(threshold)

    # -- the batch ---------------------------------------------------------------------------------

    def set_inputs(self, files: Sequence[Path], truth: dict[Path, str] | None = None) -> None:
        """Start a new batch of ``files``; ``truth`` maps files to their ground-truth class."""
        truth = truth or {}
        self.items = [Item(Path(f), truth.get(Path(f))) for f in files]
        self._probs = np.full((len(self.items), len(self.class_names)), np.nan)
        self.position = 0 if self.items else None
        self.filter = "all"

    def apply(self, index: int, prediction: Prediction) -> None:
        """Store the model's result for image ``index`` (an error row marks the image unreadable; a
        ``needs_review`` row keeps no probabilities, only the gate's finding)."""
        item = self.items[index]
        item.scored, item.latency_ms, item.gate = True, prediction.latency_ms, prediction.gate
        if prediction.status == "needs_review":
            item.refused = True
            return
        if not prediction.ok:
            item.error = prediction.reason or "cannot read image"
            return
        self._probs[index] = [prediction.probabilities[c] for c in self.class_names]

    @property
    def scored(self) -> int:
        return sum(item.scored for item in self.items)

    @property
    def usable(self) -> np.ndarray:
        """Mask of images with probabilities (scored and readable)."""
        if not self.class_names:  # no model yet: nothing has probabilities
            return np.zeros(len(self.items), dtype=bool)
        return np.asarray(~np.isnan(self._probs).any(axis=1), dtype=bool)

    def probabilities(self, index: int) -> np.ndarray | None:
        row = self._probs[index]
        return None if not self.class_names or np.isnan(row).any() else row

    # -- threshold and decisions -------------------------------------------------------------------

    def set_positive_class(self, name: str | None) -> None:
        if name is not None and name not in self.class_names:
            raise DefectlensError(f"positive class {name!r} is not one of {', '.join(self.class_names)}")
        self.positive_class = name

    def set_threshold(self, value: float | None) -> None:
        if value is not None and not 0.0 <= float(value) <= 1.0:
            raise DefectlensError(f"threshold must be between 0 and 1, got {value}")
        self.threshold = None if value is None else float(value)

    @property
    def positive_index(self) -> int | None:
        return None if self.positive_class is None else self.class_names.index(self.positive_class)

    @property
    def uses_threshold(self) -> bool:
        """True when the threshold decides (a binary model with a positive class); else argmax."""
        return self.positive_index is not None and self.threshold is not None and len(self.class_names) == 2

    def decisions(self) -> np.ndarray:
        """Class index of every image at the current threshold; -1 where there is no prediction."""
        out = np.full(len(self.items), -1)
        ok = self.usable
        if ok.any():
            out[ok] = decide(self._probs[ok], positive_index=self.positive_index, threshold=self.threshold)
        return out

    def truth_indices(self) -> np.ndarray:
        """Ground-truth class index of every image; -1 where unknown or not a model class."""
        lookup = {c: i for i, c in enumerate(self.class_names)}
        return np.array([lookup.get(item.truth or "", -1) for item in self.items], dtype=int)

    def metrics_input(self) -> MetricsInput | None:
        """A copy of what the metrics need (labelled readable images), None when there are none;
        :meth:`MetricsInput.compute` may then run in another thread while the batch changes."""
        labelled = self.usable & (self.truth_indices() >= 0)
        if not labelled.any():
            return None
        return MetricsInput(
            y=self.truth_indices()[labelled],
            probs=self._probs[labelled],
            class_names=self.class_names,
            positive_index=self.positive_index,
            threshold=self.threshold if self.uses_threshold else None,
            costs=self.costs,
        )

    def metrics(self) -> dict[str, Any] | None:
        """Every figure of :func:`compute_metrics` at the current threshold, on the labelled readable
        images (None when there are none): ``fn`` missed defects, ``fp`` false alarms, ``accuracy``,
        ``expected_cost`` per part with this session's costs."""
        inputs = self.metrics_input()
        return None if inputs is None else inputs.compute()

    def view(self, index: int) -> ItemView:
        """The image at ``index`` as the window shows it at the current threshold."""
        item = self.items[index]
        probs = self.probabilities(index)
        if probs is None:
            return ItemView(index, item, None, None, {}, None)
        decided = int(self.decisions()[index])
        name = self.class_names[decided]
        match = None if item.truth is None else ("MATCH" if item.truth == name else "MISMATCH")
        probabilities = {c: float(p) for c, p in zip(self.class_names, probs, strict=True)}
        return ItemView(index, item, name, float(probs[decided]), probabilities, match)

    # -- filters and navigation --------------------------------------------------------------------

    def visible(self) -> list[int]:
        """Indices of the images the current filter shows, in batch order."""
        return self.select(self.filter)

    def select(self, name: str) -> list[int]:
        """Indices of the images filter ``name`` (a key of :data:`FILTERS`) keeps, in batch order."""
        n = len(self.items)
        if name == "all":
            return list(range(n))
        if name == "errors":
            return [i for i, item in enumerate(self.items) if item.error]
        if name == "needs_review":
            return [i for i, item in enumerate(self.items) if item.review]
        decided, truth, pos = self.decisions(), self.truth_indices(), self.positive_index
        known = (decided >= 0) & (truth >= 0)
        if name == "mistakes":
            mask = known & (decided != truth)
        elif pos is None:
            mask = np.zeros(n, bool)  # missed defects and false alarms need a positive class
        elif name == "missed":
            mask = known & (truth == pos) & (decided != pos)
        else:
            mask = known & (truth != pos) & (decided == pos)
        return np.flatnonzero(mask).tolist()

    def set_filter(self, name: str) -> None:
        """Step through ``name`` (a key of :data:`FILTERS`); moves to its first image if the current one is out."""
        if name not in FILTERS:
            raise DefectlensError(f"unknown filter {name!r}; choose one of {', '.join(FILTERS)}")
        self.filter = name
        shown = self.visible()
        if self.position not in shown:
            self.position = shown[0] if shown else self.position

    def go_next(self) -> int | None:
        later = [i for i in self.visible() if self.position is None or i > self.position]
        if later:
            self.position = later[0]
        return self.position

    def go_prev(self) -> int | None:
        earlier = [i for i in self.visible() if self.position is not None and i < self.position]
        if earlier:
            self.position = earlier[-1]
        return self.position

    def go_random(self) -> int | None:
        shown = self.visible()
        others = [i for i in shown if i != self.position] or shown
        if others:
            self.position = self._rng.choice(others)
        return self.position

    def go_to(self, index: int) -> None:
        if not 0 <= index < len(self.items):
            raise DefectlensError(f"no image {index} in a batch of {len(self.items)}")
        self.position = index

    def status_line(self) -> str:
        """``3/12 [Mistakes only] cast_def_0_1.jpeg  ground truth defect -> defect: MATCH``."""
        if self.position is None:
            return "no images: open an image or a folder"
        shown = self.visible()
        rank = f"{shown.index(self.position) + 1}/{len(shown)}" if self.position in shown else f"-/{len(shown)}"
        v = self.view(self.position)
        head = f"{rank} [{FILTERS[self.filter]}] {v.item.path.name}"
        if v.item.error:
            return f"{head}  ERROR: {v.item.error}"
        if v.item.refused:
            return f"{head}  {NOT_JUDGED}: {v.item.review}"
        if v.prediction is None:
            return f"{head}  scoring..."
        flag = f"  [flagged: {v.item.review}]" if v.item.review else ""
        if v.item.truth is None:
            return f"{head}  prediction {v.prediction} (no ground truth){flag}"
        return f"{head}  ground truth {v.item.truth} -> {v.prediction}: {v.match}{flag}"
