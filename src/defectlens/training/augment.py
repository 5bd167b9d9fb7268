"""Augmentation for inspection images, on batches of uint8 tensors from the in-memory cache.

Levels: ``none``; ``flips`` (label-preserving flips and 90-degree rotations only); ``light``
(horizontal flip, mild brightness/contrast); ``standard`` (flips,
90-degree rotations when the part has no fixed orientation, +-5 degree rotation, brightness/contrast);
``strong`` (adds small shifts/scales, blur and sensor noise); ``line`` (flips and rot90, then what
drifts on a production line: pose, lighting, focus, noise and JPEG quality, see
:mod:`defectlens.training.acquisition`; also usable with cached frozen stages). Geometry that is label-preserving for
a part (flips, rot90) is cheap tensor indexing done per sample; the rest uses
``torchvision.transforms.v2`` per sample, because v2 draws one set of parameters per call.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from defectlens.core.errors import DefectlensError
from defectlens.training.acquisition import acquisition_shift
from defectlens.training.config import AUGMENT_LEVELS

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def _photometric(level: str):
    from torchvision.transforms import v2

    if level in ("none", "flips", "line"):
        return None
    if level == "light":
        ops = [v2.ColorJitter(brightness=0.1, contrast=0.1)]
    elif level == "standard":
        ops = [v2.RandomRotation(5), v2.ColorJitter(brightness=0.2, contrast=0.2)]
    else:
        ops = [
            v2.RandomAffine(degrees=8, translate=(0.04, 0.04), scale=(0.92, 1.08)),
            v2.ColorJitter(brightness=0.25, contrast=0.25),
            v2.RandomApply([v2.GaussianBlur(3, sigma=(0.1, 1.0))], p=0.2),
        ]
    return v2.Compose(ops)


def build_augment(level: str, *, rot90: bool = True) -> Augment:
    """A function ``(uint8 batch (N, C, H, W), generator) -> float batch in [0, 1]``.

    The generator drives flips and rotations; torchvision's random parameters come from the
    global torch RNG, which :func:`defectlens.training.seed_everything` seeds.
    """
    if level not in AUGMENT_LEVELS:
        raise DefectlensError(f"augment must be one of {', '.join(AUGMENT_LEVELS)}, got {level!r}")
    photometric = _photometric(level)
    noise = level == "strong"

    def apply(batch: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if level == "none":
            return batch.float().div_(255.0)
        n = batch.shape[0]
        out = batch.clone()
        hflip = torch.rand(n, generator=gen) < 0.5
        out[hflip] = out[hflip].flip(-1)
        if level != "light" and rot90:
            vflip = torch.rand(n, generator=gen) < 0.5
            out[vflip] = out[vflip].flip(-2)
            turns = torch.randint(0, 4, (n,), generator=gen)
            for k in (1, 2, 3):  # one batched rotation per angle, square images only
                sel = turns == k
                if sel.any() and out.shape[-1] == out.shape[-2]:
                    out[sel] = torch.rot90(out[sel], k, dims=(-2, -1))
        if photometric is not None:
            out = torch.stack([photometric(img) for img in out])
        if level == "line":
            out = acquisition_shift(out, gen)
        x = out.float().div_(255.0)
        if noise:
            sigma = torch.rand(n, 1, 1, 1, generator=gen) * 0.03
            x = (x + torch.randn(x.shape, generator=gen) * sigma).clamp_(0.0, 1.0)
        return x

    return apply
