"""What changes on a line, as image perturbations: a documented family at three strengths.

A model that is right on the day's photos must stay right when a lamp ages, the exposure drifts, the
camera is refocused or nudged, or the JPEG settings change. Each :class:`Shift` applies one such
change to a decoded image at its original resolution, before the model's own preprocessing, so the
model sees exactly what its camera would deliver. Strengths are ``mild``, ``moderate`` and ``strong``;
each photometric or geometric change goes both ways (darker and brighter, left and right...).

| kind        | what it models                         | mild          | moderate      | strong        |
| ----------- | -------------------------------------- | ------------- | ------------- | ------------- |
| exposure    | lamp ageing, exposure time (gain)      | x0.9 / x1.1   | x0.8 / x1.2   | x0.6 / x1.4   |
| brightness  | ambient light added or lost (offset)   | -/+10 levels  | -/+20 levels  | -/+40 levels  |
| contrast    | diffuser, lens flare (around the mean) | x0.9 / x1.1   | x0.8 / x1.2   | x0.6 / x1.4   |
| gamma       | camera response, auto-exposure curve   | 0.9 / 1.1     | 0.8 / 1.25    | 0.67 / 1.5    |
| blur        | defocus (Gaussian sigma, pixels)       | 0.5           | 1.0           | 2.0           |
| noise       | sensor gain noise (sigma, levels)      | 3             | 6             | 12            |
| jpeg        | compression quality                    | 75            | 50            | 25            |
| rotation    | camera or fixture nudged (degrees)     | -/+2          | -/+5          | -/+10         |
| translation | part off-centre (fraction of side)     | -/+2 %        | -/+4 %        | -/+8 %        |
| scale       | working distance drift (zoom)          | x0.97 / x1.03 | x0.93 / x1.07 | x0.85 / x1.15 |

Levels are of 255. Pixels pushed past black or white clip, as a sensor does. Geometric shifts fill
the uncovered border with the image's edge pixels. Noise is seeded per image, so a run repeats.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

STRENGTHS = ("mild", "moderate", "strong")

# (kind, values per strength): a tuple of two values is applied in both directions.
_FAMILY: dict[str, tuple[tuple[float, ...], ...]] = {
    "exposure": ((0.9, 1.1), (0.8, 1.2), (0.6, 1.4)),
    "brightness": ((-10, 10), (-20, 20), (-40, 40)),
    "contrast": ((0.9, 1.1), (0.8, 1.2), (0.6, 1.4)),
    "gamma": ((0.9, 1.1), (0.8, 1.25), (0.67, 1.5)),
    "blur": ((0.5,), (1.0,), (2.0,)),
    "noise": ((3,), (6,), (12,)),
    "jpeg": ((75,), (50,), (25,)),
    "rotation": ((-2, 2), (-5, 5), (-10, 10)),
    "translation": ((-0.02, 0.02), (-0.04, 0.04), (-0.08, 0.08)),
    "scale": ((0.97, 1.03), (0.93, 1.07), (0.85, 1.15)),
}
KINDS = tuple(_FAMILY)
PHOTOMETRIC = ("exposure", "brightness", "contrast", "gamma")


@dataclass(frozen=True)
class Shift:
    """One perturbation: a kind, a strength and the value applied (e.g. exposure, moderate, 0.8)."""

    kind: str
    strength: str
    value: float

    @property
    def name(self) -> str:
        return f"{self.kind} {self.value:g}"

    def apply(self, image: Image.Image, *, seed: int = 0) -> Image.Image:
        """The perturbed image (same size and mode as ``image``, an L or RGB image)."""
        return _APPLY[self.kind](image, self.value, seed)


def family(kinds: tuple[str, ...] = KINDS, strengths: tuple[str, ...] = STRENGTHS) -> list[Shift]:
    """Every shift of ``kinds`` at ``strengths``, in table order."""
    unknown = sorted(set(kinds) - set(KINDS)) + sorted(set(strengths) - set(STRENGTHS))
    if unknown:
        raise ValueError(f"unknown shift kind(s) or strength(s) {unknown}; kinds: {', '.join(KINDS)}")
    return [
        Shift(kind, strength, float(value))
        for kind in kinds
        for strength, values in zip(STRENGTHS, _FAMILY[kind], strict=True)
        if strength in strengths
        for value in values
    ]


def _pixels(image: Image.Image, fn: Callable[[np.ndarray], np.ndarray]) -> Image.Image:
    a = np.asarray(image, dtype=np.float64)
    return Image.fromarray(np.clip(fn(a) + 0.5, 0, 255).astype(np.uint8), mode=image.mode)


def _exposure(image: Image.Image, gain: float, seed: int) -> Image.Image:
    return _pixels(image, lambda a: a * gain)


def _brightness(image: Image.Image, offset: float, seed: int) -> Image.Image:
    return _pixels(image, lambda a: a + offset)


def _contrast(image: Image.Image, factor: float, seed: int) -> Image.Image:
    return _pixels(image, lambda a: (a - a.mean()) * factor + a.mean())


def _gamma(image: Image.Image, gamma: float, seed: int) -> Image.Image:
    return _pixels(image, lambda a: 255.0 * (a / 255.0) ** gamma)


def _blur(image: Image.Image, sigma: float, seed: int) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(radius=sigma))


def _noise(image: Image.Image, sigma: float, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return _pixels(image, lambda a: a + rng.normal(0.0, sigma, a.shape))


def _jpeg(image: Image.Image, quality: float, seed: int) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as out:
        return out.convert(image.mode)


def _affine(image: Image.Image, *, angle: float = 0.0, shift: float = 0.0, zoom: float = 1.0) -> Image.Image:
    """Rotate about the centre, translate by ``shift`` of the width, scale by ``zoom``; edge-padded."""
    w, h = image.size
    pad = max(w, h) // 2
    a = np.asarray(image)
    padded = Image.fromarray(np.pad(a, ((pad, pad), (pad, pad)) + ((0, 0),) * (a.ndim - 2), mode="edge"))
    big = padded.rotate(angle, resample=Image.Resampling.BILINEAR) if angle else padded
    cw, ch = w / zoom, h / zoom
    cx, cy = pad + w / 2 - shift * w, pad + h / 2
    box = (cx - cw / 2, cy - ch / 2, cx + cw / 2, cy + ch / 2)
    return big.resize((w, h), Image.Resampling.BILINEAR, box=box)


_APPLY: dict[str, Callable[[Image.Image, float, int], Image.Image]] = {
    "exposure": _exposure,
    "brightness": _brightness,
    "contrast": _contrast,
    "gamma": _gamma,
    "blur": _blur,
    "noise": _noise,
    "jpeg": _jpeg,
    "rotation": lambda im, v, s: _affine(im, angle=v),
    "translation": lambda im, v, s: _affine(im, shift=v),
    "scale": lambda im, v, s: _affine(im, zoom=v),
}

__all__ = ["KINDS", "PHOTOMETRIC", "STRENGTHS", "Shift", "family"]
