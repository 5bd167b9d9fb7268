"""Anomaly mode's run: fit PatchCore on the normal class, set its threshold, evaluate: ``train --task anomaly``.

Owns :func:`train_anomaly`. The training split's normal images fill the memory bank; its other images
(defects filed under train) are never fitted on and are said so. The threshold comes from held-out
normal images of the validation split: the conformal quantile that flags at most ``false_alarm_rate`` of
normal parts (:func:`~defectlens.evaluation.conformal.ood_threshold`; near-duplicate copies of one part, the
import's groups, count once: :func:`~defectlens.evaluation.conformal.one_per_group`), so a validation split holding only
good images gives a working threshold, never "every image anomalous". The raw score is normalised in the
model (logit 0 at that threshold), so the spec's threshold is 0.5; when validation does hold defect
images, the evaluation then refits the threshold on them by the run's rule (F1, target recall or cost),
as for a classifier. Validation and test are evaluated by the classifier's evaluation, every non-normal
label counting as ``anomalous``. Before the threshold, each patch score is normalised by what unseen good
parts score at its place (the training images' leave-one-out maps, ``position_norm``): on a fixtured part
a busy background or edge no longer outscores a small defect.
"""

from __future__ import annotations

import csv
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from defectlens.core.anomaly import ANOMALOUS, ANOMALY_TASK, MIN_NORMAL_IMAGES, ROI_CIRCLE, pick_normal
from defectlens.core.checkpoint import save_checkpoint
from defectlens.core.errors import DefectlensError
from defectlens.core.progress import Progress
from defectlens.core.spec import ModelSpec
from defectlens.data.dataset import CachedSplit, data_fingerprint, load_split
from defectlens.data.images import inspection_mask
from defectlens.data.manifest import Manifest
from defectlens.evaluation.conformal import one_per_group, ood_threshold, threshold_rule
from defectlens.models import default_spec
from defectlens.models.patchcore import (
    AnomalyModel,
    create_patchcore,
    patch_strides,
    spec_image_score,
    spec_padding,
    spec_stage16,
    spec_strides,
)
from defectlens.training import RunResult
from defectlens.training.anomaly import (
    fit_patchcore,
    image_maxima,
    leave_one_out_maps,
    location_statistics,
    raw_scores,
    scores_of_maps,
)
from defectlens.training.config import TrainConfig
from defectlens.training.run import new_run_dir

#: Normal training images needed for position normalisation: fewer give each place's spread too few draws.
MIN_POSITION_IMAGES = 20
#: A training image whose leave-one-out score is above the third quartile + this many interquartile ranges is named
#: as possibly not normal (Tukey's far-out fence).
OUTLIER_IQRS = 3.0


def anomaly_spec(config: TrainConfig, normal: str) -> ModelSpec:
    """The spec of an anomaly model: classes (normal, anomalous), threshold 0.5 on the normalised score."""
    spec = default_spec(
        config.model, in_channels=config.channels, input_size=config.input_size, class_names=(normal, ANOMALOUS)
    )
    extra = {
        "task": ANOMALY_TASK, "patch_strides": list(patch_strides(config.patch_strides)),
        "patch_padding": config.patch_padding, "image_score": config.image_score,
        "stride16_stage": config.stride16_stage,
    }  # fmt: skip
    if config.roi is not None:  # what the region was drawn from (the mask itself is in the weights)
        extra["roi"] = config.roi if config.roi == ROI_CIRCLE else Path(config.roi).name
    return spec.replace(positive_class=ANOMALOUS, threshold=0.5, extra=extra)


def _normal_images(split: CachedSplit, manifest: Manifest, normal: str) -> tuple[CachedSplit, int]:
    """The normal images of ``split``, and how many others it had."""
    keep = (split.labels == manifest.classes.index(normal)).numpy()
    records = [r for r, k in zip(split.records, keep, strict=True) if k]
    return CachedSplit(split.images[keep], split.labels[keep], records), int((~keep).sum())


def train_anomaly(config: TrainConfig, *, progress: Progress | None = None) -> tuple[RunResult, Path]:
    """Fit, threshold and save ``best.pt`` of an anomaly model; returns the result and the run folder.

    Raises:
        DefectlensError: no dataset, no normal class, fewer than :data:`MIN_NORMAL_IMAGES` normal
            training images.
    """
    progress = progress or Progress()
    start = time.perf_counter()
    if not config.data:
        raise DefectlensError("no dataset given: pass --data DIR (a folder written by 'defectlens data import')")
    data_dir = Path(config.data).resolve()
    manifest = Manifest.read(data_dir)
    normal = pick_normal(manifest.classes, config.normal)
    spec = anomaly_spec(config, normal)
    mask = None if config.roi is None else inspection_mask(config.roi, spec.input_size)  # a bad mask: before loading
    train, others = _normal_images(_split(manifest, "train", spec, config, data_dir, progress), manifest, normal)
    if len(train) < MIN_NORMAL_IMAGES:
        raise DefectlensError(
            f"{data_dir}: anomaly mode needs at least {MIN_NORMAL_IMAGES} {normal!r} training images; the training "
            f"split has {len(train)}"
        )
    model = create_patchcore(
        config.model, in_channels=config.channels, input_size=spec.input_size, pretrained=True,
        strides=spec_strides(spec), padding=spec_padding(spec), image_score=spec_image_score(spec),
        stage16=spec_stage16(spec),
    )  # fmt: skip
    region = _set_region(model, config.roi, mask)
    with progress.phase("fitting the memory bank", total=len(train), unit="img") as phase:
        fit, owners = fit_patchcore(
            model, train.images, bank_size=config.bank_size, max_patches=config.max_patches, seed=config.seed,
            on_batch=phase.advance,
        )  # fmt: skip
    loo = leave_one_out_maps(model, train.images, owners)
    cross = image_maxima(model.head.inspected(torch.from_numpy(loo)).numpy())  # raw: a defect filed as good stands out
    positions = _set_positions(model, loo, config)
    setting = _set_threshold(model, manifest, spec, config, data_dir, progress, fallback=scores_of_maps(model, loo))
    run_dir = new_run_dir(config.out, config.name or f"{data_dir.name}-anomaly-{config.model}")
    config.replace(data=str(data_dir)).to_yaml(run_dir / "config.yaml")
    outliers = _write_outliers(run_dir, train, cross)
    anomaly: dict[str, Any] = {
        "normal": normal, "fit": asdict(fit), "position_norm": positions, "region": region,
        "defects_in_train_not_fitted": others, "outliers": outliers, **setting,
    }  # fmt: skip
    save_checkpoint(
        run_dir / "best.pt", model, spec, config=config.replace(data=str(data_dir)).to_dict(),
        data_fingerprint=data_fingerprint(manifest), anomaly=anomaly, epoch=1,
    )  # fmt: skip
    if others:
        warnings.warn(
            f"{others} training images that are not {normal!r} were left out of the fit (anomaly mode fits on "
            "normal images only; they still count in validation and test when the dataset puts them there)",
            stacklevel=2,
        )
    result = RunResult(run_dir, spec, 1, float("nan"), [], seconds=time.perf_counter() - start)
    return result, run_dir


def _split(
    manifest: Manifest, name: str, spec: ModelSpec, config: TrainConfig, data_dir: Path, progress: Progress
) -> CachedSplit:
    return load_split(manifest, name, spec, workers=config.workers, cache_dir=data_dir / ".cache", progress=progress)


def _set_region(model: AnomalyModel, roi: str | None, mask: np.ndarray | None) -> dict[str, Any]:
    """Restrict the model to the inspection region ``roi`` (its ``mask`` at the input size), when one is given;
    returns how."""
    if roi is None or mask is None:
        return {"used": False}
    inspected, cells = model.set_region(torch.from_numpy(mask))
    return {"used": True, "roi": roi, "patches_inspected": inspected, "patches": cells}


def _set_positions(model: AnomalyModel, loo: np.ndarray, config: TrainConfig) -> dict[str, Any]:
    """Set what normal parts score at each patch position from the training images' leave-one-out patch
    maps (``config.position_norm``, with at least :data:`MIN_POSITION_IMAGES` images); returns how."""
    if not config.position_norm:
        return {"used": False, "why": "position_norm is off"}
    if len(loo) < MIN_POSITION_IMAGES:
        return {"used": False, "why": f"{len(loo)} normal training images (needs {MIN_POSITION_IMAGES})"}
    mean, scale = location_statistics(loo, floor=config.position_floor)
    model.head.set_locations(torch.from_numpy(mean), torch.from_numpy(scale))
    return {
        "used": True, "images": len(loo), "grid": list(mean.shape), "floor": config.position_floor,
        "mean_range": [float(mean.min()), float(mean.max())], "scale_range": [float(scale.min()), float(scale.max())],
    }  # fmt: skip


def _set_threshold(
    model: AnomalyModel,
    manifest: Manifest,
    spec: ModelSpec,
    config: TrainConfig,
    data_dir: Path,
    progress: Progress,
    *,
    fallback: np.ndarray,
) -> dict[str, Any]:
    """Normalise ``model``'s score at the false-alarm threshold of held-out normal images; returns how."""
    normal = spec.class_names[0]
    val = None
    if manifest.split("val"):
        val, _ = _normal_images(_split(manifest, "val", spec, config, data_dir, progress), manifest, normal)
    if val is not None and len(val):
        images, cold = raw_scores(model, val.images)
        scores = one_per_group(images, [r.group for r in val.records])  # copies of one part count once
        source = f"{len(images)} held-out {normal!r} validation images"
        if len(scores) < len(images):
            source += f" ({len(scores)} parts: near-duplicate copies count once, at their highest score)"
    else:  # no normal validation image: the training images' leave-one-out scores (never their own patches)
        scores, cold = fallback, np.zeros(0)
        source = (
            f"leave-one-out scores of the {len(scores)} {normal!r} training images (no {normal!r} validation image)"
        )
    rate = config.false_alarm_rate
    threshold = ood_threshold(scores, rate)
    typical = float(np.median(scores))
    width = max((threshold - typical) / 3.0, 1e-6 * max(abs(threshold), 1.0))
    # the map is drawn cold up to the level 90 % of a good part's map stays under (the median over images), so a
    # good part's overlay stays cold where a range starting at its median would paint half of it warm
    low = float(np.median(cold)) if len(cold) else typical / 2.0
    model.set_normalisation(center=threshold, width=width, map_range=(low, max(threshold, low + width)))
    return {
        "raw_threshold": threshold, "false_alarm_rate": rate, "rule": threshold_rule(len(scores), rate),
        "threshold_source": source, "normal_score_median": typical, "score_width": width,
    }  # fmt: skip


def _write_outliers(run_dir: Path, train: CachedSplit, cross: np.ndarray) -> list[str]:
    """Name the training images far above the rest (``outliers.csv``, a warning); returns their paths."""
    q1, q3 = np.percentile(cross, [25, 75])
    fence = q3 + OUTLIER_IQRS * max(q3 - q1, 1e-12)
    flagged = [(r.path, float(s)) for r, s in zip(train.records, cross, strict=True) if s > fence]
    with (run_dir / "outliers.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "leave_one_out_score", "fence"])
        w.writerows([p, f"{s:.6f}", f"{fence:.6f}"] for p, s in sorted(flagged, key=lambda t: -t[1]))
    if flagged:
        shown = ", ".join(p for p, _ in flagged[:5])
        warnings.warn(
            f"{len(flagged)} training images look unlike the other normal ones (a defect filed as normal?): "
            f"{shown}{' ...' if len(flagged) > 5 else ''}; they were fitted on; see {run_dir / 'outliers.csv'}",
            stacklevel=3,
        )
    return [p for p, _ in flagged]
