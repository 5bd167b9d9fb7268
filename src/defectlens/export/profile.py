"""The gate's reference profile, fitted at export from the training and validation images.

:func:`fit_gate` reads the run's training images (up to :data:`MAX_TRAIN`, evenly spaced so every class
is kept) and validation images, and builds:

* the band each image statistic may take (:func:`stat_band`): the statistic's 0.5 %-99.5 % range over
  those images, widened by a factor (contrast, sharpness, noise: ratios, since they scale) or a margin
  (brightness, clipped shares), so that a healthy line's drift passes and a dead, covered, blinded or
  unfocused camera does not;
* the size and aspect-ratio band;
* the feature density (:func:`defectlens.models.density.fit_density`) on the training features.

The OOD threshold of each graph is then set on that graph's own validation scores
(:func:`ood_threshold`), so the INT8 graph's quantised scores get their own, and the scores' parity with
torch is checked like the probabilities' (:func:`ood_parity`).

The drift watch's reference (:class:`~defectlens.core.profile.DriftReference`) comes from the same images
without the drift copies: each statistic's decile bins (:func:`ref_bins`), the OOD score's on validation,
and the decisions' shares and accuracy on validation under the bundle's own rule and gate
(:func:`drift_reference`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from defectlens.core.decision import decide, softmax
from defectlens.core.errors import DefectlensError, ImageError
from defectlens.core.profile import (
    FALSE_FLAG_RATE,
    STATS,
    DriftReference,
    GateProfile,
    OodProfile,
    RefBins,
    SizeProfile,
    StatRange,
)
from defectlens.core.spec import ModelSpec
from defectlens.data.images import prepare_frame
from defectlens.data.manifest import Manifest, Record
from defectlens.evaluation.conformal import ood_threshold, threshold_rule  # noqa: F401  (the gate's rule)
from defectlens.inference.backends import onnx_runner
from defectlens.inference.drift import ref_bins
from defectlens.inference.gate import image_stats, stat_findings
from defectlens.models import Classifier
from defectlens.models.density import MIN_IMAGES, OOD_OUTPUT, LayeredDensity, features_and_logits, fit_layered

#: Training images read for the profile and the density (evenly spaced over the split).
MAX_TRAIN = 3000
MAX_VAL = 2000
#: Fewest validation images the OOD threshold is set on (the prediction bound needs a spread).
MIN_VALIDATION = 3
#: How far past the reference images' 0.5 %-99.5 % range a statistic may go: a factor for the
#: statistics that scale (contrast, sharpness, noise), a margin in grey levels or shares for the others.
RATIO = {"contrast": 2.5, "sharpness": 3.0, "noise": 3.0}
MARGIN = {"brightness": 12.0, "dark_share": 0.25, "bright_share": 0.25}
#: Sizes: a frame with a shorter side under half the smallest reference side, or a longer side over four
#: times the largest, or an aspect ratio 15 % past the reference range, is not the camera trained on.
SIDE_BELOW, SIDE_ABOVE, ASPECT_PAST = 0.5, 4.0, 1.15
#: Largest relative difference between torch's and a runtime's OOD scores.
OOD_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Reference:
    """Model inputs (uint8), labels and decoded sizes of one split's reference images."""

    images: np.ndarray
    labels: np.ndarray
    sizes: list[tuple[int, int]]


@dataclass(frozen=True)
class GateFit:
    """What :func:`fit_gate` learned: the quality part of the profile, the density and the validation images."""

    stats: dict[str, StatRange]
    size: SizeProfile
    density: LayeredDensity | None
    validation: Reference
    images: int
    drift: DriftInputs | None = None


@dataclass(frozen=True)
class DriftInputs:
    """What the drift reference needs from the fit: the statistics' bins, and per clean validation image
    (the first ``len(decisions)`` of :attr:`GateFit.validation`) its statistics, decided class and label."""

    bins: dict[str, RefBins]
    stats: list[dict[str, float]]
    decisions: np.ndarray | None
    labels: np.ndarray
    class_names: tuple[str, ...] = field(default=())


def read_reference(manifest: Manifest, records: list[Record], spec: ModelSpec, limit: int) -> Reference:
    """Up to ``limit`` images of ``records``, evenly spaced; unreadable ones are skipped."""
    step = max(1, math.ceil(len(records) / max(1, limit)))
    images, labels, sizes = [], [], []
    for r in records[::step][:limit]:
        try:
            prepared = prepare_frame(manifest.resolve(r), spec)
        except ImageError:
            continue
        images.append(prepared.array)
        labels.append(spec.class_names.index(r.label) if r.label in spec.class_names else -1)
        sizes.append(prepared.size)
    shape = (0, spec.in_channels, spec.input_size, spec.input_size)
    return Reference(np.stack(images) if images else np.zeros(shape, np.uint8), np.asarray(labels, int), sizes)


def stat_band(name: str, values: np.ndarray) -> StatRange:
    """The accepted band of one statistic over the reference images (see the module docstring)."""
    lo, hi = (float(v) for v in np.quantile(values, [0.005, 0.995]))
    top = 1.0 if name in ("dark_share", "bright_share") else 255.0
    if name in RATIO:
        f = RATIO[name]
        low = None if name == "noise" else max(lo / f, 1.0 if name == "contrast" else 0.0)
        high = None if name == "sharpness" else min(hi * f + 1.0, 255.0)
    else:
        m = MARGIN[name]
        low = max(lo - m, 0.0) if name == "brightness" else None
        high = min(hi + m, top)
    return StatRange(q_low=lo, q_high=hi, low=low, high=high)


def size_band(sizes: list[tuple[int, int]]) -> SizeProfile:
    """The accepted band of frame sides and aspect ratios."""
    w = np.asarray([s[0] for s in sizes], float)
    h = np.asarray([s[1] for s in sizes], float)
    aspect = w / h
    side_min, side_max = float(np.minimum(w, h).min()), float(np.maximum(w, h).max())
    return SizeProfile(
        side_min=side_min,
        side_max=side_max,
        aspect_min=float(aspect.min()),
        aspect_max=float(aspect.max()),
        accept_side_min=side_min * SIDE_BELOW,
        accept_side_max=side_max * SIDE_ABOVE,
        accept_aspect_min=float(aspect.min()) / ASPECT_PAST,
        accept_aspect_max=float(aspect.max()) * ASPECT_PAST,
    )


def fit_gate(
    model: Classifier, spec: ModelSpec, data: str | Path, *, drift: bool = False, ood: bool = True
) -> GateFit | None:
    """Fit the gate's image bands and feature density on ``data``'s training and validation images.

    With ``drift`` (a model trained with ``augment: line``, which handles the line's pose, lighting,
    focus, noise and JPEG drift) each validation image also enters with one drawn drift of the same
    kind (:func:`~defectlens.training.acquisition.acquisition_shift`, seeded), so the bands and the OOD
    threshold accept what the model was trained to handle instead of flagging it.

    ``ood=False`` (an anomaly model, whose own score is what is unlike the training images) fits the image
    bands only: an out-of-distribution refusal would take the anomalies away from the model.

    With too few images for a part of the gate, that part is left out with a warning, never the export:
    no gate without a readable image; no out-of-distribution score with fewer than
    :data:`~defectlens.models.density.MIN_IMAGES` labelled training images or :data:`MIN_VALIDATION`
    validation images.
    """
    manifest = Manifest.read(data)
    train = read_reference(manifest, manifest.split("train"), spec, MAX_TRAIN)
    val = read_reference(manifest, manifest.split("val"), spec, MAX_VAL)
    clean = len(val.images)
    if drift and clean:
        val = _with_drift(val)
    images = np.concatenate([train.images, val.images])
    if not len(images):
        warnings.warn(f"{data}: no readable training or validation image: the bundle gets no gate", stacklevel=2)
        return None
    all_stats = [image_stats(a) for a in images]
    table = np.asarray([[s[k] for k in STATS] for s in all_stats])
    stats = {name: stat_band(name, table[:, i]) for i, name in enumerate(STATS)}
    known = train.labels >= 0
    density, val_logits = None, None
    if ood and np.count_nonzero(known) >= MIN_IMAGES and len(val.images) >= MIN_VALIDATION:
        feats, _ = features_and_logits(model, train.images[known])
        val_feats, val_logits = features_and_logits(model, val.images)
        density = fit_layered(feats, train.labels[known], val_feats)
    elif ood:
        warnings.warn(
            f"{data}: {np.count_nonzero(known)} labelled training and {len(val.images)} validation images are too few "
            f"for the out-of-distribution score (at least {MIN_IMAGES} and {MIN_VALIDATION}): the gate checks image "
            "quality only",
            stacklevel=2,
        )
    ref = _drift_inputs(spec, table[: len(train.images) + clean], all_stats, val, clean, val_logits)
    return GateFit(stats, size_band(train.sizes + val.sizes), density, val, len(images), ref)


def _drift_inputs(
    spec: ModelSpec,
    table: np.ndarray,
    all_stats: list[dict[str, float]],
    val: Reference,
    clean: int,
    val_logits: np.ndarray | None,
) -> DriftInputs:
    """The drift reference's inputs: ``table`` holds the statistics of the training and the ``clean`` (first)
    validation images; ``val_logits`` the model's logits on all validation images (None: no classes decided)."""
    decisions = None
    if val_logits is not None:
        probs = softmax(val_logits[:clean], spec.temperature)
        decisions = decide(probs, positive_index=spec.positive_index, threshold=spec.threshold)
    first_val = len(table) - clean
    return DriftInputs(
        bins={name: ref_bins(table[:, i]) for i, name in enumerate(STATS)},
        stats=all_stats[first_val : first_val + clean],
        decisions=decisions,
        labels=val.labels[:clean],
        class_names=tuple(spec.class_names),
    )


def _with_drift(val: Reference) -> Reference:
    """``val`` and a copy of each image with one seeded line drift (as the training recipe draws them)."""
    import torch

    from defectlens.training.acquisition import acquisition_shift

    drifted = acquisition_shift(torch.from_numpy(val.images), torch.Generator().manual_seed(0)).numpy()
    return Reference(
        np.concatenate([val.images, drifted]), np.concatenate([val.labels, val.labels]), val.sizes + val.sizes
    )


def graph_scores(graph: bytes, images: np.ndarray, *, batch: int = 32) -> np.ndarray:
    """The OOD output of an exported gated graph on uint8 images, on ONNX Runtime."""
    _, session = onnx_runner(graph, threads=1, name="gated graph")
    names = [o.name for o in session.get_outputs()]
    if OOD_OUTPUT not in names:
        raise DefectlensError(f"the exported graph has no {OOD_OUTPUT!r} output (outputs: {names})")
    x = images.astype(np.float32) / np.float32(255.0)
    out = [
        session.run([OOD_OUTPUT], {session.get_inputs()[0].name: x[i : i + batch]})[0] for i in range(0, len(x), batch)
    ]
    return np.concatenate(out).reshape(-1).astype(np.float64)


def ood_parity(model: Classifier, density: LayeredDensity, graph: bytes, images: np.ndarray) -> dict[str, float | bool]:
    """Largest relative difference between torch's OOD scores and ONNX Runtime's on ``images``."""
    import torch

    feats, _ = features_and_logits(model, images)
    with torch.inference_mode():
        ref = density([torch.from_numpy(f) for f in feats]).numpy().astype(np.float64)
    got = graph_scores(graph, images)
    diff = float(np.max(np.abs(got - ref) / np.maximum(np.abs(ref), 1e-6)))
    return {"ok": bool(diff <= OOD_TOLERANCE), "max_rel_diff": diff, "tolerance": OOD_TOLERANCE, "images": len(images)}


def build_profile(
    fit: GateFit, thresholds: dict[str, float], validation_scores: np.ndarray | None, rate: float = FALSE_FLAG_RATE
) -> GateProfile:
    """The profile written into ``spec.json``, with each graph's OOD threshold (no OOD part without scores)."""
    if fit.density is None or validation_scores is None:
        plain = GateProfile(stats=fit.stats, size=fit.size, ood=None, images=fit.images)
        return replace(plain, drift=drift_reference(fit, plain, None, None))
    q = np.quantile(validation_scores, [0.5, 0.99])
    ood = OodProfile(
        method="mahalanobis",
        output=OOD_OUTPUT,
        false_flag_rate=rate,
        rule=threshold_rule(len(validation_scores), rate),
        thresholds=thresholds,
        validation={"p50": float(q[0]), "p99": float(q[1]), "max": float(np.max(validation_scores))},
        features=fit.density.features,
        layers=len(fit.density.densities),
    )
    gated = GateProfile(stats=fit.stats, size=fit.size, ood=ood, images=fit.images)
    threshold = next(iter(thresholds.values()), None)
    return replace(gated, drift=drift_reference(fit, gated, validation_scores, threshold))


def drift_reference(
    fit: GateFit, profile: GateProfile, scores: np.ndarray | None, threshold: float | None
) -> DriftReference | None:
    """The drift watch's reference (see the module docstring): None for a fit made without its inputs.

    ``scores`` are the default graph's OOD scores on :attr:`GateFit.validation` (its clean images first);
    a validation image counts as ``needs_review`` when the gate flags it (a quality band, or its score
    above ``threshold``), as the deployed bundle would.
    """
    ref = fit.drift
    if ref is None:
        return None
    n = len(ref.stats)
    bins = dict(ref.bins)
    if scores is not None and n:
        bins["ood"] = ref_bins(scores[:n])
    flagged = np.asarray([bool(stat_findings(s, profile)) for s in ref.stats], bool)
    if scores is not None and threshold is not None:
        flagged |= ~(scores[:n] <= threshold)
    decisions: dict[str, float] = {}
    accuracy = None
    if ref.decisions is not None and n:
        for i, name in enumerate(ref.class_names):
            decisions[name] = float(np.count_nonzero((ref.decisions == i) & ~flagged) / n)
        decisions["needs_review"] = float(np.count_nonzero(flagged) / n)
        judged = ~flagged & (ref.labels >= 0)
        if judged.any():
            accuracy = float(np.mean(ref.decisions[judged] == ref.labels[judged]))
    return DriftReference(bins=bins, decisions=decisions, accuracy=accuracy, images=n)
