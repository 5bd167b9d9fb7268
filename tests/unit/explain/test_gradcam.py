"""Grad-CAM: overlay at the image size, a heatmap that is not constant, binary/multi-class, L/RGB."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from defectlens.core.errors import DefectlensError
from defectlens.explain.gradcam import explain
from defectlens.inference.predictor import Predictor
from defectlens.models import create_model, default_spec


def _predictor(in_channels, classes):
    torch.manual_seed(0)
    spec = default_spec("mobilenet_v3_small", in_channels=in_channels, input_size=64, class_names=classes)
    model = create_model("mobilenet_v3_small", num_classes=len(classes), in_channels=in_channels, input_size=64)
    return Predictor.from_model(model, spec)


@pytest.mark.parametrize(("in_channels", "classes"), [(1, ("ok", "defect")), (3, ("crack", "pit", "scratch"))])
def test_heatmap_and_overlay(in_channels, classes):
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (45, 70, 3), dtype=np.uint8))
    predictor = _predictor(in_channels, classes)
    heatmap, overlay = explain(predictor, image)
    assert heatmap.shape == (45, 70) and heatmap.dtype == np.float32
    assert overlay.size == image.size and overlay.mode == "RGB"
    assert heatmap.std() > 0.01 and heatmap.min() >= 0.0 and heatmap.max() <= 1.0
    other, _ = explain(predictor, image, target=classes[-1])
    assert other.shape == heatmap.shape


def test_bundle_predictor_explains_from_weights(bundle, tmp_path):
    from defectlens.explain.gradcam import save_overlay

    predictor = Predictor.load(bundle)  # ONNX Runtime for inference, safetensors weights for the CAM
    path = tmp_path / "gray.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (30, 50), dtype=np.uint8), mode="L").save(path)
    out = save_overlay(predictor, path, tmp_path / "cam.png")
    with Image.open(out) as img:
        assert img.size == (50, 30)
    with pytest.raises(DefectlensError, match="unknown target"):
        explain(predictor, path, target="nope")
