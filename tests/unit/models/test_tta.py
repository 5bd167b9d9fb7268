"""Test-time augmentation inside the Classifier: averaging, invariance, checkpoints, ONNX, Grad-CAM."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from defectlens.core.errors import DefectlensError
from defectlens.explain.gradcam import explain
from defectlens.models import create_model, default_spec, dihedral
from tests.helpers import make_checkpoint


def _model(tta="none", seed=0):
    torch.manual_seed(seed)
    model = create_model("simple_cnn", num_classes=2, in_channels=1, input_size=32).eval()
    model.tta = tta
    return model


def test_dihedral_tta_is_the_mean_over_the_eight_views():
    model = _model("dihedral")
    x = torch.rand(3, 1, 32, 32)
    with torch.inference_mode():
        expected = torch.stack([model.forward_single(dihedral(x, k)) for k in range(8)]).mean(0)
        assert torch.allclose(model(x), expected, atol=1e-6)
        assert not torch.allclose(model(x), model.forward_single(x), atol=1e-4)


@pytest.mark.parametrize(("tta", "ks"), [("dihedral", range(8)), ("flips", (0, 2, 4, 6))])
def test_tta_makes_the_model_invariant_to_its_views(tta, ks):
    model = _model(tta)
    x = torch.rand(2, 1, 32, 32)
    with torch.inference_mode():
        ref = model(x)
        for k in ks:
            assert torch.allclose(model(dihedral(x, k)), ref, atol=1e-5), k


def test_training_mode_ignores_tta():
    model = _model("dihedral").train()
    x = torch.rand(2, 1, 32, 32)
    torch.manual_seed(1)
    a = model(x)
    torch.manual_seed(1)
    b = model.forward_single(x)
    assert torch.equal(a, b)


def test_unknown_tta_is_a_clear_error():
    with pytest.raises(DefectlensError, match=r"tta must be one of .*'sideways'"):
        _model("sideways")


def test_checkpoint_restores_tta_and_onnx_bundle_carries_it(tmp_path):
    from defectlens.export import export_bundle
    from defectlens.inference.predictor import Predictor
    from defectlens.models import load_checkpoint

    run = make_checkpoint(tmp_path / "run", tta="dihedral")
    model, spec, _ = load_checkpoint(run / "best.pt")
    assert spec.tta == "dihedral" and model.tta == "dihedral"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # synthetic parity inputs
        bundle = export_bundle(run, tmp_path / "m.dlens").path
    onnx = Predictor.load(bundle, backend="onnx")
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40), dtype=np.uint8), mode="L")
    rotated = image.transpose(Image.Transpose.ROTATE_90)
    x = torch.from_numpy(onnx.preprocess(image)[None].astype(np.float32) / 255.0)
    with torch.inference_mode():
        torch_logits = model(x).numpy()
    np.testing.assert_allclose(onnx.logits(onnx.preprocess(image)[None]), torch_logits, atol=1e-4)
    # the exported graph averages the views: a rotated part gets the same score
    rot, ref = onnx.predict(rotated).probabilities, onnx.predict(image).probabilities
    np.testing.assert_allclose(list(rot.values()), list(ref.values()), atol=1e-4)  # resize rounding


def test_gradcam_explains_the_unaugmented_view():
    from defectlens.inference.predictor import Predictor

    spec = default_spec("mobilenet_v3_small", in_channels=1, input_size=64, class_names=("ok", "defect"))
    image = Image.fromarray(np.random.default_rng(2).integers(0, 256, (50, 60), dtype=np.uint8), mode="L")
    plain = Predictor.from_model(_mobilenet("none"), spec)
    tta = Predictor.from_model(_mobilenet("dihedral"), spec.replace(tta="dihedral"))
    heat_plain, _ = explain(plain, image, target="defect")
    heat_tta, _ = explain(tta, image, target="defect")
    np.testing.assert_allclose(heat_tta, heat_plain, atol=1e-5)


def _mobilenet(tta):
    torch.manual_seed(0)
    model = create_model("mobilenet_v3_small", num_classes=2, in_channels=1, input_size=64).eval()
    model.tta = tta
    return model
