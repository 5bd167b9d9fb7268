"""The drift watch: whether the last window of frames still looks like the images the model was validated on.

The gate (:mod:`defectlens.inference.gate`) judges one frame at a time; drift is slower. A lamp that ages over
weeks darkens every frame a little, every frame still passes the gate, and the decisions go wrong together.
:class:`DriftWatch` keeps the last :attr:`DriftConfig.window` frames (100 by default) and compares them with
the bundle's reference (:class:`~defectlens.core.profile.DriftReference`, written at export):

* each image statistic the gate computes (brightness, contrast, clipped shares, sharpness, noise) and the
  gate's out-of-distribution score: the **population stability index** over the reference's decile bins,
  ``PSI = sum((a - e) * ln(a / e))`` (``a`` the window's share of a bin, ``e`` the reference's). PSI is the
  habit of the trade for monitoring a score against its reference; on a window of 100 its noise is known
  (about chi-square with bins - 1 degrees of freedom over 100: 0.09 on average for ten bins), so one
  threshold serves every statistic, and unlike a KS statistic it needs only the bins, not the reference values;
* the share of each decision (each class, and ``needs_review``) against its share on validation: an exact
  two-sided **binomial** test per outcome (a chi-square would be wrong for ``needs_review``, whose
  expected count in a window is under one);
* where operator verdicts arrive, the share that agree with the model against its validation accuracy: a
  one-sided binomial test on the last ``window`` verdicts (from :attr:`DriftConfig.min_verdicts` of them).

Each check has a severity, its value over its alarm level (PSI over :attr:`DriftConfig.psi_alarm`;
``log p / log alpha`` for the tests). An alarm is raised when a full window's largest severity reaches 1 and
cleared only when every severity is back under :attr:`DriftConfig.clear_ratio`: one alarm per episode
(hysteresis), not one per frame.

Old bundles (exported before the drift reference) are watched on what their profile holds: each statistic in
three bins cut at its 0.5 % and 99.5 % reference quantiles, the OOD score cut at its validation median and
99th percentile, the validation accuracy from the bundle's metrics; decision shares are then unavailable,
and :attr:`DriftStatus.unavailable` says so. The watch follows the predictor's model id: another model
(a hot swap) rebuilds the reference and starts a new window.
"""

from __future__ import annotations

import functools
import math
import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from defectlens.core.errors import DefectlensError
from defectlens.core.profile import STATS, DriftReference, GateProfile, RefBins

if TYPE_CHECKING:
    from defectlens.inference.predictor import Prediction, Predictor

#: The outcome counted for a frame the gate flagged (refused a class, or warned).
NEEDS_REVIEW = "needs_review"
#: What the watch compares: the image statistics and the OOD score (PSI), decision shares, operator agreement.
OOD = "ood"
DriftKind = Literal["drift_alarm", "drift_cleared"]
_FLOOR = 1e-4  # smallest reference share a PSI term divides by
#: The quantiles reference bins are cut at (deciles: ten bins where no values tie).
DRIFT_QUANTILES = tuple(round(q, 1) for q in np.linspace(0.1, 0.9, 9))


@dataclass(frozen=True)
class DriftConfig:
    """When a window has drifted.

    The default PSI level is measured, not the trade's 0.25 (a rule for samples of thousands): on windows of 100,
    sampling alone puts PSI over ten equal bins at 0.085 on average and 0.28 at the 99.9th percentile, and the
    casting test split, photographed apart from its training images, sits at up to 0.65 (noise, sharpness) in
    some window; 1.0 gives no alarm on it in 20 orders and still catches every slow drift of
    ``benchmarks/bench_monitor.py`` before moderate strength.

    Attributes:
        window: frames per window (the checks start once it is full).
        psi_alarm: PSI at which an image statistic or the OOD score alarms.
        share_alpha: p-value under which a decision's share alarms (binomial, two-sided, per outcome).
        agreement_alpha: p-value under which operator agreement below validation accuracy alarms.
        min_verdicts: fewest operator verdicts the agreement check is made on.
        clear_ratio: an alarm clears once every check's severity is below this (hysteresis).
    """

    window: int = 100
    psi_alarm: float = 1.0
    share_alpha: float = 1e-6
    agreement_alpha: float = 1e-3
    min_verdicts: int = 20
    clear_ratio: float = 0.5

    def __post_init__(self) -> None:
        checks = (
            ("window", self.window, 10 <= self.window <= 100_000, "an integer 10-100000"),
            ("psi_alarm", self.psi_alarm, 0 < self.psi_alarm <= 10, "in (0, 10]"),
            ("share_alpha", self.share_alpha, 0 < self.share_alpha < 0.5, "in (0, 0.5)"),
            ("agreement_alpha", self.agreement_alpha, 0 < self.agreement_alpha < 0.5, "in (0, 0.5)"),
            ("min_verdicts", self.min_verdicts, 1 <= self.min_verdicts <= self.window, "1 to the window"),
            ("clear_ratio", self.clear_ratio, 0 < self.clear_ratio <= 1, "in (0, 1]"),
        )
        for name, value, ok, what in checks:
            if not ok:
                raise DefectlensError(f"drift watch: {name} {value!r} must be {what}")


@dataclass(frozen=True)
class Check:
    """One statistic of the current window: its value (PSI, or a p-value), and its severity (1: alarm)."""

    name: str
    kind: Literal["psi", "share", "agreement"]
    value: float
    severity: float
    detail: str


@dataclass(frozen=True)
class DriftEvent:
    """An alarm raised or cleared, with the sentence to log and publish."""

    kind: DriftKind
    text: str
    model_id: str | None
    images: int


@dataclass(frozen=True)
class DriftStatus:
    """A snapshot of the watch for gauges, pages and reports."""

    model_id: str | None
    window: int
    images: int
    filled: int
    alarm: bool
    alarms: int
    checks: tuple[Check, ...]
    unavailable: tuple[str, ...]
    verdicts: int = 0
    agreement: float | None = None

    @property
    def severity(self) -> float:
        return max((c.severity for c in self.checks), default=0.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "window": self.window,
            "images": self.images,
            "filled": self.filled,
            "alarm": self.alarm,
            "alarms": self.alarms,
            "severity": round(self.severity, 4),
            "checks": [{**c.__dict__, "value": float(f"{c.value:.6g}")} for c in self.checks],
            "unavailable": list(self.unavailable),
            "verdicts": self.verdicts,
            "agreement": self.agreement,
        }


def psi(counts: np.ndarray, shares: np.ndarray) -> float:
    """Population stability index of a window's bin ``counts`` against the reference ``shares``.

    The window's shares are smoothed by half a count per bin so an empty bin costs a finite amount.
    """
    n, k = float(counts.sum()), len(counts)
    a = (counts + 0.5) / (n + 0.5 * k)
    e = np.maximum(shares, _FLOOR)
    e = e / e.sum()
    return float(np.sum((a - e) * np.log(a / e)))


def ref_bins(values: np.ndarray) -> RefBins:
    """``values`` binned on their own deciles; tied quantiles merge, and a bin no value falls in joins its neighbour."""
    v = np.asarray(values, dtype=np.float64)
    edges = list(np.unique(np.quantile(v, DRIFT_QUANTILES))) if len(v) else []
    while True:
        counts = np.bincount(np.searchsorted(edges, v, side="right"), minlength=len(edges) + 1)
        empty = np.flatnonzero(counts == 0)
        if not len(empty) or not edges:
            break
        i = int(empty[0])
        del edges[min(i, len(edges) - 1)]
    shares = counts / max(1, counts.sum())
    return RefBins(edges=[float(e) for e in edges], shares=[float(x) for x in shares])


@functools.lru_cache(maxsize=64)
def _log_choose(n: int) -> np.ndarray:
    """log C(n, k) for k = 0..n (cached: a watch asks for the same window size every frame)."""
    log_fact = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n + 1)))])
    k = np.arange(n + 1)
    return log_fact[n] - log_fact[k] - log_fact[n - k]


def _log_pmf(n: int, p: float) -> np.ndarray:
    k = np.arange(n + 1)
    return _log_choose(n) + k * math.log(p) + (n - k) * math.log1p(-p)


def binomial_two_sided(k: int, n: int, p: float) -> float:
    """Exact two-sided binomial p-value of ``k`` successes in ``n`` at rate ``p`` (0 < p < 1)."""
    log_pmf = _log_pmf(n, p)
    return float(min(1.0, np.exp(log_pmf[log_pmf <= log_pmf[k] + 1e-9]).sum()))


def binomial_below(k: int, n: int, p: float) -> float:
    """Exact one-sided p-value of ``k`` or fewer successes in ``n`` at rate ``p`` (0 < p < 1)."""
    return float(min(1.0, np.exp(_log_pmf(n, p)[: k + 1]).sum()))


def _smoothed(share: float, images: int) -> float:
    """A reference share as a rate strictly inside (0, 1): half an image added either way (Jeffreys)."""
    return (share * images + 0.5) / (images + 1.0)


def _test_severity(p: float, alpha: float) -> float:
    return math.log(max(p, 1e-300)) / math.log(alpha)


@dataclass(frozen=True)
class Reference:
    """What one model is compared with (built by :func:`reference_of`)."""

    bins: dict[str, RefBins]
    decisions: dict[str, float]
    accuracy: float | None
    images: int
    unavailable: tuple[str, ...] = ()


def reference_of(
    profile: GateProfile | None, *, accuracy: float | None = None, validation_images: int = 0
) -> Reference:
    """The reference of a bundle's profile (see the module docstring for bundles without a drift reference).

    Args:
        profile: the bundle's gate profile (None: a model without one; only operator agreement is watched).
        accuracy, validation_images: the validation accuracy from the bundle's metrics and the images it was
            measured on, used where the profile has no drift reference.
    """
    if profile is not None and profile.drift is not None:
        d: DriftReference = profile.drift
        missing = [] if OOD in d.bins else ["ood score (the bundle has no out-of-distribution score)"]
        if not d.decisions:
            missing.append("decision shares (no decisions at export)")
        if d.accuracy is None:
            missing.append("operator agreement (no labelled validation images at export)")
        return Reference(d.bins, d.decisions, d.accuracy, d.images, tuple(missing))
    missing = ["decision shares (bundle exported before the drift reference: re-export it)"]
    if accuracy is None:
        missing.append("operator agreement (no validation accuracy in the bundle)")
    if profile is None:
        missing[:0] = ["image statistics and ood score (the model has no reference profile)"]
        return Reference({}, {}, accuracy, validation_images, tuple(missing))
    bins = {
        k: RefBins([r.q_low, r.q_high], [0.005, 0.99, 0.005]) for k, r in profile.stats.items() if r.q_low < r.q_high
    }
    if profile.ood is not None:
        v = profile.ood.validation
        bins[OOD] = RefBins([v["p50"], v["p99"]], [0.5, 0.49, 0.01])
    else:
        missing.append("ood score (the bundle has no out-of-distribution score)")
    missing.append("fine-grained bins (old bundle: 3 bins per statistic, from its 0.5 %/99.5 % quantiles)")
    return Reference(bins, {}, accuracy, validation_images, tuple(missing))


class _Binned:
    """The last ``window`` bin indices of one statistic and their counts."""

    def __init__(self, bins: RefBins, window: int):
        self.edges = np.asarray(bins.edges, np.float64)
        self.shares = np.asarray(bins.shares, np.float64)
        self.counts = np.zeros(len(self.shares), np.int64)
        self.recent: deque[int] = deque()
        self.window = window

    def add(self, value: float) -> None:
        i = int(np.searchsorted(self.edges, value, side="right"))
        self.recent.append(i)
        self.counts[i] += 1
        if len(self.recent) > self.window:
            self.counts[self.recent.popleft()] -= 1

    @property
    def full(self) -> bool:
        return len(self.recent) >= self.window


@dataclass
class _Window:
    """The running state of one model's watch."""

    binned: dict[str, _Binned]
    outcomes: deque[str] = field(default_factory=deque)
    counts: Counter[str] = field(default_factory=Counter)
    verdicts: deque[bool] = field(default_factory=deque)
    images: int = 0


class DriftWatch:
    """A sliding-window drift monitor of one model's stream (see the module docstring). Thread-safe.

    Example:
        >>> watch = DriftWatch(reference_of(None, accuracy=0.99, validation_images=500), model_id="m1")
        >>> watch.observe(stats=None, ood_score=None, outcome="ok_front") is None
        True
        >>> watch.status().unavailable[0]
        'image statistics and ood score (the model has no reference profile)'
    """

    def __init__(self, reference: Reference, *, model_id: str | None = None, config: DriftConfig | None = None):
        self.config = config or DriftConfig()
        self._lock = threading.Lock()
        self._reset(reference, model_id)
        self.alarms = 0

    @classmethod
    def for_predictor(cls, predictor: Predictor, config: DriftConfig | None = None) -> DriftWatch:
        """A watch on ``predictor``'s bundle reference (its profile, and its validation metrics for old bundles)."""
        return cls(predictor_reference(predictor), model_id=predictor.model_id, config=config)

    def _reset(self, reference: Reference, model_id: str | None) -> None:
        self.reference = reference
        self.model_id = model_id
        self.alarm = False
        self._state = _Window({k: _Binned(b, self.config.window) for k, b in reference.bins.items()})
        self._checks: tuple[Check, ...] = ()

    def follow(self, predictor: Predictor) -> bool:
        """Rebuild the reference and start a new window when ``predictor`` serves another model (True then)."""
        if predictor.model_id == self.model_id:
            return False
        reference = predictor_reference(predictor)
        with self._lock:
            self._reset(reference, predictor.model_id)
        return True

    # -- frames and verdicts ---------------------------------------------------------------------------------------

    def observe(
        self, *, stats: dict[str, float] | None, ood_score: float | None, outcome: str | None
    ) -> DriftEvent | None:
        """Add one frame: its image statistics (the gate's), OOD score and outcome (a class, ``needs_review``;
        None for an error, which is not counted). Returns the alarm raised or cleared by it, if any."""
        with self._lock:
            s = self._state
            s.images += 1
            for name, binned in s.binned.items():
                value = ood_score if name == OOD else (stats or {}).get(name)
                if value is not None and math.isfinite(value):
                    binned.add(float(value))
            if outcome is not None:
                s.outcomes.append(outcome)
                s.counts[outcome] += 1
                if len(s.outcomes) > self.config.window:
                    s.counts[s.outcomes.popleft()] -= 1
            return self._evaluate()

    def observe_prediction(self, p: Prediction) -> DriftEvent | None:
        """:meth:`observe` for a :class:`~defectlens.inference.predictor.Prediction`."""
        gate = p.gate
        return self.observe(
            stats=gate.stats if gate is not None else None,
            ood_score=p.ood_score,
            outcome=outcome_of(p.status, p.prediction, gate.flagged if gate is not None else False),
        )

    def verdict(self, *, agreed: bool) -> DriftEvent | None:
        """Add one operator verdict: whether it agreed with the model's decision."""
        with self._lock:
            self._state.verdicts.append(bool(agreed))
            if len(self._state.verdicts) > self.config.window:
                self._state.verdicts.popleft()
            return self._evaluate()

    # -- the checks ------------------------------------------------------------------------------------------------

    def _evaluate(self) -> DriftEvent | None:
        self._checks = tuple(self._psi_checks() + self._share_checks() + self._agreement_checks())
        top = max((c.severity for c in self._checks), default=0.0)
        if not self.alarm and top >= 1.0:
            self.alarm = True
            self.alarms += 1
            firing = [c.detail for c in sorted(self._checks, key=lambda c: -c.severity) if c.severity >= 1.0]
            return DriftEvent("drift_alarm", f"drift: {'; '.join(firing)}", self.model_id, self._state.images)
        if self.alarm and top < self.config.clear_ratio:
            self.alarm = False
            text = f"drift cleared: every statistic back under {self.config.clear_ratio:g} of its alarm level"
            return DriftEvent("drift_cleared", text, self.model_id, self._state.images)
        return None

    def _psi_checks(self) -> list[Check]:
        out = []
        for name, b in self._state.binned.items():
            if b.full:
                value = psi(b.counts, b.shares)
                detail = f"{name} PSI {value:.2f} over the last {b.window} images (alarm at {self.config.psi_alarm:g})"
                out.append(Check(name, "psi", value, value / self.config.psi_alarm, detail))
        return out

    def _share_checks(self) -> list[Check]:
        ref, outcomes = self.reference, self._state.outcomes
        if not ref.decisions or len(outcomes) < self.config.window:
            return []
        n = len(outcomes)
        out = []
        for name, share in ref.decisions.items():
            k = self._state.counts[name]
            p = binomial_two_sided(k, n, _smoothed(share, ref.images))
            detail = f"{name} {k} of the last {n} decisions, {100 * share:.1f} % on validation (p={p:.1e})"
            out.append(Check(f"share:{name}", "share", p, _test_severity(p, self.config.share_alpha), detail))
        return out

    def _agreement_checks(self) -> list[Check]:
        ref, verdicts = self.reference, self._state.verdicts
        if ref.accuracy is None or len(verdicts) < self.config.min_verdicts:
            return []
        m, agreed = len(verdicts), sum(verdicts)
        p = binomial_below(agreed, m, _smoothed(ref.accuracy, max(ref.images, 1)))
        detail = (
            f"operators agreed with {agreed} of the last {m} verdicts, validation accuracy "
            f"{100 * ref.accuracy:.1f} % (p={p:.1e})"
        )
        return [Check("agreement", "agreement", p, _test_severity(p, self.config.agreement_alpha), detail)]

    def status(self) -> DriftStatus:
        with self._lock:
            s = self._state
            filled = min((len(b.recent) for b in s.binned.values()), default=len(s.outcomes))
            return DriftStatus(
                model_id=self.model_id,
                window=self.config.window,
                images=s.images,
                filled=filled,
                alarm=self.alarm,
                alarms=self.alarms,
                checks=self._checks,
                unavailable=self.reference.unavailable,
                verdicts=len(s.verdicts),
                agreement=sum(s.verdicts) / len(s.verdicts) if s.verdicts else None,
            )


def outcome_of(status: str, prediction: str | None, flagged: bool | None) -> str | None:
    """The outcome a frame counts as: ``needs_review`` when the gate flagged it (refused or warned), its class
    when decided, None for an error (not counted)."""
    if status == "error" or status == "dropped":
        return None
    if status == NEEDS_REVIEW or flagged:
        return NEEDS_REVIEW
    return prediction or None


def predictor_reference(predictor: Predictor) -> Reference:
    """The reference of the model ``predictor`` serves (see :func:`reference_of`)."""
    metrics = predictor.meta.get("metrics") or {}
    accuracy = metrics.get("accuracy") if isinstance(metrics, dict) else None
    images = metrics.get("n", 0) if isinstance(metrics, dict) else 0
    ok = isinstance(accuracy, float) and 0 <= accuracy <= 1
    return reference_of(predictor.gate.profile, accuracy=accuracy if ok else None, validation_images=int(images or 0))


__all__ = [
    "NEEDS_REVIEW",
    "OOD",
    "STATS",
    "Check",
    "DriftConfig",
    "DriftEvent",
    "DriftStatus",
    "DriftWatch",
    "Reference",
    "binomial_below",
    "binomial_two_sided",
    "outcome_of",
    "predictor_reference",
    "psi",
    "ref_bins",
    "reference_of",
]
