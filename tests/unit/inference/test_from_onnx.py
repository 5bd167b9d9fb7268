"""Plain ONNX files: defectlens graphs read their embedded spec; foreign graphs get the spec's normalisation."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import torch

from defectlens.core.errors import DefectlensError
from defectlens.core.spec import ModelSpec
from defectlens.inference.predictor import Predictor


def test_an_exported_graph_brings_its_own_spec(bundle):
    onnx = zipfile.ZipFile(bundle).read("model.onnx")
    p = Predictor.from_onnx(onnx)
    assert p.spec.class_names == ("ok", "defect") and not p.has_torch_weights
    x = np.random.default_rng(0).integers(0, 255, (2, 1, 32, 32), dtype=np.uint8)
    assert np.allclose(p.logits(x), Predictor.load(bundle).logits(x), atol=1e-5)
    with pytest.raises(DefectlensError, match="cannot load this model"):
        Predictor.from_onnx(b"not onnx", name="x.onnx")


def test_a_foreign_graph_needs_a_spec_and_gets_its_normalisation():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2)
    )
    buf = io.BytesIO()
    torch.onnx.export(net.eval(), (torch.rand(1, 3, 16, 16),), buf, dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "n"}})  # fmt: skip
    with pytest.raises(DefectlensError, match="carries no defectlens spec"):
        Predictor.from_onnx(buf.getvalue())
    spec = ModelSpec(arch="foreign", input_size=16, in_channels=3, class_names=("good", "bad"))
    p = Predictor.from_onnx(buf.getvalue(), spec)
    x = np.random.default_rng(1).integers(0, 255, (2, 3, 16, 16), dtype=np.uint8)
    mean, std = np.array(spec.mean).reshape(1, 3, 1, 1), np.array(spec.std).reshape(1, 3, 1, 1)
    expected = net(torch.from_numpy(((x / 255.0 - mean) / std).astype(np.float32))).detach().numpy()
    assert np.allclose(p.logits(x), expected, atol=1e-5)
