"""The model registry: named backbones registered by decorator, looked up by name.

As in torchvision's ``register_model``/``get_model``, the registry imports no architecture: each
builder in :mod:`defectlens.models.zoo` registers itself with :func:`register_model`, and
``defectlens.models`` imports the zoo. Looking up an entry and describing its input
(:func:`default_spec`) needs no torch.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from defectlens.core.errors import DefectlensError
from defectlens.core.spec import IMAGENET_MEAN, IMAGENET_STD, ModelSpec

if TYPE_CHECKING:
    from torch import nn

# (features, num_features) built for a given input size, pretrained or not
Builder = Callable[..., "tuple[nn.Module, int]"]


@dataclass(frozen=True)
class ModelEntry:
    """One registered backbone: its builder and the input it was trained on."""

    name: str
    build: Builder
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    pretrained: str  # where the ImageNet weights come from, for humans ("" = none)
    description: str
    flatten_head: bool = False  # simple_cnn: Flatten + Dense head instead of global pooling


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str,
    *,
    input_size: int,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
    pretrained: str = "",
    description: str = "",
    flatten_head: bool = False,
) -> Callable[[Builder], Builder]:
    """Decorator adding a backbone builder ``(*, pretrained, input_size) -> (features, channels)``.

    Raises:
        ValueError: if the name is already registered.
    """

    def add(build: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = ModelEntry(name, build, input_size, mean, std, pretrained, description, flatten_head)
        return build

    return add


def list_models() -> list[str]:
    """Names of all registered backbones, sorted."""
    return sorted(_REGISTRY)


def get_entry(name: str) -> ModelEntry:
    """The registered entry of ``name``; an unknown name gets the closest known names suggested."""
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list_models(), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise DefectlensError(f"unknown model {name!r}; {hint}choose one of: {', '.join(list_models())}") from None


def default_spec(
    name: str, *, in_channels: int = 3, input_size: int | None = None, class_names: tuple[str, ...] = ()
) -> ModelSpec:
    """The ModelSpec a backbone expects: its input size and normalisation, for 1 or 3 channels."""
    entry = get_entry(name)
    mean, std = entry.mean, entry.std
    if in_channels == 1:
        mean, std = (sum(mean) / len(mean),), (sum(std) / len(std),)
    elif in_channels != 3:
        raise DefectlensError(f"in_channels must be 1 (grayscale) or 3 (RGB), got {in_channels}")
    return ModelSpec(
        arch=name,
        input_size=input_size or entry.input_size,
        in_channels=in_channels,
        mean=mean,
        std=std,
        class_names=tuple(class_names),
    )
