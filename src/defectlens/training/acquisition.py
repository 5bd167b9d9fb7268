"""What changes on a line, drawn at random for training: the ``line`` augmentation.

A model trained only on the day's photos learns their exposure, focus and compression along with
the parts. :func:`acquisition_shift` re-photographs a batch the ways a line drifts (see
:mod:`defectlens.data.shifts`, which evaluates the same kinds of change): the part nudged, turned
or zoomed a little; a lamp brighter or dimmer; contrast and the camera's response curve changed; a
little defocus; sensor noise; and JPEG compression at another quality. Each image gets its own draw,
from a seeded generator, so a run repeats. It works on the uint8 model input, so it can run once per
cached copy (with frozen, cached stages) as well as per batch.
"""

from __future__ import annotations

import torch

# How often each change is drawn and its range: a little beyond the "moderate" shifts of
# data/shifts.py, so those sit inside what training has seen.
P_GEOMETRY, ANGLE, TRANSLATE, SCALE = 0.5, 6.0, 0.05, (0.92, 1.08)
P_LIGHT, GAIN, CONTRAST, GAMMA = 0.8, (0.7, 1.35), (0.7, 1.35), (0.75, 1.35)
P_BLUR, BLUR_SIGMA = 0.25, (0.3, 1.5)
P_NOISE, NOISE_SIGMA = 0.25, (1.0, 10.0)
P_JPEG, JPEG_QUALITY = 0.3, (30, 95)


def _uniform(gen: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=gen))


def _happens(gen: torch.Generator, p: float) -> bool:
    return float(torch.rand((), generator=gen)) < p


def _geometry(img: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as F

    h, w = img.shape[-2:]
    angle = _uniform(gen, -ANGLE, ANGLE)
    shift = [round(_uniform(gen, -TRANSLATE, TRANSLATE) * s) for s in (w, h)]
    scale = _uniform(gen, *SCALE)
    border = torch.cat([img[..., 0, :], img[..., -1, :], img[..., :, 0], img[..., :, -1]], dim=-1)
    fill = [float(v) for v in border.float().mean(dim=-1)]  # the background, not black, fills the gap
    return F.affine(img, angle=angle, translate=shift, scale=scale, shear=[0.0, 0.0],
                    interpolation=InterpolationMode.BILINEAR, fill=fill)  # fmt: skip


def _light(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    x = x * _uniform(gen, *GAIN)
    mean = x.mean()
    x = (x - mean) * _uniform(gen, *CONTRAST) + mean
    return 255.0 * (x.clamp(0, 255) / 255.0) ** _uniform(gen, *GAMMA)


def _blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    from torchvision.transforms.v2 import functional as F

    size = 2 * round(3 * sigma) + 1
    return F.gaussian_blur(img, kernel_size=[size, size], sigma=[sigma, sigma])


def _jpeg(img: torch.Tensor, quality: int) -> torch.Tensor:
    import io

    import numpy as np
    from PIL import Image

    a = img.numpy()
    buf = io.BytesIO()
    Image.fromarray(a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)).save(buf, format="JPEG", quality=quality)
    out = np.array(Image.open(buf))  # a writable copy
    return torch.from_numpy(np.ascontiguousarray(out[None] if out.ndim == 2 else out.transpose(2, 0, 1)))


def shift_one(img: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One image (uint8, C x H x W) re-photographed with a random drift; uint8 out."""
    if _happens(gen, P_GEOMETRY):
        img = _geometry(img, gen)
    x = img.float()
    if _happens(gen, P_LIGHT):
        x = _light(x, gen)
    if _happens(gen, P_BLUR):
        x = _blur(x, _uniform(gen, *BLUR_SIGMA))
    if _happens(gen, P_NOISE):
        x = x + torch.randn(x.shape, generator=gen) * _uniform(gen, *NOISE_SIGMA)
    img = x.clamp_(0, 255).round_().to(torch.uint8)
    if _happens(gen, P_JPEG):
        img = _jpeg(img, int(_uniform(gen, *JPEG_QUALITY)))
    return img


def acquisition_shift(batch: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A uint8 batch (N, C, H, W), each image with its own random drift (see the module docstring).

    Runs on one torch thread: these are many operations on small tensors, where intra-op threads only
    add synchronisation (measured 2.5 ms per 192 px image on one thread, 20-40x that with two threads
    on a busy 2-core CPU).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return torch.stack([shift_one(img, gen) for img in batch])
    finally:
        torch.set_num_threads(threads)
