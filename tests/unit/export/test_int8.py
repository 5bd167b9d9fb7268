"""INT8 at export: calibrated on training images, judged on validation at the stored threshold (not argmax),
shipped opt-in, the default graph only when it loses nothing."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from defectlens.core.bundle import INT8_FILE, ONNX_FILE, read_bundle
from defectlens.core.decision import decide
from defectlens.core.errors import DefectlensError
from defectlens.data.manifest import Manifest
from defectlens.export import export_bundle
from defectlens.export.parity import CheckInputs, check_inputs, compare_int8
from defectlens.inference.backends import installed_runtimes
from defectlens.inference.predictor import Predictor


def _checkpoint(folder, *, threshold, seed=0):
    """A random-init simple_cnn (1 channel, 32 px, ok/defect) deciding "defect" at ``threshold``."""
    import torch

    from defectlens.core.checkpoint import save_checkpoint
    from defectlens.models import create_model, default_spec

    torch.manual_seed(seed)
    spec = default_spec("simple_cnn", in_channels=1, input_size=32, class_names=("ok", "defect"))
    spec = spec.replace(positive_class="defect", threshold=threshold)
    save_checkpoint(folder / "best.pt", create_model("simple_cnn", num_classes=2, in_channels=1, input_size=32), spec)
    return folder


@pytest.fixture(scope="module")
def strict(tiny_dataset, tmp_path_factory):
    """Exported with --int8 at threshold 0.999: nearly every image is called "ok", whatever the argmax says."""
    run = _checkpoint(tmp_path_factory.mktemp("run"), threshold=0.999)
    return export_bundle(run, tmp_path_factory.mktemp("b") / "m.dlens", data=tiny_dataset, int8=True)


def test_int8_is_calibrated_on_training_images_and_judged_on_validation(strict, tiny_dataset):
    q = strict.meta["int8"]
    val = Manifest.read(tiny_dataset).split("val")
    assert q["inputs"] == "validation" and q["images"] == q["labelled"] == len(val) == 16
    assert q["calibration"] == {"split": "train", "images": 48, "method": "MinMax"}
    assert q["threshold"] == 0.999 and set(q["backends"]) == set(installed_runtimes())


def test_accuracy_uses_the_stored_threshold_not_argmax(strict, tiny_dataset):
    fp32 = Predictor.load(strict.path, precision="fp32")
    graph = read_bundle(strict.path).members[ONNX_FILE]
    val = check_inputs(fp32.spec, tiny_dataset, max_images=100)
    probs = fp32.probabilities(fp32.logits(val.images))
    seen = set()
    for t in np.quantile(probs[:, fp32.spec.positive_index], [0.2, 0.5, 0.8]):
        spec = fp32.spec.replace(threshold=float(t))
        expected = np.mean(decide(probs, positive_index=spec.positive_index, threshold=spec.threshold) == val.labels)
        assert compare_int8(graph, graph, spec, val, runtimes=["onnx"])["accuracy_fp32"] == pytest.approx(expected)
        seen.add(round(float(expected), 6))
    assert len(seen) > 1  # the figure moves with the threshold: argmax would not


def test_int8_ships_opt_in_and_is_default_only_when_lossless(strict):
    bundle = read_bundle(strict.path)
    q = bundle.meta["int8"]
    assert INT8_FILE in bundle.members and ONNX_FILE in bundle.members
    lossless = all(c["newly_wrong"] == 0 for c in q["backends"].values())
    assert q["accepted"] is lossless
    assert bundle.meta["default_onnx"] == (INT8_FILE if lossless else ONNX_FILE)
    int8 = Predictor.load(strict.path, backend="onnx", precision="int8")
    assert int8.backend == "onnxruntime-int8"
    assert Predictor.load(strict.path, precision="fp32").backend == "onnxruntime"


def test_the_rule_accepts_a_lossless_graph_and_refuses_one_that_loses(tiny_dataset, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = export_bundle(_checkpoint(tmp_path / "a", threshold=0.5), tmp_path / "a.dlens", data=tiny_dataset)
        b = export_bundle(_checkpoint(tmp_path / "b", threshold=0.5, seed=7), tmp_path / "b.dlens", data=tiny_dataset)
    fp32, other = read_bundle(a.path).members[ONNX_FILE], read_bundle(b.path).members[ONNX_FILE]
    spec = read_bundle(a.path).spec
    val = check_inputs(spec, tiny_dataset, max_images=100)
    same = compare_int8(fp32, fp32, spec, val)
    assert same["accepted"] and same["newly_wrong"] == 0 and same["agreement"] == 1.0
    # the FP32 graph of another model stands in for an INT8 graph that changes decisions
    changed = compare_int8(fp32, other, spec, val)
    assert changed["agreement"] < 1.0 and changed["accepted"] is (changed["newly_wrong"] == 0)
    synthetic = CheckInputs(val.images, np.full(len(val.images), -1), "synthetic")
    assert not compare_int8(fp32, fp32, spec, synthetic)["accepted"]  # nothing to judge it on


def test_int8_needs_a_dataset(run_dir, tmp_path):
    with pytest.raises(DefectlensError, match="--int8 needs the training dataset"):
        export_bundle(run_dir, tmp_path / "m.dlens", int8=True)
    assert not (tmp_path / "m.dlens").exists()


def test_predict_runs_the_graph_its_precision_names(strict, tiny_dataset, capsys):
    """`defectlens predict --precision int8` (which the export message points users to) runs the INT8 graph."""
    import json

    from defectlens.cli import main

    manifest = Manifest.read(tiny_dataset)
    image = manifest.resolve(manifest.split("val")[0])
    printed = {}
    for precision in ("fp32", "int8"):
        assert (
            main(["predict", str(image), "--model", str(strict.path), "--backend", "onnx", "--precision", precision])
            == 0
        )
        printed[precision] = json.loads(capsys.readouterr().out)["probabilities"]
        graph = Predictor.load(strict.path, backend="onnx", precision=precision)
        assert printed[precision] == next(graph.predict_many([str(image)])).probabilities
    assert printed["fp32"] != printed["int8"]  # two graphs, not one graph printed twice
