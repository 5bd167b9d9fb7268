"""Illumination standardisation inside the network: exposure, brightness and contrast drift cancel."""

from __future__ import annotations

import pytest
import torch

from defectlens.core.errors import DefectlensError
from defectlens.models import create_model, default_spec, model_from_state


def _model(illumination: str = "standardize"):
    torch.manual_seed(0)
    return create_model("simple_cnn", num_classes=2, in_channels=1, input_size=32, illumination=illumination).eval()


def test_exposure_brightness_and_contrast_cancel():
    model = _model()
    x = torch.rand(4, 1, 32, 32) * 0.6 + 0.2  # room to brighten and darken without clipping
    with torch.inference_mode():
        base = model(x)
        for changed in (x * 0.8, x * 1.2, x + 0.1, x - 0.1, (x - x.mean()) * 1.3 + x.mean()):
            assert torch.allclose(model(changed), base, atol=1e-4)
    plain = _model("none")
    with torch.inference_mode():
        assert not torch.allclose(plain(x * 0.8), plain(x), atol=1e-3)  # without it, exposure moves the logits


def test_reference_comes_from_training_images_and_travels_in_the_weights():
    model = _model()
    images = torch.full((3, 1, 8, 8), 100, dtype=torch.uint8)
    images[:, :, :4] = 200
    mean, std = model.set_illumination_reference(images)
    assert mean == pytest.approx(150 / 255) and std == pytest.approx(50 / 255)
    spec = default_spec("simple_cnn", in_channels=1, input_size=32, class_names=("ok", "defect"))
    rebuilt = model_from_state(model.state_dict(), spec.replace(illumination="standardize"))
    assert torch.equal(rebuilt.illumination_ref, model.illumination_ref)
    with pytest.raises(RuntimeError, match="illumination_ref"):  # weights of one kind never load as the other
        model_from_state(model.state_dict(), spec)


def test_a_flat_image_stays_finite_and_unknown_modes_are_refused():
    with torch.inference_mode():
        assert torch.isfinite(_model()(torch.full((1, 1, 32, 32), 0.5))).all()
    with pytest.raises(DefectlensError, match="illumination must be one of"):
        _model("auto")
