"""Decoding and preprocessing of one image: the single path used by import, training and inference.

Every caller (the training cache, evaluation, the Predictor behind the CLI, web service and GUI)
turns an input into model input through :func:`decode_image` (or its shorthand :func:`load_image`)
and :func:`to_array`, so what the model sees in production is byte-for-byte what it saw in training.
One decode rule holds for every input type: a path, raw bytes, a PIL image or a numpy array all get
the same format allow-list, pixel limit, EXIF rotation and mode conversion.

What is refused, and why (each refusal is an :class:`~defectlens.core.errors.ImageError` naming
the input and the reason):

* formats outside :data:`ACCEPTED_FORMATS`: Pillow would otherwise hand an EPS or PDF renamed
  ``.jpg`` to Ghostscript; only the formats inspection cameras write are opened;
* images over :data:`MAX_PIXELS`, checked from the header before any pixel is decoded (a 124 KB
  PNG can declare 64 Mpx). A JPEG over the limit is instead decoded at the smallest DCT scale
  (1/2, 1/4 or 1/8, ``Image.draft``) that brings it under, a rule that depends only on the file, so
  training and inference decode it identically;
* truncated files (``LOAD_TRUNCATED_IMAGES`` stays off), files that are not regular files (a FIFO
  is never opened), unreadable files ("permission denied"), and pixel modes with no defined
  conversion to gray or RGB (LAB, HSV).

For a 1-channel model a colour JPEG is decoded to its luma plane alone (``decode_image(..., gray=True)``, which
:func:`prepare_frame` asks for): the pixels of decoding RGB and converting, at about half the cost.

What is kept with a warning (:attr:`DecodedImage.warnings`): a JPEG whose compressed data breaks
the marker structure or holds a long run of zero bytes (a corrupted block decodes to garbage
without an error from Pillow), metadata Pillow warns about (corrupt EXIF, a malformed MPO), and
multi-frame files (the first frame is used).
"""

from __future__ import annotations

import io
import stat
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple

import numpy as np
from PIL import (  # the plugins of ACCEPTED_FORMATS, registered before Image.open(formats=...)
    BmpImagePlugin,  # noqa: F401
    ExifTags,
    GifImagePlugin,  # noqa: F401
    Image,
    ImageFile,
    ImageOps,
    JpegImagePlugin,  # noqa: F401
    PngImagePlugin,  # noqa: F401
    PpmImagePlugin,  # noqa: F401
    TiffImagePlugin,  # noqa: F401
    UnidentifiedImageError,
    WebPImagePlugin,  # noqa: F401
)

from defectlens.core.errors import ImageError
from defectlens.core.spec import INTERPOLATIONS
from defectlens.data.jpeg import jpeg_problem

if TYPE_CHECKING:
    from defectlens.core.spec import ModelSpec

#: Largest image accepted, in pixels (64 Mpx, e.g. 8000 x 8000), checked from the header before
#: decoding. Inspection images are far smaller (casting 300 x 300, NEU 200 x 200); the limit keeps
#: one hostile file from taking gigabytes. A JPEG above it is decoded reduced (see module docstring).
MAX_PIXELS = 64_000_000
# Pillow's own guard (it raises above twice this) stays as a backstop for any caller opening files
# directly; it sits at 1/8 x 1/8 scale of the limit so that a large JPEG can still reach the draft rule.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS * 32
ImageFile.LOAD_TRUNCATED_IMAGES = False
ORIENTATION = ExifTags.Base.Orientation

#: Pillow format plugins allowed to open a file: what industrial and phone cameras write. JPEG
#: includes MPO (the multi-picture JPEG some cameras produce); PPM also reads PGM and PBM.
ACCEPTED_FORMATS = ("JPEG", "PNG", "BMP", "TIFF", "WEBP", "GIF", "PPM")
_JPEG_FORMATS = ("JPEG", "MPO")
#: Largest JPEG file whose compressed data is checked for corruption (a 64 Mpx JPEG is a few tens of MB).
JPEG_CHECK_MAX_BYTES = 256 << 20
#: Files up to this size are read in one call and decoded from memory (an inspection frame is well
#: under it); larger ones are decoded from the open file, in Pillow's chunks.
READ_WHOLE_MAX_BYTES = 16 << 20

#: Pixel modes decoded; LAB, HSV and other exotic modes have no defined conversion to gray/RGB.
ACCEPTED_MODES = frozenset(
    {"1", "L", "P", "PA", "LA", "RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "I", "F"}
    | {"I;16", "I;16B", "I;16L", "I;16N"}
)


_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "area": Image.Resampling.BOX,
}
assert tuple(_RESAMPLE) == INTERPOLATIONS  # the spec's schema and the resize filters are one list

# ``warnings.catch_warnings`` swaps process-wide state, so two threads inside it at once can leave
# warnings captured into a dead list forever. Only header and metadata parsing warn (never the
# pixel decoder), so the lock covers those cheap steps and decoding itself runs unlocked.
_WARN_LOCK = threading.Lock()
_WIDE_GRAY = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
_GRAY_MODES = frozenset({"1", "L", *_WIDE_GRAY})
_CHUNK_PIXELS = 1 << 20  # rows converted at a time from 16/32-bit, to bound memory
_BOMB = f" (limit {MAX_PIXELS:,}; decompression bomb guard)"


@dataclass(frozen=True)
class DecodedImage:
    """A decoded image: pixels (EXIF rotation applied), its format, and what looked wrong.

    Attributes:
        image: the decoded PIL image.
        format: the container format (``JPEG``, ``PNG``...), or None for an in-memory input.
        warnings: problems that did not stop decoding (corrupt JPEG data, bad EXIF...).
    """

    image: Image.Image
    format: str | None = None
    warnings: tuple[str, ...] = ()

    @property
    def warning(self) -> str:
        """All warnings as one line ("" when none)."""
        return "; ".join(self.warnings)


#: What the decode rule accepts; a :class:`DecodedImage` has been through it already and passes as is.
Source = str | Path | bytes | bytearray | memoryview | Image.Image | np.ndarray | DecodedImage


def source_label(source: object, name: str | None = None) -> str:
    """What to call an input in messages: ``name``, the path, or a placeholder for in-memory data."""
    if name:
        return name
    if isinstance(source, (str, Path)):
        return str(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<upload>"
    return "<array>" if isinstance(source, np.ndarray) else "<image>"


def decode_image(source: Source, *, name: str | None = None, gray: bool = False) -> DecodedImage:
    """Decode any accepted input under the one decode rule (see the module docstring).

    Args:
        source: a path, the raw bytes of a file, a PIL image, or a numpy array (H, W) or (H, W, C)
            with C in 1, 3, 4, of dtype uint8 or uint16; a :class:`DecodedImage` (this function's
            own result) is returned as it is, so a caller that needs the decoded image's size or
            format and the model input decodes once.
        name: what to call the image in error messages (defaults to the path).
        gray: the caller wants gray pixels (a 1-channel model): a colour JPEG file is then decoded to its
            luma plane only (libjpeg's grayscale output, about twice as fast as RGB on a 300 x 300 cell).
            The pixels are those of decoding to RGB and converting to gray (all 7,348 casting images,
            random colour JPEGs at qualities 75-90 with and without chroma subsampling: no pixel
            differs), except where the RGB conversion clips a saturated colour (a saturated red: up to
            9 levels), where the luma is the truer gray. Every model path (training, every surface)
            passes it for a 1-channel model: :func:`prepare_frame`.

    Raises:
        ImageError: naming the input and why it cannot be used.
    """
    if isinstance(source, DecodedImage):
        return source
    label = source_label(source, name)
    try:
        if isinstance(source, Image.Image):
            return _from_pil(source, label)
        if isinstance(source, np.ndarray):
            return DecodedImage(_from_array(source, label))
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
            if not data:
                raise ImageError(label, "empty file (0 bytes)")
            return _decode_stream(
                io.BytesIO(data), label, lambda: jpeg_problem(np.frombuffer(data, np.uint8)), gray=gray
            )
        if isinstance(source, (str, Path)):
            return _decode_path(Path(source), label, gray=gray)
    except ImageError:
        raise
    except MemoryError:
        raise ImageError(label, "not enough memory to decode this image") from None
    except (OSError, SyntaxError, EOFError, ValueError) as exc:  # Pillow's ways of saying "broken file"
        raise ImageError(label, f"cannot decode image (truncated or corrupt): {exc}") from None
    except Exception as exc:  # a decoder tripping on hostile bytes is bad input, never a crash
        raise ImageError(label, f"cannot decode image ({type(exc).__name__}: {exc})") from None
    raise ImageError(label, f"unsupported input type {type(source).__name__} (give a path, bytes, PIL image or array)")


def load_image(source: Source, *, name: str | None = None, gray: bool = False) -> Image.Image:
    """The decoded image of :func:`decode_image` (warnings dropped; use that function to see them)."""
    return decode_image(source, name=name, gray=gray).image


def _decode_path(path: Path, label: str, *, gray: bool = False) -> DecodedImage:
    try:
        st = path.stat()
    except FileNotFoundError:
        kind = "dangling symlink (its target is missing)" if path.is_symlink() else "file not found"
        raise ImageError(label, kind) from None
    except PermissionError:
        raise ImageError(label, "permission denied") from None
    except OSError as exc:
        raise ImageError(label, f"cannot access file: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageError(label, "is a folder, not an image file")
    if not stat.S_ISREG(st.st_mode):  # opening a FIFO would block until a writer appears
        raise ImageError(label, f"not a regular file ({file_kind(st.st_mode)}); not opened")
    if st.st_size == 0:
        raise ImageError(label, "empty file (0 bytes)")
    try:
        fh = path.open("rb")
    except PermissionError:
        raise ImageError(label, "permission denied") from None
    except OSError as exc:
        raise ImageError(label, f"cannot read file: {exc.strerror or exc}") from None
    with fh:
        if st.st_size > READ_WHOLE_MAX_BYTES:
            return _decode_stream(fh, label, lambda: _jpeg_file_problem(fh), gray=gray)
        try:  # one read, decoded from memory and checked in place (no second read for the JPEG check)
            data = fh.read(READ_WHOLE_MAX_BYTES + 1)
        except OSError as exc:
            raise ImageError(label, f"cannot read file: {exc.strerror or exc}") from None
    if not data:
        raise ImageError(label, "empty file (0 bytes)")
    return _decode_stream(io.BytesIO(data), label, lambda: jpeg_problem(np.frombuffer(data, np.uint8)), gray=gray)


def _jpeg_file_problem(fh: BinaryIO) -> str | None:
    """:func:`jpeg_problem` of an open file (read, not memory-mapped: a file truncated while mapped
    kills the process with SIGBUS, and line cameras rewrite files). Files over
    :data:`JPEG_CHECK_MAX_BYTES` are not checked."""
    fh.seek(0)
    data = fh.read(JPEG_CHECK_MAX_BYTES + 1)
    if len(data) > JPEG_CHECK_MAX_BYTES:
        return None
    return jpeg_problem(np.frombuffer(data, dtype=np.uint8))


def file_kind(mode: int) -> str:
    """A readable name for a non-regular file type (FIFO, socket, device)."""
    for test, kind in (
        (stat.S_ISFIFO, "a FIFO / named pipe"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISDIR, "a folder"),
    ):
        if test(mode):
            return kind
    return "not a regular file"


def _open_checked(fp: BinaryIO, label: str) -> tuple[Image.Image, list[str]]:
    """Open (header only) with the format allow-list; returns the image and Pillow's warnings."""
    with _WARN_LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            im = Image.open(fp, formats=ACCEPTED_FORMATS)
        except UnidentifiedImageError:
            raise ImageError(label, f"not an image in an accepted format ({', '.join(ACCEPTED_FORMATS)})") from None
        except Image.DecompressionBombError:
            raise ImageError(label, f"image too large (over twice the {MAX_PIXELS:,} pixel limit){_BOMB}") from None
    notes = [str(w.message) for w in caught if not issubclass(w.category, Image.DecompressionBombWarning)]
    return im, notes


def _metadata(im: Image.Image) -> list[str]:
    """Warnings about the frames and tags of an opened image, read (from headers only) under the capture.

    TIFF's ``load()`` reads its tags, so they are parsed (and cached) here rather than warning there.
    """
    animated: list[bool] = []
    notes = _captured(lambda: animated.append(bool(getattr(im, "is_animated", False))))
    if animated and animated[0]:
        notes.append("more than one frame (animated or multi-page); the first is used")
    if im.format == "TIFF":
        notes += _captured(im.getexif)
    return notes


def _decode_stream(
    fp: BinaryIO, label: str, jpeg_check: Callable[[], str | None], *, gray: bool = False
) -> DecodedImage:
    im, notes = _open_checked(fp, label)
    with im:
        width, height = im.size
        luma = "L" if gray and im.format in _JPEG_FORMATS and im.mode == "RGB" else None  # decode_image's gray
        if width * height > MAX_PIXELS:
            if im.format not in _JPEG_FORMATS or not _draft_under_limit(im, luma):
                raise _too_large(label, width, height)
            notes.append(f"{width} x {height} JPEG over the pixel limit, decoded at {im.size[0]} x {im.size[1]}")
        elif luma:
            im.draft(luma, im.size)
        if im.mode not in ACCEPTED_MODES:
            raise ImageError(label, f"unsupported image mode {im.mode}; save it as grayscale or RGB")
        notes += _metadata(im)
        try:
            im.load()
        except OSError as exc:
            raise ImageError(label, f"cannot decode image (truncated or corrupt): {exc}") from None
        if im.format in _JPEG_FORMATS:
            problem = jpeg_check()
            if problem:
                notes.append(f"corrupt JPEG data: {problem}")
        img, exif_notes = _exif_upright(im)
        return DecodedImage(img, im.format, tuple(notes + exif_notes))


def _too_large(label: str, width: int, height: int) -> ImageError:
    return ImageError(label, f"image too large: {width} x {height} = {width * height:,} pixels{_BOMB}")


def _draft_under_limit(im: Image.Image, mode: str | None = None) -> bool:
    """Ask the JPEG decoder for the smallest DCT scale (1/2, 1/4, 1/8) under :data:`MAX_PIXELS` (and for
    ``mode``'s pixels: ``L`` for the luma plane alone)."""
    width, height = im.size
    for scale in (2, 4, 8):
        if (width // scale) * (height // scale) <= MAX_PIXELS:
            im.draft(mode, (width // scale, height // scale))
            return im.size[0] * im.size[1] <= MAX_PIXELS
    return False


def _exif_upright(im: Image.Image) -> tuple[Image.Image, list[str]]:
    """The image turned as its EXIF orientation says, and any metadata warnings.

    Always a new image object (the caller closes ``im``), but one that shares ``im``'s pixels when no
    turn is needed: copying them cost about a tenth of a millisecond per 300 px frame for nothing.
    """
    result: list[Image.Image] = []
    notes = _captured(lambda: result.append(_upright(im)))
    return (result[0] if result else im.copy()), notes


def _upright(im: Image.Image) -> Image.Image:
    if im.getexif().get(ORIENTATION, 1) in (1, None):
        return im._new(im.im)  # a second handle on the same pixels: closing ``im`` leaves it intact
    out = ImageOps.exif_transpose(im)
    assert out is not None
    return out


def _captured(step: Callable[[], object]) -> list[str]:
    """Run a metadata step, returning Pillow's warnings as notes; a failure is a note too (unreadable
    EXIF must not make a readable image unusable)."""
    with _WARN_LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            step()
        except Exception as exc:
            return [str(w.message) for w in caught] + [f"EXIF ignored ({exc})"]
    return [str(w.message) for w in caught]


def _from_pil(img: Image.Image, label: str) -> DecodedImage:
    """A PIL image from a caller: same allow-list, limit and EXIF rule as a file."""
    fmt = img.format
    if fmt is not None and fmt not in (*ACCEPTED_FORMATS, *_JPEG_FORMATS):
        raise ImageError(label, f"format {fmt} is not accepted ({', '.join(ACCEPTED_FORMATS)})")
    if img.width * img.height > MAX_PIXELS:
        raise _too_large(label, img.width, img.height)
    if img.mode not in ACCEPTED_MODES:
        raise ImageError(label, f"unsupported image mode {img.mode}; convert it to grayscale or RGB")
    try:
        img.load()
    except OSError as exc:
        raise ImageError(label, f"cannot decode image (truncated or corrupt): {exc}") from None
    upright, notes = _exif_upright(img)
    return DecodedImage(upright, fmt, tuple(notes))


def _from_array(arr: np.ndarray, label: str) -> Image.Image:
    """An image from a numpy array (H, W) or (H, W, C), C in 1/3/4, uint8 or uint16 (scaled by bit depth)."""
    if arr.dtype not in (np.uint8, np.uint16):
        raise ImageError(label, f"array dtype {arr.dtype} not accepted; give uint8 or uint16 pixels")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))) or 0 in arr.shape:
        raise ImageError(label, f"array shape {arr.shape} not accepted; give (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)")
    if arr.shape[0] * arr.shape[1] > MAX_PIXELS:
        raise _too_large(label, arr.shape[1], arr.shape[0])
    if arr.dtype == np.uint16 and arr.ndim == 3:
        arr = _scale_to_u8(arr, 65535.0)  # PIL has no 16-bit RGB mode; same scaling as 16-bit gray
    return Image.fromarray(np.ascontiguousarray(arr))  # (H, W) uint16: I;16; uint8: L, RGB or RGBA


def _wide_to_u8(img: Image.Image) -> np.ndarray:
    """A 16/32-bit or float gray image as uint8, scaled by bit depth (65535 for 16-bit, else 255 unless
    a value exceeds it), read a band of rows at a time so no full-size 64-bit copy is made."""
    width, height = img.size
    rows = max(1, _CHUNK_PIXELS // max(1, width))
    bands = [(y, min(height, y + rows)) for y in range(0, height, rows)]
    top = max((float(np.asarray(img.crop((0, a, width, b)).getextrema())[1]) for a, b in bands), default=0.0)
    peak = 65535.0 if img.mode.startswith("I;16") or top > 255 else 255.0
    out = np.empty((height, width), dtype=np.uint8)
    for a, b in bands:
        out[a:b] = _scale_to_u8(np.asarray(img.crop((0, a, width, b))), peak)
    return out


def _scale_to_u8(arr: np.ndarray, peak: float) -> np.ndarray:
    """``round(v / peak * 255)`` clipped to uint8, a band of rows at a time (bounded memory)."""
    out = np.empty(arr.shape, dtype=np.uint8)
    rows = max(1, _CHUNK_PIXELS // max(1, int(np.prod(arr.shape[1:]))))
    for start in range(0, arr.shape[0], rows):
        band = np.nan_to_num(np.asarray(arr[start : start + rows], dtype=np.float64), nan=0.0)  # NaN: black
        out[start : start + rows] = np.clip(band / peak * 255.0 + 0.5, 0, 255)
    return out


def convert_mode(img: Image.Image, channels: int) -> Image.Image:
    """Convert any accepted PIL mode (L, LA, P, RGB, RGBA, CMYK, YCbCr, I;16, I, F, 1) to L (1 channel)
    or RGB (3).

    Transparency is composited on white; 16- and 32-bit images are scaled to 8 bits by their
    bit depth (not per-image min/max, which would change contrast from image to image).

    Raises:
        ValueError: for ``channels`` other than 1 or 3.
        ImageError: for a mode with no defined conversion (LAB, HSV).
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    mode = img.mode
    if mode not in ACCEPTED_MODES:
        raise ImageError("<image>", f"unsupported image mode {mode}; save it as grayscale or RGB")
    if mode in _WIDE_GRAY:
        img = Image.fromarray(_wide_to_u8(img), mode="L")
        mode = "L"
    if mode == "P":
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "RGBa", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        img = background
    target = "L" if channels == 1 else "RGB"
    return img if img.mode == target else img.convert(target)


def to_array(img: Image.Image, *, size: int, channels: int, interpolation: str = "bilinear") -> np.ndarray:
    """Model input for one image: uint8 array of shape (channels, size, size).

    The image is resized to a square (inspection images are framed by the fixture, so
    stretching a slightly non-square frame keeps the whole part in view; cropping could cut
    a defect at the edge).
    """
    # A gray image for an RGB model is resized while still one channel, then copied to three: the same
    # pixels as converting first (resizing treats every channel alike), at a third of the memory.
    gray_first = channels == 3 and img.mode in _GRAY_MODES
    img = convert_mode(img, 1 if gray_first else channels)
    if img.size != (size, size):
        img = img.resize((size, size), _RESAMPLE[interpolation])
    if gray_first:
        img = img.convert("RGB")
    arr = np.asarray(img, dtype=np.uint8)
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return np.ascontiguousarray(arr)


def inspection_mask(roi: str, size: int) -> np.ndarray:
    """Anomaly mode's inspection region at the model's input size, (size, size) bool: ``"circle"``
    (:data:`~defectlens.core.anomaly.ROI_CIRCLE`, the disc inscribed in the square input: the ellipse inscribed in
    the frame), or the path of a mask image drawn on a frame (any pixel above half-grey is inspected), resized to
    the square as every frame is (nearest, so the region's edge stays sharp).

    Raises:
        ImageError: naming the mask file, when it cannot be read or inspects no pixel.
    """
    from defectlens.core.anomaly import ROI_CIRCLE

    if roi == ROI_CIRCLE:
        centre = (np.arange(size) + 0.5 - size / 2) / (size / 2)
        return np.asarray(centre[:, None] ** 2 + centre[None, :] ** 2 <= 1.0)
    img = convert_mode(load_image(Path(roi), gray=True), 1)
    mask = np.asarray(img.resize((size, size), Image.Resampling.NEAREST), dtype=np.uint8) > 127
    if not mask.any():
        raise ImageError(roi, "the inspection region's mask has no white pixel: nothing would be inspected")
    return mask


class Prepared(NamedTuple):
    """A model input (uint8, (C, H, W)), the decode's warnings, and the decoded frame's (width, height)."""

    array: np.ndarray
    warnings: tuple[str, ...]
    size: tuple[int, int]


def prepare(source: Source, spec: ModelSpec, *, name: str | None = None) -> tuple[np.ndarray, tuple[str, ...]]:
    """Model input for one image under the decode rule, and the decode's warnings.

    Raises:
        ImageError: when the input cannot be used (the reason says why).
    """
    prepared = prepare_frame(source, spec, name=name)
    return prepared.array, prepared.warnings


def prepare_frame(source: Source, spec: ModelSpec, *, name: str | None = None) -> Prepared:
    """:func:`prepare`, and the decoded frame's size (the gate judges it against the training images').

    Raises:
        ImageError: when the input cannot be used (the reason says why).
    """
    decoded = decode_image(source, name=name, gray=spec.in_channels == 1)
    try:
        arr = to_array(decoded.image, size=spec.input_size, channels=spec.in_channels, interpolation=spec.interpolation)
    except ImageError as exc:
        raise ImageError(source_label(source, name), exc.reason) from None
    except (ValueError, OSError) as exc:
        raise ImageError(source_label(source, name), f"cannot convert image ({exc})") from None
    return Prepared(arr, decoded.warnings, decoded.image.size)


def preprocess(source: Source, spec: ModelSpec) -> np.ndarray:
    """Decode (if needed) and preprocess one image exactly as the model ``spec`` records."""
    return prepare(source, spec)[0]


def displayable(arr: Any) -> np.ndarray:
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
