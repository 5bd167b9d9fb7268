"""Run settings: frozen dataclasses, read from and written to YAML.

A :class:`TrainConfig` is everything :func:`defectlens.training.train` needs; it is resolved once
(recipe YAML, then command-line overrides) and written into every run folder as ``config.yaml``,
so each result traces back to the exact settings that produced it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from defectlens.core.anomaly import (
    IMAGE_SCORE_CHOICES,
    PATCH_PADDING_CHOICES,
    PATCH_STRIDE_CHOICES,
    STRIDE16_STAGE_CHOICES,
    TASKS,
)
from defectlens.core.decision import THRESHOLD_METHODS
from defectlens.core.errors import DefectlensError
from defectlens.core.spec import CACHE_VIEWS, ILLUMINATION_MODES, TTA_VIEWS

AUGMENT_LEVELS = ("none", "flips", "light", "standard", "strong", "line")
#: Augmentations the cached frozen stages can hold (computed once per cached copy).
CACHEABLE_AUGMENT = ("none", "flips", "line")
BALANCE_MODES = ("weighted", "sampler", "none")
CHANNELS = (1, 3)
DEVICES = ("auto", "cpu", "cuda")

#: The fixed choices of each setting, for validation and for the command line's --help.
CHOICES: dict[str, tuple[Any, ...]] = {
    "augment": AUGMENT_LEVELS,
    "balance": BALANCE_MODES,
    "channels": CHANNELS,
    "device": DEVICES,
    "tta": tuple(TTA_VIEWS),
    "cache_variants": tuple(CACHE_VIEWS),
    "threshold_method": THRESHOLD_METHODS,
    "illumination": ILLUMINATION_MODES,
    "task": TASKS,
    "patch_strides": PATCH_STRIDE_CHOICES,
    "patch_padding": PATCH_PADDING_CHOICES,
    "stride16_stage": STRIDE16_STAGE_CHOICES,
    "image_score": IMAGE_SCORE_CHOICES,
}


_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (float, int),
    "bool": (bool,),
    "str | None": (str, type(None)),
    "int | None": (int, type(None)),
}


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run.

    Attributes:
        task: ``classify`` (a classifier of the dataset's labelled classes) or ``anomaly`` (PatchCore fitted on
            the normal class only; the other classes, when present, are used for validation and test only).
        data: dataset folder (``manifest.csv`` + ``dataset.json``) with train/val/test splits.
        model: registry name of the backbone.
        pretrained: start from ImageNet weights (offline).
        channels: 1 (grayscale) or 3 (RGB) model input.
        input_size: square input side; ``None`` takes the backbone's default.
        epochs: maximum number of epochs.
        batch_size: images per optimisation step (per process under DDP).
        lr: peak learning rate of the head (AdamW, linear warmup then cosine decay).
        backbone_lr_scale: the backbone's learning rate is ``lr * backbone_lr_scale``.
        weight_decay: AdamW weight decay.
        warmup_epochs: linear warmup length in epochs (fractions allowed).
        label_smoothing: cross-entropy label smoothing.
        dropout: dropout before the last linear layer.
        augment: ``none``, ``flips`` (flips and rot90 only), ``light``, ``standard``, ``strong``, or ``line``
            (flips and rot90 plus random pose, lighting, focus, noise and JPEG drift, as on a line).
        rot90: allow 90-degree rotations and vertical flips (parts without a fixed orientation).
        balance: class imbalance handling: ``weighted`` loss, balanced ``sampler`` or ``none``.
        freeze_backbone: train only the head; features are computed once when ``augment`` is none.
        freeze_stages: freeze the first N backbone stages, the stem being stage 0 (saves backward compute).
        cache_frozen: compute the frozen stages' output once for every flip/rotation of each training
            image and train the upper stages on it (needs ``freeze_stages`` > 0 and augment none, flips
            or line; with line each cached copy is also drawn with its own random drift).
        cache_variants: how many flips/rotations are cached per image with ``augment: flips`` or ``line``: 8 (all),
            4 (identity, both flips, 180-degree rotation) or 2 (identity, horizontal flip).
        soft_label: binary only: a metadata field holding each training image's probability of being
            the positive class (ELPV: the experts' defect probability 0, 1/3, 2/3, 1); the loss then
            targets that probability instead of the hard label. Validation and test keep hard labels.
        tta: test-time augmentation built into the final model (``none``, ``flips``: 4 mirrored views,
            ``dihedral``: all 8 flips/rotations): logits are averaged over the views in evaluation,
            calibration, threshold choice and the exported ONNX graph; costs that many forward passes.
        illumination: ``none``, or ``standardize``: each image's brightness and contrast are brought to
            those typical of the training images inside the network (and its exported graph), so a lamp
            that ages or an exposure that drifts changes nothing the model sees; free with cached stages.
        patience: early stopping after this many epochs without a better validation macro-F1 (0: off).
        seed: seed of every random generator; CPU runs with the same seed are bit-identical.
        threshold_method: how the binary operating threshold is chosen on validation (f1, recall, cost).
        target_recall: defect recall target for ``threshold_method=recall``.
        cost_fn: cost of a missed defect for ``threshold_method=cost``.
        cost_fp: cost of a false alarm for ``threshold_method=cost``.
        out: parent folder of run folders.
        name: run name (the folder is ``<out>/<name>-<YYYYmmdd-HHMMSS>``); defaults to data + model.
        workers: processes that decode and resize images into the in-memory cache.
        threads: torch CPU threads (``None``: torch's default).
        evaluate: evaluate the best checkpoint on every split at the end (metrics.json, report.html).
        device: ``auto``, ``cpu`` or ``cuda``.
        normal: anomaly mode: the class of good parts (default: the one named good, ok or normal).
        bank_size: anomaly mode: rows of the memory bank (its latency and size grow with it).
        max_patches: anomaly mode: patch features the coreset is chosen from (a memory budget: times the
            feature length times 4 bytes).
        false_alarm_rate: anomaly mode: the share of normal parts the threshold may flag when validation holds
            no defect image (the threshold is then set on held-out normal images alone).
        position_norm: anomaly mode: score each patch against what normal parts score at the same place
            (mean and spread of the training images' leave-one-out patch scores), so a place that is busy
            on every good part (a textured background, an edge) no longer outscores a small defect.
        position_floor: anomaly mode: the smallest spread a place is divided by, as a multiple of the median
            spread over places (1: busy places damped, quiet ones never amplified; a large value such as 1e6
            divides every place alike, so only the mean is subtracted).
        patch_strides: anomaly mode: the backbone strides whose features describe each 8x8-pixel patch: ``8,16``
            (mid-level, the paper's choice, the default) or ``4,8,16`` (the finer stride-4 features too: for
            small defects such as pinholes; about a sixth more distance work for Lite0).
        patch_padding: anomaly mode: the border of each tap's 3x3 average: ``valid`` (the neighbours that exist,
            the default) or ``zeros`` (the zero padding counted, as anomalib pools: border patches shrink toward
            zero, so only the bank's border rows match them).
        stride16_stage: anomaly mode: the stride-16 features a patch takes: ``last`` (the last stride-16 block, the
            default) or ``first`` (the end of the first stride-16 stage: the backbone stops there, so the
            convolutions and the distance product cost less; Lite0: 80 numbers instead of 112).
        image_score: anomaly mode: an image's score: ``map`` (the largest value of its smoothed anomaly map: a lone
            noisy patch counts for less than a defect spanning several; the default) or ``patch`` (its largest
            patch score, the paper's).
        roi: anomaly mode: the inspection region: unset (the whole frame), ``circle`` (the disc inscribed in the
            model's square input: a round part centred by its fixture), or a mask image drawn on a frame (white:
            inspected); the bank is filled from its patches and only they score an image.
    """

    data: str = ""
    model: str = "efficientnet_lite0"
    pretrained: bool = True
    channels: int = 3
    input_size: int | None = None
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    backbone_lr_scale: float = 1.0
    weight_decay: float = 0.01
    warmup_epochs: float = 0.5
    label_smoothing: float = 0.1
    dropout: float = 0.2
    augment: str = "standard"
    rot90: bool = True
    balance: str = "weighted"
    freeze_backbone: bool = False
    freeze_stages: int = 0
    cache_frozen: bool = False
    cache_variants: int = 8
    soft_label: str | None = None
    tta: str = "none"
    illumination: str = "none"
    patience: int = 5
    seed: int = 0
    threshold_method: str = "f1"
    target_recall: float = 0.99
    cost_fn: float = 10.0
    cost_fp: float = 1.0
    out: str = "runs"
    name: str | None = None
    workers: int = 2
    threads: int | None = None
    evaluate: bool = True
    device: str = "auto"
    task: str = "classify"
    normal: str | None = None
    bank_size: int = 4096
    max_patches: int = 100_000
    false_alarm_rate: float = 0.01
    position_norm: bool = True
    position_floor: float = 1.0
    patch_strides: str = PATCH_STRIDE_CHOICES[0]
    patch_padding: str = PATCH_PADDING_CHOICES[0]
    stride16_stage: str = STRIDE16_STAGE_CHOICES[0]
    image_score: str = IMAGE_SCORE_CHOICES[0]
    roi: str | None = None

    def __post_init__(self) -> None:
        self._check_types()
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                shown = ", ".join(map(str, allowed))
                raise DefectlensError(f"{name} must be one of {shown}, got {getattr(self, name)!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise DefectlensError(f"epochs and batch_size must be >= 1, got {self.epochs} and {self.batch_size}")
        if self.lr <= 0:
            raise DefectlensError(f"lr must be positive, got {self.lr}")
        if self.cache_frozen and (
            self.freeze_stages < 1 or self.freeze_backbone or self.augment not in CACHEABLE_AUGMENT
        ):
            raise DefectlensError(
                "cache_frozen needs freeze_stages >= 1, no freeze_backbone, and augment 'none', 'flips' or 'line' "
                f"(got freeze_stages={self.freeze_stages}, augment={self.augment!r})"
            )
        self._check_ranges()

    def _check_types(self) -> None:
        """Each value has its field's type (YAML can hold ``epochs: ten``); ints are accepted as floats."""
        for f in fields(self):
            value, kinds = getattr(self, f.name), _TYPES[str(f.type)]
            ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
            if not ok:
                expected = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
                raise DefectlensError(f"{f.name} must be {expected}, got {value!r} ({type(value).__name__})")

    def _check_ranges(self) -> None:
        checks = (
            ("label_smoothing", 0.0 <= self.label_smoothing < 1.0, "in [0, 1)"),
            ("dropout", 0.0 <= self.dropout < 1.0, "in [0, 1)"),
            ("input_size", self.input_size is None or 16 <= self.input_size <= 2048, "between 16 and 2048 pixels"),
            ("target_recall", 0.0 < self.target_recall <= 1.0, "in (0, 1]"),
            ("patience", self.patience >= 0, ">= 0 (0 turns early stopping off)"),
            ("seed", self.seed >= 0, ">= 0"),
            ("freeze_stages", self.freeze_stages >= 0, ">= 0"),
            ("workers", self.workers >= 1, ">= 1"),
            ("threads", self.threads is None or self.threads >= 1, ">= 1"),
            ("warmup_epochs", self.warmup_epochs >= 0, ">= 0"),
            ("weight_decay", self.weight_decay >= 0, ">= 0"),
            ("backbone_lr_scale", self.backbone_lr_scale >= 0, ">= 0"),
            ("cost_fn", self.cost_fn >= 0 and self.cost_fp >= 0, ">= 0 (and so must cost_fp)"),
            ("bank_size", 1 <= self.bank_size <= 1_000_000, "between 1 and 1,000,000"),
            ("max_patches", self.max_patches >= self.bank_size, ">= bank_size"),
            ("false_alarm_rate", 0.0 < self.false_alarm_rate < 0.5, "in (0, 0.5)"),
            ("position_floor", 0.0 < self.position_floor < float("inf"), "> 0 and finite (a multiple of the median)"),
            ("roi", self.roi is None or bool(self.roi.strip()), "'circle' or a mask image's path"),
        )
        for name, ok, rule in checks:
            if not ok:
                raise DefectlensError(f"{name} must be {rule}, got {getattr(self, name)!r}")

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied; ``None`` values are ignored (unset CLI options)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source: str = "config") -> TrainConfig:
        """Build from a mapping, refusing unknown keys (a typo must not be silently ignored)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise DefectlensError(
                f"{source}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**d)

    def to_yaml(self, path: str | Path | None = None) -> str:
        """YAML text of the config, also written to ``path`` when given."""
        import yaml

        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        """Read a recipe; raises :class:`DefectlensError` naming the file when it is missing or malformed."""
        import yaml

        path = Path(path)
        if not path.is_file():
            raise DefectlensError(f"{path}: config file not found")
        try:
            d = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise DefectlensError(f"{path}: not valid YAML ({exc})") from None
        if not isinstance(d, dict):
            raise DefectlensError(f"{path}: expected a mapping of settings, got {type(d).__name__}")
        return cls.from_dict(d, source=str(path))
