"""ModelSpec: everything needed to feed a model and read its output, travelling with the weights.

The spec is stored in every checkpoint, in the bundle's ``spec.json`` and in the ONNX
``metadata_props``; every transform is built from it, so no caller re-types mean/std or class names.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

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

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        for key in ("mean", "std", "class_names"):
            if key in kw:
                kw[key] = tuple(kw[key])
        return cls(**kw)

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        return cls.from_dict(json.loads(text))
