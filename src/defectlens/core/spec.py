"""ModelSpec: everything needed to feed a model and read its output, travelling with the weights.

The spec is stored in every checkpoint, in the bundle's ``spec.json`` and in the ONNX
``metadata_props``; every transform is built from it, so no caller re-types mean/std or class names.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from defectlens.core.errors import DefectlensError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Test-time augmentation modes and the flips/rotations each averages over, as indices of the
#: dihedral group (``k % 4`` quarter turns, then a horizontal flip when ``k >= 4``; see
#: :func:`defectlens.models.classifier.dihedral`). ``flips`` is identity, horizontal, vertical and both
#: flips (no rotation: parts whose orientation is fixed up to mirroring); ``dihedral`` is all 8.
TTA_VIEWS: dict[str, tuple[int, ...]] = {"none": (0,), "flips": (0, 4, 6, 2), "dihedral": tuple(range(8))}

#: Flip/rotation copies of each training image cached by ``cache_variants`` (8, 4 or 2): all 8; the 4
#: without transposition (identity, 180-degree turn, both flips); identity and the horizontal flip.
CACHE_VIEWS: dict[int, tuple[int, ...]] = {8: tuple(range(8)), 4: (0, 2, 4, 6), 2: (0, 4)}

#: Illumination handling inside the network: ``none``; ``standardize`` maps each image's own mean and
#: standard deviation to the training images' typical ones, which undoes exposure, brightness and
#: contrast drift exactly (up to clipping) before any learned layer sees the image.
ILLUMINATION_MODES = ("none", "standardize")


#: Resize filters a spec may name (``defectlens.data.images`` maps each to a Pillow filter).
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "area")
#: Resize policies: ``squash`` resizes the whole frame to the square input.
RESIZE_MODES = ("squash",)
#: The schema's ranges: square input side in pixels, number of classes, length of a class name.
INPUT_SIZE_RANGE = (16, 2048)
MAX_CLASSES = 1000
MAX_NAME_LENGTH = 100
TEMPERATURE_RANGE = (1e-3, 1e3)
_REQUIRED = ("arch", "input_size", "in_channels", "mean", "std", "class_names")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class SpecError(DefectlensError):
    """A model spec (spec.json, a checkpoint's or ONNX graph's metadata) breaks the schema."""


@dataclass(frozen=True)
class ModelSpec:
    """Input contract and decision settings of one trained model.

    Attributes:
        arch: registry name of the backbone (see ``defectlens.models.list_models()``).
        input_size: side of the square input in pixels.
        in_channels: 1 (grayscale) or 3 (RGB).
        mean, std: per-channel normalisation applied *inside* the model to inputs in [0, 1].
        interpolation: resize filter used by preprocessing (``bilinear``, ``bicubic``...).
        resize: resize policy; ``squash`` resizes the whole frame to the square input.
        class_names: output order of the classifier.
        positive_class: for binary tasks, the class that counts as "defect" (threshold applies to it).
        threshold: decision threshold on the calibrated positive-class probability (binary only).
        temperature: calibration temperature applied to logits before softmax.
        tta: test-time augmentation inside the network: ``none``, ``flips`` or ``dihedral`` (logits
            averaged over 1, 4 or 8 flipped/rotated views of the input).
        illumination: ``none``, or ``standardize``: inside the network, each image is first brought to
            the training images' mean brightness and contrast (see :data:`ILLUMINATION_MODES`).
    """

    arch: str
    input_size: int = 224
    in_channels: int = 3
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bilinear"
    resize: str = "squash"
    class_names: tuple[str, ...] = ()
    positive_class: str | None = None
    threshold: float | None = None
    temperature: float = 1.0
    tta: str = "none"
    illumination: str = "none"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def positive_index(self) -> int | None:
        if self.positive_class is None:
            return None
        return self.class_names.index(self.positive_class)

    def replace(self, **changes: Any) -> ModelSpec:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean"], d["std"], d["class_names"] = list(self.mean), list(self.std), list(self.class_names)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def check(self) -> ModelSpec:
        """This spec, after checking it against the schema (see :func:`spec_problems`).

        Raises:
            SpecError: naming every field that is wrong.
        """
        problems = spec_problems(self.to_dict())
        if problems:
            raise SpecError(f"invalid model spec: {'; '.join(problems)}")
        return self

    @classmethod
    def from_dict(cls, d: object) -> ModelSpec:
        """A spec from untrusted data (a bundle's spec.json, checkpoint or ONNX metadata), checked
        against the schema before anything is built from it.

        Raises:
            SpecError: naming every field that is wrong (unknown keys are ignored).
        """
        problems = spec_problems(d)
        if problems or not isinstance(d, Mapping):
            raise SpecError(f"invalid model spec: {'; '.join(problems)}")
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        for key in ("mean", "std", "class_names"):
            if key in kw:
                kw[key] = tuple(kw[key])
        return cls(**kw)

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise SpecError(f"model spec is not valid JSON ({exc})") from None
        except RecursionError:
            raise SpecError("model spec is nested too deeply to be a spec") from None
        return cls.from_dict(data)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def name_problem(what: str, v: Any) -> str | None:
    """Why ``v`` cannot be a class name (or arch): empty, too long, control characters; None when fine."""
    if not isinstance(v, str) or not v.strip():
        return f"{what} {v!r} must be a non-empty string"
    if _CONTROL.search(v):
        return f"{what} {v[:40]!r} contains control characters"
    if len(v) > MAX_NAME_LENGTH:
        return f"{what} {v[:40]!r}... is longer than {MAX_NAME_LENGTH} characters"
    return None


def _vector_problems(d: Mapping[str, Any], channels: Any) -> list[str]:
    out = []
    for key in ("mean", "std"):
        v = d.get(key)
        if not isinstance(v, (list, tuple)) or not all(_is_number(x) for x in v):
            out.append(f"{key} must be a list of finite numbers, got {v!r:.60}")
        elif channels in (1, 3) and len(v) != channels:
            out.append(f"{key} has {len(v)} values for {channels} channel(s)")
        elif key == "std" and any(x <= 0 for x in v):
            out.append(f"std {list(v)} must be > 0")
    return out


def _class_problems(d: Mapping[str, Any]) -> list[str]:
    names = d.get("class_names")
    if not isinstance(names, (list, tuple)) or not 2 <= len(names) <= MAX_CLASSES:
        return [f"class_names must be a list of 2 to {MAX_CLASSES} names, got {names!r:.60}"]
    out = [p for p in (name_problem("class name", n) for n in names) if p]
    if not out and len(set(names)) != len(names):
        out.append(f"class_names {list(names)} repeat a name")
    pos = d.get("positive_class")
    if pos is not None and pos not in names:
        out.append(f"positive_class {pos!r:.40} is not one of class_names")
    return out


def spec_problems(d: Any) -> list[str]:
    """Every way ``d`` breaks the ModelSpec schema (types and ranges); empty when it is valid.

    The schema: ``arch`` a name; ``input_size`` an integer in 16..2048; ``in_channels`` 1 or 3;
    ``mean``/``std`` one finite number per channel, std > 0; ``class_names`` 2 to 1000 unique
    non-empty names without control characters; ``positive_class`` null or one of them;
    ``threshold`` null or in [0, 1]; ``temperature`` finite in [0.001, 1000]; ``tta``, ``interpolation``,
    ``resize`` and ``illumination`` one of :data:`TTA_VIEWS`, :data:`INTERPOLATIONS`, :data:`RESIZE_MODES`,
    :data:`ILLUMINATION_MODES`.
    """
    if not isinstance(d, Mapping):
        return [f"expected an object of spec fields, got {type(d).__name__}"]
    missing = [k for k in _REQUIRED if k not in d]
    if missing:
        return [f"missing field(s) {', '.join(missing)}"]
    out = [p for p in [name_problem("arch", d["arch"])] if p]
    lo, hi = INPUT_SIZE_RANGE
    if not _is_int(d["input_size"]) or not lo <= d["input_size"] <= hi:
        out.append(f"input_size {d['input_size']!r:.40} must be an integer in {lo}..{hi}")
    if not _is_int(d["in_channels"]) or d["in_channels"] not in (1, 3):
        out.append(f"in_channels {d['in_channels']!r:.40} must be 1 or 3")
    out += _vector_problems(d, d["in_channels"])
    out += _class_problems(d)
    threshold = d.get("threshold")
    if threshold is not None and (not _is_number(threshold) or not 0.0 <= threshold <= 1.0):
        out.append(f"threshold {threshold!r:.40} must be null or a number in [0, 1]")
    t, (tlo, thi) = d.get("temperature", 1.0), TEMPERATURE_RANGE
    if not _is_number(t) or not tlo <= t <= thi:
        out.append(f"temperature {t!r:.40} must be a finite number in [{tlo:g}, {thi:g}]")
    for key, allowed, default in (
        ("tta", tuple(TTA_VIEWS), "none"),
        ("interpolation", INTERPOLATIONS, "bilinear"),
        ("resize", RESIZE_MODES, "squash"),
        ("illumination", ILLUMINATION_MODES, "none"),
    ):
        if d.get(key, default) not in allowed:
            out.append(f"{key} {d.get(key)!r:.40} must be one of {', '.join(allowed)}")
    if not isinstance(d.get("extra", {}), Mapping):
        out.append("extra must be an object")
    return out
