"""Uploaded files: decoding each one into model input, and the per-file error a bad one earns.

A client's file name is kept as data (shown, logged, echoed); nothing here or anywhere in the
service turns it into a path. Decoding goes through :func:`defectlens.data.images.load_image` and
``Predictor.preprocess``, the same path the CLI and evaluation use.

Status codes per file: 415 when the bytes are not an image in a format we read, or the image has a
pixel mode that cannot be converted to the model's channels; 422 when it is an image but empty,
truncated, corrupt or too large (the decompression-bomb guard).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import numpy as np

from defectlens.core.errors import ImageError
from defectlens.data.images import decode_image
from defectlens.inference.predictor import Predictor

#: Longest client file name kept (longer names are cut; they are labels, not paths).
MAX_NAME = 255
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Upload:
    """One uploaded file: the client's name for it (data only) and its bytes."""

    name: str
    data: bytes


@dataclass(frozen=True)
class FileError:
    """Why one file was not classified: HTTP-like ``status``, a short ``kind`` and the reason."""

    status: int
    kind: str
    reason: str


@dataclass(frozen=True)
class Decoded:
    """An upload after decoding: model input, or the error that stopped it."""

    upload: Upload
    sha256: str
    array: np.ndarray | None = None
    width: int | None = None
    height: int | None = None
    image_format: str | None = None
    error: FileError | None = None
    warning: str = ""  # what decoding noticed but did not stop for (corrupt JPEG data, bad EXIF...)


def client_name(raw: str | None, index: int) -> str:
    """The name to show and log for an upload: the client's (control characters dropped, cut to
    :data:`MAX_NAME`), or ``upload-<index>`` when it sent none."""
    name = _CONTROL.sub("", raw or "").strip()
    return name[:MAX_NAME] if name else f"upload-{index}"


def classify(reason: str) -> FileError:
    """The status and kind of an :class:`ImageError` reason (415: not an image we read; 422: broken)."""
    text = reason.lower()
    if "empty" in text:
        return FileError(422, "empty_file", reason)
    if "too large" in text or "memory" in text or "decompression" in text:
        return FileError(422, "image_too_large", reason)
    if "cannot decode" in text or "truncated" in text:
        return FileError(422, "corrupt_image", reason)
    if "mode" in text:
        return FileError(415, "unsupported_image", reason)
    if any(words in text for words in ("not an image", "not accepted", "not recognised", "unsupported")):
        return FileError(415, "not_an_image", reason)
    return FileError(422, "corrupt_image", reason)


def decode(upload: Upload, predictor: Predictor) -> Decoded:
    """Decode and preprocess one upload for ``predictor``; a bad file gives an error, never an exception."""
    digest = hashlib.sha256(upload.data).hexdigest()
    try:
        decoded = decode_image(upload.data, name=upload.name, gray=predictor.spec.in_channels == 1)  # as predict
        array = predictor.preprocess(decoded)  # decoded once: the rule has been applied
    except ImageError as exc:
        return Decoded(upload, digest, error=classify(exc.reason))
    except Exception as exc:  # a decoder tripping on hostile bytes is bad input, not a server error
        reason = f"cannot decode image: {type(exc).__name__}: {exc}"
        return Decoded(upload, digest, error=FileError(422, "corrupt_image", reason))
    img = decoded.image
    return Decoded(upload, digest, array, img.width, img.height, decoded.format, warning=decoded.warning)
