"""What a run learns from: class indices, soft targets, and the checks a dataset must pass to train.

Owns :func:`soft_targets` (per-image probabilities from metadata, e.g. ELPV's expert scores),
:func:`check_splits` (a class with no training images is refused; thin validation is warned about)
and the defect class index of a binary dataset.
"""

from __future__ import annotations

import torch

from defectlens.core.errors import DefectlensError
from defectlens.core.progress import Progress
from defectlens.data.dataset import CachedSplit
from defectlens.data.manifest import Manifest


def soft_targets(split: CachedSplit, key: str, positive: int | None, num_classes: int) -> torch.Tensor:
    """Class-probability targets (N, 2) from each record's ``meta[key]`` (probability of the positive class).

    Raises:
        DefectlensError: for a multi-class task, or a record without a probability in [0, 1].
    """
    if positive is None or num_classes != 2:
        raise DefectlensError(f"soft_label={key!r} needs a binary task with a positive class")
    probs = []
    for r in split.records:
        try:
            p = float(r.meta[key])
        except (KeyError, TypeError, ValueError):
            raise DefectlensError(f"{r.path}: soft_label needs a numeric meta field {key!r}, got {r.meta}") from None
        if not 0.0 <= p <= 1.0:
            raise DefectlensError(f"{r.path}: meta {key}={p} is not a probability in [0, 1]")
        probs.append(p)
    pos = torch.tensor(probs, dtype=torch.float32)
    out = torch.empty(len(probs), 2)
    out[:, positive], out[:, 1 - positive] = pos, 1.0 - pos
    return out


def positive_index(manifest: Manifest) -> int | None:
    pos = manifest.info.get("positive_class")
    if len(manifest.classes) != 2 or pos is None:
        return None
    return manifest.classes.index(pos)


#: Fewer validation images of a class than this and the threshold and the epoch ranking rest on a handful.
MIN_VAL_PER_CLASS = 20


def check_splits(manifest: Manifest, progress: Progress) -> None:
    """Refuse a dataset whose training split lacks a class; warn when validation is thin.

    Raises:
        DefectlensError: when a class has no training images, saying what to do.
    """
    counts = manifest.counts()
    train, val = counts.get("train", {}), counts.get("val", {})
    missing = [c for c in manifest.classes if not train.get(c)]
    if missing and train:
        shown = ", ".join(f"{c} {train.get(c, 0)}" for c in manifest.classes)
        raise DefectlensError(
            f"class(es) {', '.join(missing)} have no training images (train: {shown}); a classifier learns only "
            "classes it sees: add labelled images of them to train, or re-split with "
            "'defectlens data split DIR --ignore-official' so every class reaches train"
        )
    thin = [f"{c} {val.get(c, 0)}" for c in manifest.classes if val and val.get(c, 0) < MIN_VAL_PER_CLASS]
    if thin:
        progress.note(f"warning: few validation images ({', '.join(thin)}); threshold and best epoch rest on them")
