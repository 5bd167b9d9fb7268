"""Registry, factory, grayscale conversion and offline pretrained weights."""

from __future__ import annotations

import pytest
import torch

from defectlens.core.errors import DefectlensError
from defectlens.models import create_model, default_spec, get_entry, list_models, register_model
from tests.require import import_or_missing


@pytest.fixture(autouse=True)
def _two_threads():
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(old)


def test_registry_raises_on_duplicates():
    entry = get_entry("simple_cnn")
    with pytest.raises(ValueError, match="already registered"):
        register_model(entry.name, input_size=entry.input_size)(entry.build)


def test_unknown_model_suggests_the_closest_name():
    with pytest.raises(DefectlensError, match=r"did you mean 'efficientnet_lite0'"):
        get_entry("efficentnet_lite0")


def test_unknown_model_is_a_clear_error():
    with pytest.raises(DefectlensError, match=r"unknown model 'nope'.*efficientnet_lite0"):
        create_model("nope", num_classes=2)


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("channels", [1, 3])
def test_every_backbone_builds_for_1_and_3_channels(name, channels):
    size = 64
    model = create_model(name, num_classes=3, in_channels=channels, input_size=size, pretrained=False).eval()
    with torch.inference_mode():
        out = model(torch.rand(2, channels, size, size))
        feats = model.forward_features(torch.rand(1, channels, size, size))
    assert out.shape == (2, 3)
    assert feats.ndim == 2
    spec = default_spec(name, in_channels=channels, input_size=size)
    assert len(spec.mean) == len(spec.std) == channels


@pytest.mark.parametrize("name", ["resnet18", "efficientnet_lite0"])
def test_grayscale_first_conv_matches_rgb_on_a_gray_image(name):
    # the same seed gives the same weights; the 1-channel model's first conv is the RGB one summed
    torch.manual_seed(0)
    rgb = create_model(name, num_classes=2, in_channels=3, input_size=64).eval()
    torch.manual_seed(0)
    gray = create_model(name, num_classes=2, in_channels=1, input_size=64).eval()
    # a gray model normalises with the mean of the RGB statistics; give the RGB model the same
    rgb.mean.fill_(float(gray.mean))
    rgb.std.fill_(float(gray.std))
    img = torch.rand(2, 1, 64, 64)
    with torch.inference_mode():
        assert torch.allclose(gray(img), rgb(img.expand(-1, 3, -1, -1)), atol=1e-4)


def test_missing_torchvision_weights_name_the_file_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("DEFECTLENS_OFFLINE", "1")
    with pytest.raises(DefectlensError) as err:
        create_model("resnet18", num_classes=2, pretrained=True)
    message = str(err.value)
    assert "resnet18-" in message and ".pth" in message
    assert str(tmp_path / "hub" / "checkpoints") in message


def test_no_pretrained_weights_for_simple_cnn():
    with pytest.raises(DefectlensError, match="no pretrained weights"):
        create_model("simple_cnn", num_classes=2, pretrained=True)


@pytest.mark.slow
def test_lite0_imagenet_weights_really_load():
    """A logistic-regression probe on pooled Lite0 features of real ELPV cells beats the same probe on a
    randomly initialised Lite0 (cross-validated on a small balanced sample)."""
    import_or_missing("elpv_dataset", flag="EXTRAS", reason="the ELPV cells come with the [train] extra")
    from importlib import resources

    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    from defectlens.data.images import preprocess

    data = resources.files("elpv_dataset").joinpath("data")
    rows = [line.split() for line in data.joinpath("labels.csv").read_text().splitlines()]
    rng = np.random.default_rng(0)
    pos = [r for r in rows if float(r[1]) >= 0.5]
    neg = [r for r in rows if float(r[1]) < 0.5]
    sample = [pos[i] for i in rng.choice(len(pos), 60, replace=False)]
    sample += [neg[i] for i in rng.choice(len(neg), 60, replace=False)]
    y = np.array([float(r[1]) >= 0.5 for r in sample], dtype=int)
    spec = default_spec("efficientnet_lite0", in_channels=1, input_size=128)
    x = torch.from_numpy(np.stack([preprocess(str(data.joinpath(r[0])), spec) for r in sample])).float() / 255

    def probe(pretrained: bool) -> float:
        torch.manual_seed(0)
        model = create_model("efficientnet_lite0", num_classes=2, in_channels=1, input_size=128, pretrained=pretrained)
        with torch.inference_mode():
            feats = model.eval().forward_features(x).numpy()
        clf = LogisticRegression(max_iter=2000, C=0.1)
        return float(cross_val_score(clf, feats, y, cv=4).mean())

    trained, random = probe(True), probe(False)
    assert trained > random + 0.1, (trained, random)
