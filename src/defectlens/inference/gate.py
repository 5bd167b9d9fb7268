"""The gate: whether the model may judge a frame at all, asked before its class is trusted.

Two checks, both against the bundle's reference profile (:mod:`defectlens.core.profile`), never against
absolute constants:

1. **Image quality** (:func:`quality_reasons`): cheap statistics of the model's input (:func:`image_stats`)
   and the decoded frame's size. A near-uniform frame (a dead or covered camera), under- or
   over-exposure, a frame far out of focus or far noisier than the training images, or a frame of the
   wrong size or aspect is flagged with a reason a person can act on.
2. **Out of distribution**: the exported graph's second output scores how far the image's penultimate
   features lie from the training images' (:mod:`defectlens.models.density`); above the threshold set
   on validation the frame is flagged ("a part from another line").

A flagged frame gets no class in ``refuse`` mode (``status="needs_review"``), its class and the flag in
``warn`` mode; ``off`` skips the gate. Bundles exported without a profile have no gate: :class:`Gate`
says so in :attr:`Gate.note`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from defectlens.core.profile import GateMode, GateProfile, StatRange

_NOISE_SCALE = float(np.sqrt(np.pi / 2.0) / 6.0)  # Immerkaer (1996): sigma from the mean |second differences|
DARK, BRIGHT = 8, 247  # grey levels counted as clipped black / white (within 8 of the ends)


def image_stats(image: np.ndarray) -> dict[str, float]:
    """The profile's statistics of one model input (uint8, (C, H, W)), on its grey image.

    Brightness and contrast are the grey mean and standard deviation (0-255); ``dark_share`` and
    ``bright_share`` the shares of pixels within 8 levels of black and white; ``sharpness`` the mean
    absolute 4-neighbour Laplacian; ``noise`` Immerkaer's estimate of the noise sigma, from the mean
    absolute separable second difference.

    The grey image is the channel mean; everything is computed exactly in integers on the channel sum
    (a histogram of levels for the first four, int16 differences for the last two: at most 16 x 765 in
    size) and scaled once. On a 192 x 192 frame, part of every prediction, that takes about a third of the
    time float32 arithmetic took (0.14 against 0.40 ms on the 2-core Intel Xeon), with the same values to
    float rounding (a unit test).
    """
    c = image.shape[0]
    g = image[0].astype(np.int16) if c == 1 else image.sum(axis=0, dtype=np.int16)  # c x grey
    counts = np.bincount(g.ravel(), minlength=255 * c + 1)
    levels = np.arange(len(counts), dtype=np.float64)
    n = g.size
    mean = float(counts @ levels) / n
    var = max(float(counts @ (levels - mean) ** 2) / n, 0.0)
    lap = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4 * g[1:-1, 1:-1]
    across = g[:, :-2] - 2 * g[:, 1:-1] + g[:, 2:]
    both = across[:-2] - 2 * across[1:-1] + across[2:]
    return {
        "brightness": mean / c,
        "contrast": float(np.sqrt(var)) / c,
        "dark_share": float(counts[: DARK * c + 1].sum() / n),
        "bright_share": float(counts[BRIGHT * c :].sum() / n),
        "sharpness": float(np.abs(lap).sum()) / lap.size / c if lap.size else float("nan"),
        "noise": _NOISE_SCALE * float(np.abs(both).sum()) / both.size / c if both.size else float("nan"),
    }


def _range(r: StatRange, unit: str, digits: int = 1) -> str:
    return f"training images {r.q_low:.{digits}f}-{r.q_high:.{digits}f}{unit}"


def _pct(v: float) -> str:
    return f"{100 * v:.0f} %" if v >= 0.01 or v == 0 else f"{100 * v:.1f} %"


#: The kinds of finding the gate reports (each with a sentence): counted apart in reports and benchmarks.
KINDS = (
    "uniform",
    "contrast",
    "under_exposed",
    "over_exposed",
    "out_of_focus",
    "noisy",
    "too_small",
    "too_large",
    "aspect_ratio",
    "out_of_distribution",
)


class Finding(NamedTuple):
    """One reason a frame is not one the model can judge: its kind (:data:`KINDS`) and a sentence for a person."""

    kind: str
    text: str


def _exposure(s: dict[str, float], p: dict[str, StatRange], key: str, share: str, what: str) -> str:
    """The evidence of an exposure problem: the mean brightness and/or the clipped share past their bands."""
    b, c = p["brightness"], p[share]
    parts = []
    low, high = (b.low, None) if key == "under" else (None, b.high)
    if (low is not None and s["brightness"] < low) or (high is not None and s["brightness"] > high):
        parts.append(f"mean brightness {s['brightness']:.1f} grey levels ({_range(b, '')})")
    if c.high is not None and s[share] > c.high:
        parts.append(f"{_pct(s[share])} of pixels {what} (training images at most {_pct(c.q_high)})")
    return ", ".join(parts)


def stat_findings(stats: dict[str, float], profile: GateProfile) -> list[Finding]:
    """Why the statistics of a frame fall outside the profile's bands (empty when they do not)."""
    s, p = stats, profile.stats
    found = []
    c = p["contrast"]
    flat = c.low is not None and s["contrast"] < c.low
    if flat:
        text = f"contrast (std) {s['contrast']:.1f} grey levels, {_range(c, '')} (accepted from {c.low:.1f})"
        found.append(Finding("uniform", f"frame is almost uniform: {text}"))
    elif c.high is not None and s["contrast"] > c.high:
        text = f"std {s['contrast']:.1f} grey levels, {_range(c, '')}"
        found.append(Finding("contrast", f"contrast far above the training images: {text}"))
    for key, share, what in (("under", "dark_share", "black"), ("over", "bright_share", "clipped white")):
        evidence = _exposure(s, p, key, share, what)
        if evidence:
            found.append(Finding(f"{key}_exposed", f"frame is {key}-exposed: {evidence}"))
    sharp = p["sharpness"]
    if not flat and sharp.low is not None and s["sharpness"] < sharp.low:
        text = f"sharpness {s['sharpness']:.2f}, {_range(sharp, '', 2)}"
        found.append(Finding("out_of_focus", f"frame is out of focus: {text}"))
    noise = p["noise"]
    if noise.high is not None and s["noise"] > noise.high:
        found.append(Finding("noisy", f"frame is noisy: noise sigma {s['noise']:.1f} grey levels, {_range(noise, '')}"))
    return found


def size_findings(width: int, height: int, profile: GateProfile) -> list[Finding]:
    """Why a decoded frame's size or aspect ratio is not one the model was trained on (empty when it is)."""
    z = profile.size
    trained = f"training images {z.side_min:.0f}-{z.side_max:.0f} px a side"
    found = []
    if min(width, height) < z.accept_side_min:
        text = f"{width}x{height} pixels, {trained} (accepted from {z.accept_side_min:.0f})"
        found.append(Finding("too_small", f"frame is too small: {text}"))
    elif max(width, height) > z.accept_side_max:
        text = f"{width}x{height} pixels, {trained} (accepted to {z.accept_side_max:.0f})"
        found.append(Finding("too_large", f"frame is too large: {text}"))
    aspect = width / height
    if not z.accept_aspect_min <= aspect <= z.accept_aspect_max:
        text = (
            f"{width}x{height} ({aspect:.2f}), training images {z.aspect_min:.2f}-{z.aspect_max:.2f} (width / height)"
        )
        found.append(Finding("aspect_ratio", f"wrong aspect ratio: {text}"))
    return found


def stat_reasons(stats: dict[str, float], profile: GateProfile) -> list[str]:
    """The sentences of :func:`stat_findings`."""
    return [f.text for f in stat_findings(stats, profile)]


def size_reasons(width: int, height: int, profile: GateProfile) -> list[str]:
    """The sentences of :func:`size_findings`."""
    return [f.text for f in size_findings(width, height, profile)]


@dataclass(frozen=True)
class GateCheck:
    """The gate's finding for one frame.

    Attributes:
        flagged: the frame is not one the model can judge (a quality rule or the OOD score).
        reasons: why, one sentence each (empty when not flagged).
        ood_score: the graph's out-of-distribution score (None without one).
        ood_threshold: the threshold it was compared with.
        stats: the frame's image statistics.
        kinds: the kinds of its reasons (:data:`KINDS`), each once, in order.
    """

    flagged: bool
    reasons: tuple[str, ...] = ()
    ood_score: float | None = None
    ood_threshold: float | None = None
    stats: dict[str, float] = field(default_factory=dict)
    kinds: tuple[str, ...] = ()

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        return {
            "flagged": self.flagged,
            "reasons": list(self.reasons),
            "ood_score": self.ood_score,
            "ood_threshold": self.ood_threshold,
            "stats": {k: round(v, 4) for k, v in self.stats.items()},
            "kinds": list(self.kinds),
        }


class Gate:
    """A bundle's gate: its profile, the OOD threshold of the graph that runs, and the mode in force.

    Args:
        profile: the bundle's reference profile (None: an old bundle or a checkpoint, no gate).
        mode: ``refuse``, ``warn`` or ``off``.
        member: the graph member that runs (its OOD threshold is used); None when no graph computes
            the score (the torch backend), so only the quality rules apply.
        note: why the gate is off or partial, for ``info`` and the surfaces.
    """

    def __init__(self, profile: GateProfile | None, *, mode: GateMode, member: str | None, note: str = ""):
        self.profile = profile
        self.mode: GateMode = mode
        ood = profile.ood if profile is not None else None
        self.ood_threshold = ood.thresholds.get(member) if ood is not None and member is not None else None
        if profile is None and not note:
            note = "this model has no reference profile (exported before the gate existed): frames are not gated"
        elif profile is not None and ood is None and not note:
            note = "this model's gate checks image quality only (too few images at export for the OOD score)"
        elif profile is not None and ood is not None and self.ood_threshold is None and not note:
            note = "the out-of-distribution score is not computed on this backend: only image-quality rules apply"
        self.note = note

    @property
    def active(self) -> bool:
        return self.profile is not None and self.mode != "off"

    @property
    def wants_ood(self) -> bool:
        """True when the graph's OOD output should be read."""
        return self.active and self.ood_threshold is not None

    def check(self, image: np.ndarray, size: tuple[int, int] | None, ood_score: float | None) -> GateCheck | None:
        """The finding for one model input (uint8 (C, H, W)), its decoded size (w, h) and its OOD score.

        Returns None when the gate is off or the model has no profile.
        """
        if not self.active:
            return None
        assert self.profile is not None
        stats = image_stats(image)
        found = stat_findings(stats, self.profile)
        if size is not None:
            found += size_findings(size[0], size[1], self.profile)
        t = self.ood_threshold
        if ood_score is not None and t is not None and not ood_score <= t:  # NaN flags too
            text = f"out-of-distribution score {ood_score:.2f}, flagged above {t:.2f}"
            found.append(Finding("out_of_distribution", f"frame is unlike the training images: {text}"))
        reasons, kinds = tuple(f.text for f in found), tuple(dict.fromkeys(f.kind for f in found))
        return GateCheck(bool(found), reasons, ood_score, t, stats, kinds)

    def refuses(self, check: GateCheck | None) -> bool:
        """True when ``check`` costs its frame its class (flagged, in ``refuse`` mode): ``needs_review``."""
        return check is not None and check.flagged and self.mode == "refuse"

    def describe(self) -> dict[str, Any]:
        """What ``/info`` and ``--help`` texts report about the gate in force."""
        return {
            "mode": self.mode,
            "active": self.active,
            "ood_threshold": self.ood_threshold,
            "false_flag_rate": self.profile.ood.false_flag_rate if self.profile and self.profile.ood else None,
            "note": self.note,
        }
