"""The reference profile a bundle carries for its gate: what the images it was trained on look like.

The gate (:mod:`defectlens.inference.gate`) judges every frame against this profile before the model's
class is trusted, so a dead camera's black frame, a lens out of focus or a part from another line is
sent for review instead of being called good. The profile is written at export
(:mod:`defectlens.export.profile`) into ``spec.json`` under ``"gate"``:

* ``stats``: for each cheap image statistic (:data:`STATS`), its 0.5 % and 99.5 % quantiles over the
  training and validation images and the band the gate accepts (:class:`StatRange`);
* ``size``: the smallest and largest image side and aspect ratio seen, and the band accepted;
* ``ood``: the out-of-distribution score computed inside the exported graph (a second output), the
  method, and the threshold per graph, each set on validation at :attr:`OodProfile.false_flag_rate`;
* ``drift`` (bundles exported since the drift watch; absent in older ones): the reference distributions
  the drift watch (:mod:`defectlens.inference.drift`) compares windows of live frames with
  (:class:`DriftReference`).

Every number is schema-checked when a bundle is read (finite, ordered, in range), so a damaged or
hand-edited profile is refused with the field that is wrong.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

from defectlens.core.errors import DefectlensError

PROFILE_VERSION = 1
#: The image statistics of a frame (see :func:`defectlens.inference.quality.image_stats`), in grey levels
#: 0-255 or shares 0-1: mean brightness, standard deviation (contrast), shares of black-clipped and
#: white-clipped pixels, mean absolute Laplacian (sharpness) and the estimated sensor noise sigma.
STATS = ("brightness", "contrast", "dark_share", "bright_share", "sharpness", "noise")
#: How a frame is gated: ``refuse`` (a flagged frame gets no class), ``warn`` (the class and the flag),
#: ``off`` (no gate).
GATE_MODES = ("refuse", "warn", "off")
GateMode = Literal["refuse", "warn", "off"]
#: Out-of-distribution scores an export can compute in the graph, and how their threshold is set.
OOD_METHODS = ("mahalanobis",)
THRESHOLD_RULES = ("conformal", "gaussian")
#: Allowed in-distribution false-flag rates when setting the OOD threshold on validation, and the default:
#: at most 1 in 200 healthy frames sent for review.
FALSE_FLAG_RANGE = (1e-4, 0.2)
FALSE_FLAG_RATE = 0.005
_SHARE_STATS = ("dark_share", "bright_share")


class ProfileError(DefectlensError):
    """A gate profile breaks the schema (spec.json of a damaged or hand-edited bundle)."""


@dataclass(frozen=True)
class StatRange:
    """One statistic over the reference images, and the band of values the gate accepts.

    Attributes:
        q_low, q_high: the 0.5 % and 99.5 % quantiles over training and validation images (what a
            reason quotes as "training images 18-61").
        low, high: the accepted band (``None``: no bound on that side).
    """

    q_low: float
    q_high: float
    low: float | None
    high: float | None


@dataclass(frozen=True)
class SizeProfile:
    """Image sides (pixels) and aspect ratios (width / height) of the reference images, and the band accepted."""

    side_min: float
    side_max: float
    aspect_min: float
    aspect_max: float
    accept_side_min: float
    accept_side_max: float
    accept_aspect_min: float
    accept_aspect_max: float


@dataclass(frozen=True)
class OodProfile:
    """The out-of-distribution score the graph computes, and where it flags.

    Attributes:
        method: how the score is computed (:data:`OOD_METHODS`).
        output: the graph output holding the score.
        false_flag_rate: the share of validation images allowed above the threshold.
        thresholds: graph member name -> threshold (a score above it flags the frame).
        validation: the score's quantiles on validation (``p50``, ``p99``, ``max``), for reasons and reports.
        features: total length of the feature vectors the score is computed from.
        layers: how many layers' feature vectors (each its own density; the score is the largest).
        rule: ``conformal`` (the validation quantile certifies the rate) or ``gaussian`` (too few
            validation images for that: the normal prediction bound of their scores, never below the largest).
    """

    method: str
    output: str
    false_flag_rate: float
    thresholds: dict[str, float]
    validation: dict[str, float]
    features: int
    rule: str = "conformal"
    layers: int = 1


@dataclass(frozen=True)
class RefBins:
    """One statistic's reference distribution, binned on its own quantiles.

    Attributes:
        edges: increasing interior bin edges (tied quantiles merged); a value ``v`` falls in bin
            ``searchsorted(edges, v, side="right")``, so there are ``len(edges) + 1`` bins.
        shares: the reference images' share in each bin (summing to 1).
    """

    edges: list[float]
    shares: list[float]


@dataclass(frozen=True)
class DriftReference:
    """What the drift watch compares a window of live frames with (written at export; None in older bundles).

    Attributes:
        bins: statistic -> its reference bins: each image statistic (:data:`STATS`) over the training and
            validation images (never the drift copies an ``augment: line`` export adds), and ``ood``, the
            out-of-distribution score of the default graph on the validation images.
        decisions: outcome -> its share on the validation images: each class the model decided, and
            ``needs_review`` (the gate flagged the frame).
        accuracy: the share of validation images decided and right (None when none was labelled).
        images: the validation images ``decisions`` and ``accuracy`` are counted on.
    """

    bins: dict[str, RefBins]
    decisions: dict[str, float]
    accuracy: float | None
    images: int


@dataclass(frozen=True)
class GateProfile:
    """The reference profile of a bundle (see the module docstring)."""

    stats: dict[str, StatRange]
    size: SizeProfile
    ood: OodProfile | None
    images: int
    version: int = PROFILE_VERSION
    drift: DriftReference | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: object, *, where: str = "gate profile") -> GateProfile:
        """Build and check a profile from ``spec.json``'s ``"gate"`` entry.

        Raises:
            ProfileError: naming every field that is missing, not a finite number, or out of order.
        """
        problems = profile_problems(d)
        if problems:
            raise ProfileError(f"{where}: invalid gate profile: {'; '.join(problems[:6])}")
        assert isinstance(d, dict)
        ood, drift = d.get("ood"), d.get("drift")
        return cls(
            stats={k: StatRange(**v) for k, v in d["stats"].items()},
            size=SizeProfile(**d["size"]),
            ood=None if ood is None else OodProfile(**ood),
            images=int(d["images"]),
            version=int(d["version"]),
            drift=None if drift is None else _drift_reference(drift),
        )


def _drift_reference(d: dict[str, Any]) -> DriftReference:
    bins = {
        k: RefBins(edges=[float(e) for e in v["edges"]], shares=[float(x) for x in v["shares"]])
        for k, v in d["bins"].items()
    }
    return DriftReference(
        bins=bins,
        decisions={k: float(v) for k, v in d["decisions"].items()},
        accuracy=None if d.get("accuracy") is None else float(d["accuracy"]),
        images=int(d["images"]),
    )


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _fields(d: Any, what: str, names: tuple[str, ...], *, optional: tuple[str, ...] = ()) -> list[str]:
    """Problems of a mapping whose ``names`` must be finite numbers (``optional`` ones may be None)."""
    if not isinstance(d, dict):
        return [f"{what} must be an object"]
    problems = []
    for name in names:
        v = d.get(name)
        if v is None and name in optional and name in d:
            continue
        if not _finite(v):
            problems.append(f"{what}.{name} must be a finite number, got {v!r:.40}")
    extra = sorted(set(d) - set(names))
    if extra:
        problems.append(f"{what} has unknown fields {extra}")
    return problems


def _stat_problems(stats: Any) -> list[str]:
    if not isinstance(stats, dict) or set(stats) != set(STATS):
        return [f"stats must hold exactly {', '.join(STATS)}"]
    problems = []
    for name, r in stats.items():
        found = _fields(r, f"stats.{name}", ("q_low", "q_high", "low", "high"), optional=("low", "high"))
        if found:
            problems += found
            continue
        hi_limit = 1.0 if name in _SHARE_STATS else 255.0
        values = [r["q_low"], r["q_high"]] + [r[k] for k in ("low", "high") if r[k] is not None]
        if min(values) < 0 or (name != "sharpness" and name != "noise" and max(values) > hi_limit + 1e-9):
            problems.append(f"stats.{name} has a value outside 0-{hi_limit:g}")
        if r["q_low"] > r["q_high"] or (r["low"] is not None and r["high"] is not None and r["low"] > r["high"]):
            problems.append(f"stats.{name}: a lower bound is above its upper bound")
    return problems


def _size_problems(size: Any) -> list[str]:
    names = tuple(f.name for f in SizeProfile.__dataclass_fields__.values())
    problems = _fields(size, "size", names)
    if problems:
        return problems
    if min(size.values()) <= 0:
        problems.append("size values must be positive")
    for lo, hi in (("side_min", "side_max"), ("aspect_min", "aspect_max"), ("accept_side_min", "accept_side_max")):
        if size[lo] > size[hi]:
            problems.append(f"size.{lo} is above size.{hi}")
    if size["accept_aspect_min"] > size["accept_aspect_max"]:
        problems.append("size.accept_aspect_min is above size.accept_aspect_max")
    return problems


def _ood_problems(ood: Any) -> list[str]:
    if ood is None:
        return []
    if not isinstance(ood, dict):
        return ["ood must be an object or null"]
    problems = []
    if ood.get("method") not in OOD_METHODS:
        problems.append(f"ood.method must be one of {', '.join(OOD_METHODS)}, got {ood.get('method')!r:.40}")
    if not isinstance(ood.get("output"), str) or not ood["output"]:
        problems.append("ood.output must name a graph output")
    rate: Any = ood.get("false_flag_rate")
    if not _finite(rate) or not FALSE_FLAG_RANGE[0] <= rate <= FALSE_FLAG_RANGE[1]:
        problems.append(f"ood.false_flag_rate must be in {FALSE_FLAG_RANGE[0]}-{FALSE_FLAG_RANGE[1]}, got {rate!r:.40}")
    if ood.get("rule", "conformal") not in THRESHOLD_RULES:
        problems.append(f"ood.rule must be one of {', '.join(THRESHOLD_RULES)}, got {ood.get('rule')!r:.40}")
    layers = ood.get("layers", 1)
    if not isinstance(layers, int) or isinstance(layers, bool) or layers < 1:
        problems.append(f"ood.layers must be a positive integer, got {layers!r:.40}")
    feats = ood.get("features")
    if not isinstance(feats, int) or isinstance(feats, bool) or feats < 1:
        problems.append(f"ood.features must be a positive integer, got {feats!r:.40}")
    for key in ("thresholds", "validation"):
        table = ood.get(key)
        if not isinstance(table, dict) or not table:
            problems.append(f"ood.{key} must be a non-empty object")
            continue
        bad = [k for k, v in table.items() if not _finite(v) or v < 0]
        if bad:
            problems.append(f"ood.{key} has values that are not finite non-negative numbers: {bad[:3]}")
    extra = sorted(set(ood) - {f for f in OodProfile.__dataclass_fields__})
    if extra:
        problems.append(f"ood has unknown fields {extra}")
    return problems


def _bins_problems(name: str, b: Any) -> list[str]:
    if not isinstance(b, dict) or set(b) != {"edges", "shares"}:
        return [f"drift.bins.{name} must hold exactly edges and shares"]
    edges, shares = b["edges"], b["shares"]
    if not isinstance(edges, list) or not isinstance(shares, list) or not all(map(_finite, edges + shares)):
        return [f"drift.bins.{name}: edges and shares must be lists of finite numbers"]
    problems = []
    if len(shares) != len(edges) + 1:
        problems.append(f"drift.bins.{name} needs one share more than edges")
    if any(b <= a for a, b in itertools.pairwise(edges)):
        problems.append(f"drift.bins.{name}: edges must increase")
    if min(shares, default=-1) < 0 or abs(sum(shares) - 1.0) > 1e-6:
        problems.append(f"drift.bins.{name}: shares must be non-negative and sum to 1")
    return problems


def _drift_problems(drift: Any) -> list[str]:
    if drift is None:
        return []
    if not isinstance(drift, dict) or set(drift) != {"bins", "decisions", "accuracy", "images"}:
        return ["drift must be null or hold exactly bins, decisions, accuracy and images"]
    problems = []
    bins, decisions = drift["bins"], drift["decisions"]
    if not isinstance(bins, dict):
        problems.append("drift.bins must be an object")
    else:
        for name, b in bins.items():
            problems += _bins_problems(name, b)
    if not isinstance(decisions, dict) or not all(_finite(v) and 0 <= v <= 1 for v in decisions.values()):
        problems.append("drift.decisions must map outcomes to shares 0-1")
    acc = drift["accuracy"]
    if acc is not None and not (_finite(acc) and 0 <= acc <= 1):
        problems.append(f"drift.accuracy must be null or a share 0-1, got {acc!r:.40}")
    images = drift["images"]
    if not isinstance(images, int) or isinstance(images, bool) or images < 0:
        problems.append(f"drift.images must be a non-negative integer, got {images!r:.40}")
    return problems


def profile_problems(d: Any) -> list[str]:
    """Every way ``d`` breaks the gate-profile schema (empty when it is valid)."""
    if not isinstance(d, dict):
        return [f"the profile must be an object, got {type(d).__name__}"]
    problems = []
    if d.get("version") != PROFILE_VERSION:
        problems.append(f"version must be {PROFILE_VERSION}, got {d.get('version')!r:.40}")
    images = d.get("images")
    if not isinstance(images, int) or isinstance(images, bool) or images < 1:
        problems.append(f"images must be a positive integer, got {images!r:.40}")
    problems += _stat_problems(d.get("stats"))
    problems += _size_problems(d.get("size"))
    problems += _ood_problems(d.get("ood"))
    problems += _drift_problems(d.get("drift"))
    return problems


def check_false_flag_rate(rate: object) -> float:
    """``rate`` if it is a share of validation images the OOD threshold may flag within :data:`FALSE_FLAG_RANGE`.

    Raises:
        DefectlensError: naming the value and the range.
    """
    lo, hi = FALSE_FLAG_RANGE
    if not _finite(rate) or not lo <= rate <= hi:  # type: ignore[operator]
        raise DefectlensError(
            f"gate false-flag rate {rate!r:.40} is outside {lo:g}-{hi:g}: it is the share of healthy validation "
            "images the out-of-distribution score may flag (default 0.005)"
        )
    return float(rate)  # type: ignore[arg-type]


def check_gate_mode(mode: object) -> GateMode:
    """``mode`` if it is one of :data:`GATE_MODES`.

    Raises:
        DefectlensError: naming the value and the choices.
    """
    if mode not in GATE_MODES:
        raise DefectlensError(f"unknown gate mode {mode!r:.40}; choose one of {', '.join(GATE_MODES)}")
    return mode  # type: ignore[return-value]
