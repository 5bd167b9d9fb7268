"""An evaluation as computation: logits and labels per split in, decisions and metrics out.

Owns :func:`evaluate`. The calibration temperature and the binary operating threshold are fitted
on the validation split only, so changing test labels cannot change them; then every requested
split is measured with them and its errors are counted by image attribute. Nothing here runs a
model, reads images or writes files: :mod:`defectlens.workflows.evaluate` scores the splits through
the Predictor, and :mod:`defectlens.reporting` writes ``metrics.json``, the figures and the report.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from defectlens.core.decision import decide, softmax
from defectlens.core.errors import DefectlensError
from defectlens.core.spec import ModelSpec
from defectlens.data.manifest import SPLITS, Record
from defectlens.evaluation.calibration import calibration_summary, choose_temperature
from defectlens.evaluation.coverage import gate_figures
from defectlens.evaluation.metrics import compute_metrics
from defectlens.evaluation.slices import slice_keys, slice_table
from defectlens.evaluation.threshold import METHODS, ThresholdChoice, choose_threshold, threshold_sweep


@dataclass
class SplitScores:
    """Raw logits of one split, its labels (spec class order), image paths and manifest records.

    ``gate_kinds``: per image, the kinds of the reasons the model's gate flagged it for (empty: it
    passed); None when no gate was in force.
    """

    logits: np.ndarray
    y: np.ndarray
    paths: list[Path]
    records: list[Record] = field(default_factory=list)
    gate_kinds: list[tuple[str, ...]] | None = None


@dataclass(frozen=True)
class EvalSettings:
    """How an evaluation decides (see ``defectlens evaluate --help``)."""

    threshold_method: str = "f1"
    target_recall: float = 0.99
    cost_fn: float = 10.0
    cost_fp: float = 1.0
    calibrate: bool = True
    refit: bool = True
    bootstrap: int = 1000

    def __post_init__(self) -> None:
        if self.threshold_method not in METHODS:
            raise DefectlensError(
                f"threshold method must be one of {', '.join(METHODS)}, got {self.threshold_method!r}"
            )
        if not 0.0 < self.target_recall <= 1.0:
            raise DefectlensError(f"target recall must be in (0, 1], got {self.target_recall}")
        if self.cost_fn < 0 or self.cost_fp < 0:
            raise DefectlensError(f"costs must be >= 0, got FN {self.cost_fn} and FP {self.cost_fp}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EvaluationResult:
    """What an evaluation decided and measured; ``metrics`` is ``{split: compute_metrics dict}``.

    ``gate``: the gate in force (mode, note...) and, under ``splits``, its coverage figures per split
    (:func:`~defectlens.evaluation.coverage.gate_figures`); empty when the evaluation was given no gate.
    """

    splits: list[str]
    temperature: float
    threshold: ThresholdChoice | None
    positive_class: str | None
    metrics: dict[str, dict[str, Any]]
    calibration: dict[str, Any]
    slices: dict[str, Any]
    settings: EvalSettings
    notes: list[str] = field(default_factory=list)
    gate: dict[str, Any] = field(default_factory=dict)

    @property
    def positive_index(self) -> int | None:
        names = self.metrics[self.splits[0]]["class_names"]
        return names.index(self.positive_class) if self.positive_class is not None else None

    def decisions(self, scores: SplitScores) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated probabilities and decided classes of ``scores`` with this evaluation's rule."""
        probs = softmax(scores.logits, self.temperature)
        thr = self.threshold.threshold if self.threshold is not None else None
        return probs, decide(probs, positive_index=self.positive_index, threshold=thr)


def positive_class_of(spec: ModelSpec, dataset_positive: str | None) -> str | None:
    """The defect class a binary evaluation uses: the model's, else the dataset's; None for multi-class."""
    names = list(spec.class_names)
    pos = spec.positive_class or dataset_positive
    return pos if len(names) == 2 and pos in names else None


def _temperature(
    scores: dict[str, SplitScores], spec: ModelSpec, settings: EvalSettings, notes: list[str]
) -> tuple[float, str, bool]:
    """The temperature (fitted on val only), how it was chosen, and whether it was fitted."""
    temperature = float(spec.temperature)
    fitted = settings.refit and settings.calibrate and "val" in scores
    if fitted:
        temperature, method = choose_temperature(scores["val"].logits, scores["val"].y)
        if method == "rule_of_succession":
            n_val = len(scores["val"].y)
            notes.append(
                f"validation classified without error ({n_val} images): no temperature minimises its NLL, so "
                f"T = {temperature:.3g} gives a mean validation confidence of (n+1)/(n+2) = "
                f"{(n_val + 1) / (n_val + 2):.4f}"
            )
        return temperature, method, True
    if settings.refit and settings.calibrate:
        notes.append(f"no validation split: temperature kept at the spec's {temperature:g}")
    elif not settings.refit:
        notes.append(f"not refitted: temperature {temperature:g} and threshold as stored in the model spec")
    return temperature, "", False


def _threshold(
    val: SplitScores | None, temperature: float, pos_idx: int, spec: ModelSpec, settings: EvalSettings
) -> ThresholdChoice:
    """The operating threshold: fitted on val when refitting, else the spec's (or 0.5), said why."""
    stored = spec.threshold if spec.threshold is not None else 0.5
    origin = "stored in the model spec" if spec.threshold is not None else "default 0.5 (the spec stores none)"
    if val is None and settings.refit:
        return ThresholdChoice(stored, "fixed", f"{origin}; no validation split to fit a threshold on", [])
    if val is None:
        return ThresholdChoice(stored, "stored", f"{origin}; not refitted (evaluating the model as deployed)", [])
    y_pos = val.y == pos_idx
    p_pos = softmax(val.logits, temperature)[:, pos_idx]
    sweep = threshold_sweep(y_pos, p_pos, cost_fn=settings.cost_fn, cost_fp=settings.cost_fp)
    if not settings.refit:
        return ThresholdChoice(stored, "stored", f"{origin}; not refitted (evaluating the model as deployed)", sweep)
    try:
        return choose_threshold(
            y_pos,
            p_pos,
            method=settings.threshold_method,
            target_recall=settings.target_recall,
            cost_fn=settings.cost_fn,
            cost_fp=settings.cost_fp,
        )
    except DefectlensError as exc:
        return ThresholdChoice(stored, "fixed", f"{origin}; could not fit on validation: {exc}", sweep)


def evaluate(
    scores: dict[str, SplitScores],
    *,
    spec: ModelSpec,
    report: list[str],
    dataset_positive: str | None = None,
    settings: EvalSettings | None = None,
    gate: dict[str, Any] | None = None,
) -> EvaluationResult:
    """Fit temperature and threshold on ``scores["val"]``, then measure every split in ``report``.

    Args:
        scores: logits and labels per split; ``val`` (when present) is used for fitting only.
        spec: the model's spec (class order, stored temperature and threshold, defect class).
        report: the splits to measure, each a key of ``scores``.
        dataset_positive: the dataset's defect class, used when the spec names none.
        settings: threshold method, costs, recall target, calibration and refitting.
        gate: the model's gate as its ``describe()`` gives it; the splits whose scores carry
            ``gate_kinds`` then get coverage figures beside the plain ones (measured on every image).

    Raises:
        DefectlensError: for an empty ``report`` or a split without scores.
    """
    settings = settings or EvalSettings()
    missing = [s for s in report if s not in scores]
    if not report or missing:
        raise DefectlensError(f"nothing to evaluate: splits {report} (no scores for {missing})")
    broken = {s: int((~np.isfinite(sc.logits).all(axis=1)).sum()) for s, sc in scores.items()}
    if any(broken.values()):  # metrics of NaN are noise; a diverged or damaged model is the user's to fix
        where = ", ".join(f"{n} of {len(scores[s].logits)} {s} images" for s, n in broken.items() if n)
        raise DefectlensError(
            f"the model's outputs are not finite numbers (NaN or infinite) on {where}: its training diverged or it "
            "is damaged; train again with a lower learning rate (--lr)"
        )
    notes: list[str] = []
    temperature, method, fitted = _temperature(scores, spec, settings, notes)
    pos = positive_class_of(spec, dataset_positive)
    pos_idx = list(spec.class_names).index(pos) if pos is not None else None
    cal = scores["val"] if "val" in scores else scores[report[0]]
    calibration = calibration_summary(
        cal.logits, cal.y, before=float(spec.temperature), after=temperature, positive_index=pos_idx,
        fitted_on="val" if fitted else "",
    )  # fmt: skip
    calibration["method"] = method
    choice = None
    if pos_idx is not None:
        choice = _threshold(scores.get("val"), temperature, pos_idx, spec, settings)
    elif len(spec.class_names) == 2:
        notes.append("binary model without a defect class (positive_class): decisions use argmax")
    threshold = choice.threshold if choice else None
    metrics = {
        s: compute_metrics(
            scores[s].y,
            softmax(scores[s].logits, temperature),
            class_names=spec.class_names,
            positive_index=pos_idx,
            threshold=threshold,
            cost_fn=settings.cost_fn,
            cost_fp=settings.cost_fp,
            bootstrap=settings.bootstrap,
        )
        for s in report
    }
    slices = _slices({s: scores[s] for s in report}, spec, temperature, pos_idx, threshold)
    coverage = _coverage({s: scores[s] for s in report}, gate, temperature, pos_idx, threshold)
    return EvaluationResult(report, temperature, choice, pos, metrics, calibration, slices, settings, notes, coverage)


def _coverage(
    scores: dict[str, SplitScores],
    gate: dict[str, Any] | None,
    temperature: float,
    pos_idx: int | None,
    threshold: float | None,
) -> dict[str, Any]:
    """The gate in force and, per split it checked, its coverage with the same decisions as the plain figures."""
    if gate is None:
        return {}
    splits = {
        s: gate_figures(
            sc.y,
            decide(softmax(sc.logits, temperature), positive_index=pos_idx, threshold=threshold),
            sc.gate_kinds,
            positive_index=pos_idx,
        )
        for s, sc in scores.items()
        if sc.gate_kinds is not None
    }
    return {**gate, "splits": splits}


def _slices(
    scores: dict[str, SplitScores], spec: ModelSpec, temperature: float, pos_idx: int | None, threshold: float | None
) -> dict[str, Any]:
    """The same decisions counted by image attribute (cell type, camera...), where the data has any."""
    keys = slice_keys([r for sc in scores.values() for r in sc.records])
    if not keys:
        return {}
    return {
        s: slice_table(
            sc.records,
            sc.y,
            decide(softmax(sc.logits, temperature), positive_index=pos_idx, threshold=threshold),
            class_names=spec.class_names,
            positive_index=pos_idx,
            keys=keys,
        )
        for s, sc in scores.items()
    }


__all__ = ["SPLITS", "EvalSettings", "EvaluationResult", "SplitScores", "evaluate", "positive_class_of"]
