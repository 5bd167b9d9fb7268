"""Loading the inspector's model: a ``.dlens`` bundle, a run folder, or a plain ``.onnx`` file.

A bundle or run brings its :class:`ModelSpec` (classes, positive class, input size, channels, resize
mode, normalisation, temperature, threshold), so nobody matches preprocessing by hand. A plain ONNX
file uses the spec ``defectlens export`` embeds in its metadata; one without a spec is refused until
the advanced panel describes it (:class:`Advanced`). The same panel can override a bundle's settings;
the overridden fields are listed so the window can mark them. Every model is probed once with a
blank batch, so a wrong channel count or input size is reported at load time, not on the first image.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from defectlens.core import spec as spec_module
from defectlens.core.bundle import is_bundle, read_bundle
from defectlens.core.errors import DefectlensError
from defectlens.core.profile import GateMode
from defectlens.core.spec import ModelSpec
from defectlens.data import images
from defectlens.inference.predictor import Predictor

#: Resize policies the advanced panel offers; :func:`supported_resize` says which preprocessing implements.
RESIZE_CHOICES = ("squash", "center_crop")
#: Channel choices of the advanced panel, by the name the panel shows.
CHANNELS = {"gray": 1, "RGB": 3}
#: Costs of a missed defect and of a false alarm when the model's training config does not say.
DEFAULT_COSTS = (10.0, 1.0)
#: The spec fields the advanced panel can change (and the "overridden" marker lists).
OVERRIDABLE = ("class_names", "in_channels", "input_size", "mean", "std", "resize")


@dataclass(frozen=True)
class Advanced:
    """The advanced panel: how to feed a plain ONNX graph, or overrides of a bundle's spec.

    Every field left ``None`` keeps the model's own value. ``swap_classes`` reverses the class order
    (for a graph whose outputs are in the other order than its names).
    """

    class_names: tuple[str, ...] | None = None
    in_channels: int | None = None
    input_size: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    resize: str | None = None
    swap_classes: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Advanced:
        """Overrides from the settings file; raises DefectlensError for a value of the wrong type."""

        def each(key: str, conv: Any) -> Any:
            value = data.get(key)
            return None if value is None else tuple(conv(v) for v in value)

        def one(key: str, conv: Any) -> Any:
            value = data.get(key)
            return None if value is None else conv(value)

        try:
            return cls(
                class_names=each("class_names", str),
                in_channels=one("in_channels", int),
                input_size=one("input_size", int),
                mean=each("mean", float),
                std=each("std", float),
                resize=one("resize", str),
                swap_classes=bool(data.get("swap_classes", False)),
            )
        except (TypeError, ValueError) as exc:
            raise DefectlensError(f"advanced settings are malformed ({exc}); set them again in the panel") from None

    @property
    def empty(self) -> bool:
        return self == Advanced()


def supported_resize() -> tuple[str, ...]:
    """Resize policies the preprocessing implements (the spec schema's list, where this version has one)."""
    modes = getattr(spec_module, "RESIZE_MODES", None) or getattr(images, "RESIZE_MODES", None) or ("squash",)
    return tuple(str(m) for m in modes)


def read_class_names(path: str | Path) -> tuple[str, ...]:
    """Class names from a text file: one per line or comma-separated; blank lines and ``#`` comments skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DefectlensError(f"{path}: cannot read class names ({exc})") from None
    lines = [line.split("#", 1)[0] for line in text.splitlines()]
    return tuple(name.strip() for line in lines for name in line.split(",") if name.strip())


def apply_advanced(base: ModelSpec | None, advanced: Advanced) -> ModelSpec:
    """The spec ``advanced`` describes on top of ``base`` (None: a plain ONNX graph without a spec).

    Raises:
        DefectlensError: naming the value that is missing or impossible.
    """
    spec = base or ModelSpec(arch="onnx", mean=(0.0,), std=(1.0,), in_channels=1)
    changes = {k: v for k, v in asdict(advanced).items() if k in OVERRIDABLE and v is not None}
    if base is None:
        missing = [k for k in ("class_names", "in_channels", "input_size") if k not in changes]
        if missing:
            raise DefectlensError(f"this ONNX file carries no spec: give {', '.join(missing)} in the Advanced panel")
        channels = changes["in_channels"]
        changes.setdefault("mean", (0.0,) * channels)
        changes.setdefault("std", (1.0,) * channels)
    spec = spec.replace(**changes)
    if advanced.swap_classes:
        spec = spec.replace(class_names=tuple(reversed(spec.class_names)))
    if spec.positive_class is not None and spec.positive_class not in spec.class_names:
        spec = spec.replace(positive_class=None, threshold=None)
    _validate(spec)
    return spec


def _validate(spec: ModelSpec) -> None:
    names = spec.class_names
    problems = []
    if len(names) < 2 or len(set(names)) != len(names) or not all(names):
        problems.append(f"class names must be 2 or more distinct names, got {list(names)}")
    if spec.in_channels not in CHANNELS.values():
        problems.append(f"channels must be 1 (gray) or 3 (RGB), got {spec.in_channels}")
    if not 8 <= spec.input_size <= 4096:
        problems.append(f"input size must be 8 to 4096 pixels, got {spec.input_size}")
    if len(spec.mean) != spec.in_channels or len(spec.std) != spec.in_channels or min(spec.std, default=0) <= 0:
        problems.append(f"mean/std need {spec.in_channels} value(s) each, std > 0; got {spec.mean} / {spec.std}")
    if spec.resize not in supported_resize():
        problems.append(
            f"resize {spec.resize!r} is not implemented by this defectlens's preprocessing "
            f"(available: {', '.join(supported_resize())})"
        )
    if problems:
        raise DefectlensError("; ".join(problems))


@dataclass(frozen=True)
class LoadedModel:
    """A model ready for the inspector, with where its settings came from.

    Attributes:
        predictor: the one inference path.
        path: the file or folder it was loaded from.
        kind: ``bundle``, ``run`` (folder or checkpoint) or ``onnx``.
        base_spec: the spec the file carries (None for a plain ONNX graph without one).
        overridden: spec fields the advanced panel changed (empty when none).
        costs: (cost of a missed defect, cost of a false alarm) for the expected-cost figure.
    """

    predictor: Predictor
    path: Path
    kind: str
    base_spec: ModelSpec | None
    overridden: tuple[str, ...] = ()
    costs: tuple[float, float] = DEFAULT_COSTS

    @property
    def spec(self) -> ModelSpec:
        return self.predictor.spec

    @property
    def validated_threshold(self) -> float | None:
        """The threshold chosen on validation and stored in the bundle (None when the file has none)."""
        return self.base_spec.threshold if self.base_spec is not None else None

    @property
    def validated_positive(self) -> str | None:
        return self.base_spec.positive_class if self.base_spec is not None else None

    def panel_spec(self, advanced: Advanced | None) -> ModelSpec:
        """What the advanced panel shows: the file's own spec with the typed overrides, before any class swap
        (so applying the panel again gives the same model)."""
        spec = self.base_spec or self.spec
        if advanced is not None:
            changes = {k: getattr(advanced, k) for k in OVERRIDABLE if getattr(advanced, k) is not None}
            spec = spec.replace(**changes)
        return spec

    def gradcam_unavailable(self) -> str | None:
        """Why this model cannot be explained here, or None when it can (:attr:`explain_method` says how)."""
        from defectlens.explain.maps import unavailable

        if self.predictor.cam_method is None and not self.predictor.has_torch_weights:
            why = "overridden settings run the ONNX graph only" if self.overridden else "a plain ONNX file has none"
            return f"Grad-CAM needs the model's torch weights ({why}); open the .dlens bundle"
        return unavailable(self.predictor)

    @property
    def explain_method(self) -> str:
        """How the overlay is made: ``"CAM (onnxruntime)"`` from the graph, or ``"Grad-CAM (torch)"``."""
        from defectlens.explain.maps import GRADCAM

        return self.predictor.cam_method or GRADCAM

    def describe(self) -> str:
        """One line for the window: file, classes, input, and the overridden marker."""
        s = self.spec
        channels = "gray" if s.in_channels == 1 else "RGB"
        text = f"{self.path.name} ({self.kind}): {'/'.join(s.class_names)}, {s.input_size} px {channels}"
        gate = self.predictor.gate
        text += f", gate {gate.mode}" if gate.active else ""
        return text + (f"  [OVERRIDDEN: {', '.join(self.overridden)}]" if self.overridden else "")


def load_model(
    path: str | Path, *, advanced: Advanced | None = None, threads: int | None = None, gate: GateMode = "refuse"
) -> LoadedModel:
    """Load ``path`` for the inspector, applying ``advanced`` overrides when given.

    ``gate`` is the mode of a bundle's gate (``refuse``: a frame the model cannot judge gets no class;
    ``warn``; ``off``); a plain ONNX file, a checkpoint and overridden settings have no gate.

    Raises:
        DefectlensError: saying why the model cannot be used (missing file, no spec, bad overrides,
            a graph that rejects the input the spec describes).
    """
    p = Path(path)
    if not p.exists():
        raise DefectlensError(f"{p}: model not found (give a .dlens bundle, a run folder or an .onnx file)")
    advanced = None if advanced is None or advanced.empty else advanced
    if p.suffix.lower() == ".onnx":
        loaded = _load_onnx(p, advanced, threads)
    elif is_bundle(p):
        loaded = _load_bundle(p, advanced, threads, gate)
    else:
        if advanced is not None:
            raise DefectlensError(
                f"{p}: settings can be overridden on a bundle only; export it with 'defectlens export'"
            )
        predictor = Predictor.load(p, threads=threads, gate=gate)
        loaded = LoadedModel(predictor, p, "run", predictor.spec, costs=_costs(predictor.meta))
    _probe(loaded.predictor)
    return loaded


def _load_onnx(p: Path, advanced: Advanced | None, threads: int | None) -> LoadedModel:
    data = p.read_bytes()
    base: ModelSpec | None = None
    try:
        predictor = Predictor.from_onnx(data, threads=threads, name=p.name)
        base = predictor.spec
    except DefectlensError as exc:
        if advanced is None:
            raise DefectlensError(f"{exc} (open the Advanced panel)") from None
    if advanced is None:
        return LoadedModel(predictor, p, "onnx", base)
    spec = apply_advanced(base, advanced)
    predictor = Predictor.from_onnx(data, spec=spec, threads=threads, name=p.name)
    return LoadedModel(predictor, p, "onnx", base, overridden=_changed(base, spec))


def _load_bundle(p: Path, advanced: Advanced | None, threads: int | None, gate: GateMode) -> LoadedModel:
    base = Predictor.load(p, threads=threads, gate=gate)
    costs = _costs(base.meta)
    if advanced is None:
        return LoadedModel(base, p, "bundle", base.spec, costs=costs)
    spec = apply_advanced(base.spec, advanced)
    changed = _changed(base.spec, spec)
    if not changed:
        return LoadedModel(base, p, "bundle", base.spec, costs=costs)
    predictor = Predictor.from_onnx(read_bundle(p).onnx, spec=spec, threads=threads, name=p.name)
    return LoadedModel(predictor, p, "bundle", base.spec, overridden=changed, costs=costs)


def _changed(base: ModelSpec | None, spec: ModelSpec) -> tuple[str, ...]:
    if base is None:
        return ()  # nothing to override: the panel *is* the spec
    return tuple(k for k in (*OVERRIDABLE, "positive_class") if getattr(base, k) != getattr(spec, k))


def _costs(meta: dict[str, Any]) -> tuple[float, float]:
    config = meta.get("training_config") or meta.get("config") or {}
    try:
        return float(config.get("cost_fn", DEFAULT_COSTS[0])), float(config.get("cost_fp", DEFAULT_COSTS[1]))
    except (TypeError, ValueError, AttributeError):
        return DEFAULT_COSTS


def _probe(predictor: Predictor) -> None:
    """Run one blank image through the graph: a shape mismatch is a load error, said in the window."""
    s = predictor.spec
    try:
        out = predictor.logits(np.zeros((1, s.in_channels, s.input_size, s.input_size), np.uint8))
    except Exception as exc:  # the runtime's own error types differ; any failure here means "wrong spec"
        raise DefectlensError(
            f"the model rejects a {s.in_channels}-channel {s.input_size}x{s.input_size} input "
            f"({type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}); check channels and size"
        ) from None
    if out.ndim != 2 or out.shape[1] != s.num_classes:
        raise DefectlensError(
            f"the model gives {out.shape[-1]} outputs but {s.num_classes} class names are set "
            f"({', '.join(s.class_names)}); fix the class names"
        )
