"""The class activation map from the graph's feature output: equal to torch Grad-CAM, on every graph.

A pooled-head bundle (``cam_bundle``: MobileNetV3-Small with test-time flips, a gate and an INT8 graph)
carries the feature map as its last graph output and names the head's weight in ``spec.json``; a dense
head (``bundle``: simple_cnn) and older bundles explain through torch.
"""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from defectlens.core.bundle import CAM_OUTPUT, SPEC_FILE, read_bundle, write_bundle
from defectlens.core.errors import DefectlensError
from defectlens.explain import gradcam, maps
from defectlens.export.cam import CAM_TOLERANCE
from defectlens.inference.predictor import Predictor


def _image(seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (45, 70), dtype=np.uint8), mode="L")


def test_export_records_the_cam_and_its_parity_with_gradcam(cam_bundle):
    meta = read_bundle(cam_bundle).meta
    assert meta["cam"]["output"] == CAM_OUTPUT and meta["cam"]["weight"] == "head.3.weight"
    check = meta["parity"]["cam"]
    assert check["ok"] and check["images"] == 8
    assert check["max_abs_diff"] <= CAM_TOLERANCE and check["min_correlation"] > 0.9999
    assert all(c["ok"] for c in check["backends"].values())  # ONNX Runtime and OpenVINO alike
    assert meta["int8"]["cam"]["min_correlation"] >= 0.9 and meta["int8"]["cam"]["ok"]


def test_graph_outputs_logits_ood_then_the_feature_map(cam_bundle):
    import onnxruntime as ort

    bundle = read_bundle(cam_bundle)
    for member in ("model.onnx", "model.int8.onnx"):
        session = ort.InferenceSession(bundle.members[member], providers=["CPUExecutionProvider"])
        assert [o.name for o in session.get_outputs()] == ["logits", "ood", CAM_OUTPUT]


@pytest.mark.parametrize("target", [None, "ok", "defect"])
def test_predictor_explains_as_torch_gradcam_does(cam_bundle, target):
    predictor = Predictor.load(cam_bundle, precision="fp32", threads=1)
    assert predictor.cam_method == "CAM (onnxruntime)"
    image = _image()
    found = predictor.explain(image, target=target)
    torch_map, index, probs = gradcam.gradcam_map(predictor, image, target=target)
    assert found.heatmap.shape == (45, 70) and found.heatmap.dtype == np.float32
    assert found.index == index
    np.testing.assert_allclose(found.probabilities, probs, atol=1e-4)
    np.testing.assert_allclose(found.heatmap, torch_map, atol=2e-3)  # the export's 1e-3, after one more resize


def test_openvino_and_int8_graphs_explain_with_their_own_feature_output(cam_bundle):
    image = _image(1)
    fp32 = Predictor.load(cam_bundle, backend="onnx", precision="fp32", threads=1).explain(image, target="defect")
    vino = Predictor.load(cam_bundle, backend="openvino", precision="fp32", threads=1)
    assert vino.cam_method == "CAM (openvino)"
    np.testing.assert_allclose(vino.explain(image, target="defect").heatmap, fp32.heatmap, atol=1e-3)
    int8 = Predictor.load(cam_bundle, precision="int8", threads=1)
    assert int8.cam_method == "CAM (onnxruntime-int8)"
    quantised = int8.explain(image, target="defect").heatmap
    assert np.corrcoef(quantised.ravel(), fp32.heatmap.ravel())[0, 1] > 0.9


def test_surfaces_take_the_cam_and_name_it(cam_bundle, tmp_path):
    predictor = Predictor.load(cam_bundle, precision="fp32", threads=1)
    found = maps.save_overlay(predictor, _image(), tmp_path / "o.png", target="defect")
    assert found.method == maps.method(predictor) == "CAM (onnxruntime)"
    with Image.open(tmp_path / "o.png") as img:
        assert img.size == (70, 45) and img.mode == "RGB"
    with pytest.raises(DefectlensError, match="unknown target"):
        predictor.explain(_image(), target="nope")


def test_a_dense_head_has_no_cam_and_explains_through_torch(bundle):
    meta = read_bundle(bundle).meta
    assert meta["cam"] is None and "cam" not in meta["parity"]
    predictor = Predictor.load(bundle)
    assert predictor.cam_method is None and maps.method(predictor) == maps.GRADCAM
    with pytest.raises(DefectlensError, match="no feature output"):
        predictor.explain(_image())
    assert maps.explain(predictor, _image()).method == "Grad-CAM (torch)"


def _rewritten(src, out, **changes):
    bundle = read_bundle(src)
    meta = {k: v for k, v in bundle.meta.items() if k not in ("model_id", "files", "format")}
    write_bundle(out, members=bundle.members, meta={**meta, **changes})
    return out


def test_a_bundle_from_before_the_cam_still_explains_through_torch(cam_bundle, tmp_path):
    old = _rewritten(cam_bundle, tmp_path / "old.dlens", cam=None)
    predictor = Predictor.load(old)
    assert predictor.cam_method is None
    found = maps.explain(predictor, _image(), target="defect")
    assert found.method == "Grad-CAM (torch)" and found.heatmap.shape == (45, 70)


def test_a_cam_entry_naming_no_head_tensor_is_refused(cam_bundle, tmp_path):
    entry = {**read_bundle(cam_bundle).meta["cam"], "weight": "features.0.nope"}
    crafted = _rewritten(cam_bundle, tmp_path / "crafted.dlens", cam=entry)
    with pytest.raises(DefectlensError, match=r"cam entry is invalid.*no float tensor"):
        read_bundle(crafted)
    with zipfile.ZipFile(crafted) as zf:
        assert json.loads(zf.read(SPEC_FILE))["cam"]["weight"] == "features.0.nope"


def test_the_overlay_colours_are_pytorch_grad_cams():
    cv2 = pytest.importorskip("cv2")
    from pytorch_grad_cam.utils.image import show_cam_on_image

    from defectlens.explain.overlay import jet, overlay

    ramp = np.linspace(0, 1, 256, dtype=np.float32)[None]
    ref = cv2.cvtColor(cv2.applyColorMap(np.uint8(255 * ramp), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    assert np.abs(jet(ramp).astype(int) - ref).max() <= 1
    image = _image(3)
    heat = np.random.default_rng(0).random((45, 70)).astype(np.float32)
    rgb = np.asarray(image.convert("RGB"), np.float32) / 255.0
    theirs = show_cam_on_image(rgb, heat, use_rgb=True, image_weight=0.55)
    assert np.abs(np.asarray(overlay(image, heat)).astype(int) - theirs).max() <= 2
