"""Loading the inspector's model: bundle spec taken as is, plain ONNX refused until described, overrides."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from defectlens.core.bundle import read_bundle
from defectlens.core.errors import DefectlensError
from defectlens.gui.model import Advanced, apply_advanced, load_model, read_class_names, supported_resize


@pytest.fixture
def plain_onnx(bundle: Path, tmp_path: Path) -> Path:
    """The bundle's graph with the defectlens spec stripped from its metadata: an ONNX file from elsewhere."""
    import onnx

    model = onnx.load_from_string(read_bundle(bundle).members["model.onnx"])
    del model.metadata_props[:]
    path = tmp_path / "foreign.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def test_a_bundle_brings_its_whole_spec(bundle):
    loaded = load_model(bundle)
    spec = read_bundle(bundle).spec
    assert loaded.kind == "bundle" and loaded.spec == spec and loaded.overridden == ()
    assert loaded.spec.class_names == ("ok", "defect") and loaded.spec.in_channels == 1
    assert loaded.validated_threshold == spec.threshold == 0.5
    assert loaded.validated_positive == "defect"
    assert loaded.gradcam_unavailable() is None
    assert "OVERRIDDEN" not in loaded.describe()


def test_a_run_folder_loads_with_torch(run_dir):
    loaded = load_model(run_dir)
    assert loaded.kind == "run" and loaded.predictor.backend == "torch"
    assert loaded.spec.class_names == ("ok", "defect")


def test_a_missing_model_says_so(tmp_path):
    with pytest.raises(DefectlensError, match="model not found"):
        load_model(tmp_path / "nope.dlens")


def test_plain_onnx_without_spec_is_refused_with_a_message(plain_onnx):
    with pytest.raises(DefectlensError, match=r"carries no defectlens spec.*Advanced panel"):
        load_model(plain_onnx)


def test_plain_onnx_is_accepted_with_an_advanced_spec(plain_onnx, bundle):
    advanced = Advanced(class_names=("ok", "defect"), in_channels=1, input_size=32)
    loaded = load_model(plain_onnx, advanced=advanced)
    assert loaded.kind == "onnx" and loaded.base_spec is None and loaded.overridden == ()
    assert loaded.spec.class_names == ("ok", "defect") and loaded.spec.positive_class is None
    assert "torch weights" in (loaded.gradcam_unavailable() or "")
    # the same graph as the bundle's, so the same probabilities for the same image
    reference = load_model(bundle).predictor
    image = np.random.default_rng(0).integers(0, 255, (2, 1, 32, 32), dtype=np.uint8)
    np.testing.assert_allclose(loaded.predictor.logits(image), reference.logits(image), atol=1e-6)


def test_advanced_spec_is_checked_against_the_graph(plain_onnx):
    # the inspector's own probe, or the Predictor's check of the graph against the spec, names the mismatch
    with pytest.raises(DefectlensError, match=r"gives 2 outputs but 3 class names|expects .*output \[N, 3\]"):
        load_model(plain_onnx, advanced=Advanced(class_names=("a", "b", "c"), in_channels=1, input_size=32))
    with pytest.raises(DefectlensError, match=r"rejects a 3-channel 32x32 input|expects input \[N, 3, 32, 32\]"):
        load_model(plain_onnx, advanced=Advanced(class_names=("a", "b"), in_channels=3, input_size=32))
    with pytest.raises(DefectlensError, match="give input_size"):
        load_model(plain_onnx, advanced=Advanced(class_names=("a", "b"), in_channels=1))


def test_a_bundle_can_be_overridden_with_a_visible_marker(bundle):
    base = load_model(bundle)
    loaded = load_model(bundle, advanced=Advanced(swap_classes=True))
    assert loaded.spec.class_names == ("defect", "ok")
    assert loaded.spec.positive_class == "defect" and loaded.spec.positive_index == 0
    assert loaded.overridden == ("class_names",)
    assert "OVERRIDDEN: class_names" in loaded.describe()
    assert loaded.validated_threshold == 0.5  # the bundle's own, for the restore button
    assert "overridden settings" in (loaded.gradcam_unavailable() or "")
    # the panel shows the names before the swap, so applying it again gives the same model
    assert loaded.panel_spec(Advanced(swap_classes=True)).class_names == ("ok", "defect")
    image = np.random.default_rng(0).integers(0, 255, (1, 1, 32, 32), dtype=np.uint8)
    p_base = base.predictor.probabilities(base.predictor.logits(image))[0]
    p_swapped = loaded.predictor.probabilities(loaded.predictor.logits(image))[0]
    # the graph's outputs are unchanged; only the names attached to them moved
    np.testing.assert_allclose(p_swapped, p_base, atol=1e-6)


def test_an_override_equal_to_the_bundle_is_no_override(bundle):
    loaded = load_model(bundle, advanced=Advanced(class_names=("ok", "defect"), input_size=32))
    assert loaded.overridden == () and loaded.predictor.has_torch_weights


def test_center_crop_is_refused_until_preprocessing_implements_it(bundle):
    if "center_crop" in supported_resize():
        pytest.skip("preprocessing implements center_crop now")
    with pytest.raises(DefectlensError, match="resize 'center_crop' is not implemented"):
        load_model(bundle, advanced=Advanced(resize="center_crop"))


def test_impossible_advanced_values_are_named():
    with pytest.raises(DefectlensError, match="2 or more distinct names"):
        apply_advanced(None, Advanced(class_names=("a", "a"), in_channels=1, input_size=32))
    with pytest.raises(DefectlensError, match="mean/std need 3"):
        apply_advanced(None, Advanced(class_names=("a", "b"), in_channels=3, input_size=32, mean=(0.5,)))
    with pytest.raises(DefectlensError, match="malformed"):
        Advanced.from_dict({"input_size": "large"})
    assert Advanced.from_dict(Advanced(class_names=("a", "b"), mean=(0.5,)).to_dict()) == Advanced(
        class_names=("a", "b"), mean=(0.5,)
    )


def test_class_names_from_a_text_file(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_text("# classes of line 3\nok\n\ncrack, porosity\n", encoding="utf-8")
    assert read_class_names(path) == ("ok", "crack", "porosity")
    with pytest.raises(DefectlensError, match="cannot read class names"):
        read_class_names(tmp_path / "missing.txt")


def test_a_pooled_head_bundle_is_explained_by_its_cam_and_says_so(cam_bundle, bundle):
    loaded = load_model(cam_bundle)
    assert loaded.gradcam_unavailable() is None
    assert loaded.explain_method == "CAM (onnxruntime-int8)"  # the INT8 graph the export made the default
    assert load_model(bundle).explain_method == "Grad-CAM (torch)"  # a dense head: torch
