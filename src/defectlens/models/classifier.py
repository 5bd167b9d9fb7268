"""The network every registered backbone becomes, and the one way to build or rebuild it.

Every model is ``Classifier(features, head)``: input in [0, 1] is normalised *inside* the network
(mean/std buffers), so the exported ONNX graph carries its own preprocessing; ``features`` ends in
the last convolutional feature map, which is also the Grad-CAM target layer for every backbone.
:func:`create_model` builds a fresh one from the registry; :func:`model_from_state` and
:func:`load_checkpoint` rebuild a trained one from its weights and :class:`ModelSpec`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from defectlens.core.checkpoint import read_checkpoint
from defectlens.core.errors import DefectlensError
from defectlens.core.spec import ILLUMINATION_MODES, TTA_VIEWS, ModelSpec
from defectlens.models.registry import default_spec, get_entry


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th of the 8 flips/rotations of a square batch (k in 0..7; k >= 4 adds a horizontal flip)."""
    y = torch.rot90(x, k % 4, dims=(-2, -1))
    return y.flip(-1) if k >= 4 else y


class Classifier(nn.Module):
    """Normalisation + backbone features + classification head.

    Args:
        features: module mapping a normalised image batch to a feature map (N, F, h, w).
        head: module mapping the feature map to logits.
        mean, std: per-channel normalisation for inputs in [0, 1].
        tta: test-time augmentation in eval mode (a key of :data:`~defectlens.core.spec.TTA_VIEWS`).
        illumination: ``standardize`` maps each image's mean and standard deviation to the reference
            ones (``illumination_ref``, set from the training images) before the normalisation.
    """

    mean: torch.Tensor
    std: torch.Tensor
    illumination_ref: torch.Tensor

    def __init__(
        self,
        features: nn.Module,
        head: nn.Module,
        *,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        tta: str = "none",
        illumination: str = "none",
    ):
        super().__init__()
        if illumination not in ILLUMINATION_MODES:
            raise DefectlensError(f"illumination must be one of {', '.join(ILLUMINATION_MODES)}, got {illumination!r}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.illumination = illumination
        if illumination == "standardize":  # only then: older weights keep their exact set of tensors
            self.register_buffer("illumination_ref", torch.tensor([0.5, 0.25], dtype=torch.float32))
        self.features = features
        self.head = head
        self.tta = tta

    @property
    def tta(self) -> str:
        """Test-time augmentation in eval mode: ``none``, ``flips`` (4 views) or ``dihedral`` (8 views)."""
        return self._tta

    @tta.setter
    def tta(self, mode: str) -> None:
        if mode not in TTA_VIEWS:
            raise DefectlensError(f"tta must be one of {', '.join(TTA_VIEWS)}, got {mode!r}")
        self._tta = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits; in eval mode with ``tta`` set, the mean logits over the flipped/rotated views.

        The views are stacked into one batch, so the exported ONNX graph carries the averaging too.
        """
        if self.training or self._tta == "none":
            return self.forward_single(x)
        ks = TTA_VIEWS[self._tta]
        views = torch.cat([dihedral(x, k) for k in ks])
        return self.forward_single(views).view(len(ks), x.shape[0], -1).mean(dim=0)

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """:meth:`forward`'s logits and the untransformed image's pooled feature vectors, from one pass.

        The vectors are :meth:`forward_features` (the penultimate features) and, for a backbone that
        offers one (``forward_tapped``), the spatial mean of a middle block's output. They come from the
        first view (the identity: every entry of ``TTA_VIEWS`` starts with it) of the same backbone pass
        as the logits, so the gate's feature-density score costs no extra pass through the network.
        """
        logits, feats, _ = self.forward_outputs(x)
        return logits, feats

    def forward_outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        """:meth:`forward_with_features`, and the untransformed image's last feature map (N, F, h, w).

        The map is what Grad-CAM differentiates at (:attr:`target_layer`) for exactly the view it
        explains (:meth:`forward_single`), so with a pooled head it gives the class activation map.
        """
        ks = (0,) if self.training else TTA_VIEWS[self._tta]
        views = x if len(ks) == 1 else torch.cat([dihedral(x, k) for k in ks])
        tapped = getattr(self.features, "forward_tapped", None)
        fmap, tap = (
            tapped(self.normalize(views)) if tapped is not None else (self.features(self.normalize(views)), None)
        )
        logits = self.head(fmap)
        if len(ks) > 1:
            logits = logits.view(len(ks), x.shape[0], -1).mean(dim=0)
        n = x.shape[0]
        first = fmap[:n]
        feats = [first.mean(dim=(2, 3)) if isinstance(self.head, PooledHead) else torch.flatten(first, 1)]
        if tap is not None:
            feats.append(tap[:n].mean(dim=(2, 3)))
        return logits, feats, first

    def cam_head(self) -> tuple[str, str] | None:
        """The state-dict names of the linear layer's weight and bias when Grad-CAM at :attr:`target_layer`
        equals the class activation map, else None.

        That holds for :class:`PooledHead` (global average pooling, dropout, linear): d(logit_c)/dA_k is
        W_ck / (h w) at every position, so Grad-CAM's channel weights are the head's row c up to a
        positive factor, which the map's normalisation removes. The dense head mixes positions
        through a hidden layer and a ReLU: no such identity.
        """
        if not isinstance(self.head, PooledHead):
            return None
        index = len(self.head) - 1
        return f"head.{index}.weight", f"head.{index}.bias"

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Input in [0, 1] to what the backbone expects: illumination standardised (when on), then mean/std.

        Standardising divides by the image's own standard deviation (plus 1e-5, so a flat image maps to
        the reference mean instead of dividing by zero); the exported graph carries this step, so every
        runtime applies it.
        """
        if self.illumination == "standardize":
            dims = tuple(range(1, x.ndim))
            centred = x - x.mean(dim=dims, keepdim=True)
            spread = centred.square().mean(dim=dims, keepdim=True).sqrt() + 1e-5
            x = centred / spread * self.illumination_ref[1] + self.illumination_ref[0]
        return (x - self.mean) / self.std

    @torch.no_grad()
    def set_illumination_reference(self, images: torch.Tensor) -> tuple[float, float]:
        """Set the reference brightness and contrast to the typical ones of ``images`` (uint8 NCHW):
        the mean of the per-image means and of the per-image standard deviations, in [0, 1]."""
        x = images.float().div(255.0).flatten(1)
        ref = torch.stack([x.mean(dim=1).mean(), x.std(dim=1, unbiased=False).mean()])
        self.illumination_ref.copy_(ref)
        return float(ref[0]), float(ref[1])

    def forward_single(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of ``x`` as it is (no test-time augmentation): what Grad-CAM explains."""
        return self.head(self.features(self.normalize(x)))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled (or flattened) features before the final linear layer, for frozen-backbone probes."""
        fmap = self.features(self.normalize(x))
        if isinstance(self.head, PooledHead):
            return fmap.mean(dim=(2, 3))
        return torch.flatten(fmap, 1)

    def head_on_features(self) -> nn.Module:
        """The part of the head after pooling: maps :meth:`forward_features` output to logits."""
        head: Any = self.head
        return nn.Sequential(*list(head)[2:]) if isinstance(head, PooledHead) else head

    @property
    def target_layer(self) -> nn.Module:
        """The layer whose activations Grad-CAM explains (the last feature map)."""
        return self.features


class SingleView(nn.Module):
    """A Classifier without test-time augmentation, as a module: what Grad-CAM differentiates (the
    image as it is, not the flipped views the exported graph averages)."""

    def __init__(self, model: Classifier):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_single(x)


class PooledHead(nn.Sequential):
    """Global average pool, dropout, linear."""

    def __init__(self, num_features: int, num_classes: int, dropout: float):
        super().__init__(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Dropout(dropout), nn.Linear(num_features, num_classes)
        )

    @property
    def linear(self) -> nn.Linear:
        return self[-1]  # type: ignore[return-value]


class DenseHead(nn.Sequential):
    """Keras-tutorial head: Flatten, Dense(128) + ReLU + Dropout, Dense(classes)."""

    def __init__(self, num_features: int, num_classes: int, dropout: float):
        super().__init__(
            nn.Flatten(1),
            nn.Linear(num_features, 128),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(128, num_classes),
        )

    @property
    def linear(self) -> nn.Linear:
        return self[-1]  # type: ignore[return-value]


def create_model(
    name: str,
    *,
    num_classes: int,
    in_channels: int = 3,
    pretrained: bool = False,
    input_size: int | None = None,
    dropout: float = 0.2,
    illumination: str = "none",
) -> Classifier:
    """Build a registered backbone with a fresh head.

    Args:
        name: registry name (see :func:`~defectlens.models.registry.list_models`).
        num_classes: outputs of the head.
        in_channels: 1 for grayscale (pretrained first-conv weights are summed over RGB, which keeps
            their response to a gray image identical) or 3 for RGB.
        pretrained: load ImageNet weights, offline; raises a clear error when they cannot be had.
        input_size: side of the square input (only ``simple_cnn``'s dense head depends on it).
        dropout: dropout before the last linear layer.
        illumination: ``none`` or ``standardize`` (see :class:`Classifier`).
    """
    entry = get_entry(name)
    if num_classes < 2:
        raise DefectlensError(f"num_classes must be at least 2, got {num_classes}")
    if pretrained and not entry.pretrained:
        raise DefectlensError(f"model {name!r} has no pretrained weights; use pretrained=False")
    spec = default_spec(name, in_channels=in_channels, input_size=input_size)
    features, num_features = entry.build(pretrained=pretrained, input_size=spec.input_size)
    if in_channels == 1:
        _to_grayscale(features)
    if entry.flatten_head:
        with torch.no_grad():  # the dense head's width depends on the input size
            fmap = features(torch.zeros(1, in_channels, spec.input_size, spec.input_size))
        head: nn.Module = DenseHead(int(fmap[0].numel()), num_classes, dropout)
    else:
        head = PooledHead(num_features, num_classes, dropout)
    return Classifier(features, head, mean=spec.mean, std=spec.std, illumination=illumination)


def _to_grayscale(features: nn.Module) -> None:
    """Turn the first 3-channel convolution into a 1-channel one by summing its weights over RGB."""
    for module in features.modules():
        if isinstance(module, nn.Conv2d) and module.in_channels == 3:
            with torch.no_grad():
                module.weight = nn.Parameter(module.weight.sum(dim=1, keepdim=True))
            module.in_channels = 1
            return
    raise RuntimeError("no 3-channel input convolution found")


#: Rebuilders of models whose spec names another task than classification (``spec.extra["task"]``);
#: each registers itself (:mod:`defectlens.models.patchcore`), so this module imports none of them.
_REBUILDERS: dict[str, Callable[[dict[str, torch.Tensor], ModelSpec], Classifier]] = {}


def register_rebuilder(
    task: str,
) -> Callable[[Callable[[dict[str, torch.Tensor], ModelSpec], Classifier]], Callable[..., Classifier]]:
    """Decorator: ``model_from_state`` rebuilds specs of ``task`` with the decorated function."""

    def add(fn: Callable[[dict[str, torch.Tensor], ModelSpec], Classifier]) -> Callable[..., Classifier]:
        if task in _REBUILDERS:
            raise ValueError(f"a rebuilder for task {task!r} is already registered")
        _REBUILDERS[task] = fn
        return fn

    return add


def model_from_state(state_dict: dict[str, torch.Tensor], spec: ModelSpec) -> Classifier:
    """Rebuild the network described by ``spec`` and load ``state_dict`` into it (eval mode)."""
    task = spec.extra.get("task")
    if task not in (None, "classify"):
        if task not in _REBUILDERS:
            raise DefectlensError(
                f"this model's task {task!r:.40} is not one this release knows ({', '.join(_REBUILDERS)})"
            )
        return _REBUILDERS[task](state_dict, spec)
    model = create_model(
        spec.arch,
        num_classes=spec.num_classes,
        in_channels=spec.in_channels,
        input_size=spec.input_size,
        pretrained=False,
        illumination=spec.illumination,
    )
    model.load_state_dict(state_dict, strict=True)
    model.tta = spec.tta
    return model.eval()


def load_checkpoint(path: str | Path) -> tuple[Classifier, ModelSpec, dict[str, Any]]:
    """Model (eval mode), its spec, and the whole checkpoint payload."""
    payload = read_checkpoint(path)
    spec = ModelSpec.from_dict(payload["spec"])
    broken = [k for k, v in payload["state_dict"].items() if torch.is_floating_point(v) and not torch.isfinite(v).all()]
    if broken:  # a diverged run: every verdict of this model would be noise
        raise DefectlensError(
            f"{path}: refused: the model's weights are not finite numbers (NaN or infinite in {len(broken)} tensors, "
            f"e.g. {broken[0]}); its training diverged: train again with a lower learning rate (--lr)"
        )
    return model_from_state(payload["state_dict"], spec), spec, payload


@torch.inference_mode()
def forward_batches(
    module: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    *,
    batch_size: int = 32,
    prepare: Callable[[torch.Tensor], torch.Tensor] | None = None,
    eval_mode: nn.Module | None = None,
) -> torch.Tensor:
    """``module`` applied to ``inputs`` in batches (inference mode), concatenated on the CPU.

    Args:
        module: the network, or a bound method of it such as ``forward_features``.
        inputs: a tensor whose first axis is the sample axis.
        batch_size: samples per forward pass.
        prepare: applied to each batch first (device move, dtype, memory format).
        eval_mode: a module put in eval mode for the passes and restored to its mode afterwards.
    """
    was_training = eval_mode.training if eval_mode is not None else False
    if eval_mode is not None:
        eval_mode.eval()
    try:
        out = []
        for i in range(0, len(inputs), batch_size):
            x = inputs[i : i + batch_size]
            out.append(module(prepare(x) if prepare is not None else x).float().cpu())
        return torch.cat(out) if out else torch.zeros(0)
    finally:
        if eval_mode is not None:
            eval_mode.train(was_training)
