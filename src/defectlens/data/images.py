"""Decoding and preprocessing of one image: the single path used by import, training and inference.

Every caller (the training cache, evaluation, the Predictor behind the CLI, web service and GUI)
turns a file into model input through :func:`load_image` and :func:`to_array`, so what the model
sees in production is byte-for-byte what it saw in training.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from defectlens.core.errors import ImageError

if TYPE_CHECKING:
    from defectlens.core.spec import ModelSpec

# A 20000x20000 image is 400 Mpx; inspection images are far smaller. Anything above this is
# refused as a likely decompression bomb rather than allowed to exhaust memory.
MAX_PIXELS = 64_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
ImageFile.LOAD_TRUNCATED_IMAGES = False

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "area": Image.Resampling.BOX,
}


def load_image(source: str | Path | bytes, *, name: str | None = None) -> Image.Image:
    """Decode an image fully (so truncation is caught here) and apply its EXIF orientation.

    Args:
        source: a path, or the raw bytes of an uploaded file.
        name: what to call the image in error messages (defaults to the path).

    Raises:
        ImageError: naming the file and why it cannot be used.
    """
    label = name or (str(source) if not isinstance(source, bytes) else "<upload>")
    try:
        if isinstance(source, bytes):
            if not source:
                raise ImageError(label, "empty file (0 bytes)")
            fp: io.BytesIO | Path = io.BytesIO(source)
        else:
            fp = Path(source)
            if not fp.is_file():
                raise ImageError(label, "file not found")
            if fp.stat().st_size == 0:
                raise ImageError(label, "empty file (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(fp) as im:
                im.load()
                img = ImageOps.exif_transpose(im) if im.getexif() else im.copy()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(label, f"image too large (decompression bomb guard, limit {MAX_PIXELS} px): {exc}") from None
    except UnidentifiedImageError:
        raise ImageError(label, "not an image file (format not recognised)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(label, f"cannot decode image (truncated or corrupt): {exc}") from None
    return img


def convert_mode(img: Image.Image, channels: int) -> Image.Image:
    """Convert any PIL mode (L, LA, P, RGB, RGBA, CMYK, I;16, I, F, 1) to L (1 channel) or RGB (3).

    Transparency is composited on white; 16- and 32-bit images are scaled to 8 bits by their
    bit depth (not per-image min/max, which would change contrast from image to image).
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        arr8 = np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        img = Image.fromarray(arr8, mode="L")
        mode = "L"
    if mode == "P":
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(img.convert("RGBA"), mask=img.convert("RGBA").getchannel("A"))
        img = background
    target = "L" if channels == 1 else "RGB"
    return img if img.mode == target else img.convert(target)


def to_array(img: Image.Image, *, size: int, channels: int, interpolation: str = "bilinear") -> np.ndarray:
    """Model input for one image: uint8 array of shape (channels, size, size).

    The image is resized to a square (inspection images are framed by the fixture, so
    stretching a slightly non-square frame keeps the whole part in view; cropping could cut
    a defect at the edge).
    """
    img = convert_mode(img, channels)
    if img.size != (size, size):
        img = img.resize((size, size), _RESAMPLE[interpolation])
    arr = np.asarray(img, dtype=np.uint8)
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return np.ascontiguousarray(arr)


def preprocess(source: str | Path | bytes | Image.Image, spec: ModelSpec) -> np.ndarray:
    """Decode (if needed) and preprocess one image exactly as the model ``spec`` records."""
    img = source if isinstance(source, Image.Image) else load_image(source)
    return to_array(img, size=spec.input_size, channels=spec.in_channels, interpolation=spec.interpolation)


def displayable(arr: object) -> np.ndarray:
    """An image to show: (H, W) or (H, W, 3) uint8 from a PIL image or an array in CHW or HWC
    layout, with values in [0, 1] (floats) or [0, 255]."""
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = a.transpose(1, 2, 0)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.dtype != np.uint8:
        a = np.asarray(a, dtype=np.float64)
        a = np.clip(a * 255.0 + 0.5 if a.max(initial=0.0) <= 1.0 else a, 0, 255).astype(np.uint8)
    return a
