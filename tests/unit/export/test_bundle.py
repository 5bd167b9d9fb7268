"""Bundle export: round trip, parity refusal, tamper refusal, spec in ONNX metadata."""

from __future__ import annotations

import json
import warnings
import zipfile

import numpy as np
import pytest
from PIL import Image

from defectlens.core.bundle import FORMAT, ONNX_FILE, SPEC_FILE, WEIGHTS_FILE, read_bundle
from defectlens.core.errors import DefectlensError
from defectlens.export import ParityError, export_bundle
from defectlens.inference.predictor import Predictor


def _image(path, size=(40, 30), seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0]), dtype=np.uint8)).save(path)
    return path


def test_bundle_round_trip_matches_checkpoint(run_dir, bundle, tmp_path):
    img = _image(tmp_path / "a.png")
    from_ckpt = Predictor.load(run_dir)
    from_onnx = Predictor.load(bundle)
    from_weights = Predictor.load(bundle, backend="torch")
    assert from_onnx.backend == "onnxruntime" and from_weights.backend == "torch"
    p0 = from_ckpt.predict(img).probabilities
    for other in (from_onnx, from_weights):
        p = other.predict(img).probabilities
        assert p.keys() == p0.keys()
        assert max(abs(p[k] - p0[k]) for k in p) < 1e-5
    assert from_onnx.model_id == read_bundle(bundle).model_id == from_weights.model_id
    assert len(from_onnx.model_id) == 64


def test_bundle_contents_and_spec_json(bundle):
    with zipfile.ZipFile(bundle) as zf:
        names = set(zf.namelist())
        meta = json.loads(zf.read(SPEC_FILE))
        onnx_bytes = zf.read(ONNX_FILE)
    assert names == {SPEC_FILE, ONNX_FILE, WEIGHTS_FILE}
    assert meta["format"] == FORMAT
    assert set(meta["versions"]) >= {"defectlens", "torch", "onnx", "onnxruntime"}
    assert meta["parity"]["max_abs_prob_diff"] <= 1e-4
    assert meta["parity"]["inputs"] == "synthetic" and "SYNTHETIC" in meta["parity"]["warning"]
    # the evaluated validation figures and the training data's fingerprint, not the last epoch's row
    assert meta["metrics"] == {"split": "val", "evaluated": True, "n": 16, "accuracy": 0.75, "macro_f1": 0.7}
    assert meta["data_fingerprint"] == "f" * 64
    assert meta["created"] and meta["spec"]["class_names"] == ["ok", "defect"]
    import onnx

    proto = onnx.load_from_string(onnx_bytes)
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["defectlens.spec"])["class_names"] == ["ok", "defect"]
    assert proto.opset_import[0].version >= 17
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch


@pytest.mark.parametrize("member", [SPEC_FILE, ONNX_FILE, WEIGHTS_FILE])
def test_tampered_bundle_is_refused(bundle, tmp_path, member):
    bad = tmp_path / "bad.dlens"
    with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(bad, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name == member:
                data = (
                    data.replace(b'"threshold": 0.5', b'"threshold": 0.1')
                    if name == SPEC_FILE
                    else data[:-8] + b"\0" * 8
                )
            dst.writestr(name, data)
    with pytest.raises(DefectlensError, match="refused"):
        Predictor.load(bad)


def test_extra_member_and_wrong_format_refused(bundle, tmp_path):
    extra = tmp_path / "extra.dlens"
    with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(extra, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, src.read(name))
        dst.writestr("evil.pkl", b"\x80\x04K\x01.")
    with pytest.raises(DefectlensError, match="unexpected"):
        read_bundle(extra)
    (tmp_path / "x.dlens").write_bytes(b"not a zip")
    with pytest.raises(DefectlensError, match="not a zip"):
        read_bundle(tmp_path / "x.dlens")


def test_pickled_checkpoint_is_refused(tmp_path):
    import torch

    from defectlens.models import create_model

    path = tmp_path / "pickled.pt"
    torch.save({"model": create_model("simple_cnn", num_classes=2, input_size=32)}, path)  # a pickled module
    with pytest.raises(DefectlensError, match="refused"):
        Predictor.load(path)


def test_forced_parity_mismatch_writes_nothing(run_dir, tmp_path, monkeypatch):
    import torch

    import defectlens.export.onnx_export as onnx_export

    real = onnx_export.to_onnx

    def perturbed(model, spec, **kw):
        import copy

        other = copy.deepcopy(model)
        with torch.no_grad():
            other.head.linear.bias[0] += 0.5  # a graph that no longer matches the weights
        return real(other, spec, **kw)

    monkeypatch.setattr(onnx_export, "to_onnx", perturbed)
    out = tmp_path / "m.dlens"
    with warnings.catch_warnings(), pytest.raises(ParityError, match="differ"):
        warnings.simplefilter("ignore")
        export_bundle(run_dir, out)
    assert not out.exists()


def test_parity_on_real_validation_images(tiny_dataset, tmp_path):
    from tests.helpers import make_checkpoint

    run = make_checkpoint(tmp_path / "run", size=48)
    result = export_bundle(run, tmp_path / "m.dlens", data=tiny_dataset, int8=True)
    parity = result.meta["parity"]
    assert parity["inputs"] == "validation" and parity["images"] == 16 and "warning" not in parity
    q = result.meta["int8"]
    assert {"agreement", "accuracy_fp32", "accuracy_int8", "accepted"} <= set(q)
    assert read_bundle(result.path).meta["int8"] == q
