"""Issue #33, silently wrong: a model whose outputs are not numbers, thresholds that are not
probabilities, strict JSON, specs nested to exhaust the stack, graphs that disagree with their spec
through open dimensions, and a training run that diverges.

A broken model is refused at training, export and load with one line; a NaN that still reaches a row
at run time makes an error row, never a verdict.
"""

from __future__ import annotations

import csv
import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from defectlens.core.bundle import read_bundle
from defectlens.core.errors import DefectlensError
from tests.helpers import LAYOUTS, make_checkpoint, scripted_predictor, write_part
from tests.unit.hardening import corpus as C

NON_FINITE = [float("nan"), float("inf"), float("-inf")]


def _strict_json(text: str):
    def refuse(token: str):
        raise ValueError(f"not JSON: {token}")

    return json.loads(text, parse_constant=refuse)


def _onnx_edit(edit):
    """A bundle edit applied to the parsed model.onnx (then rehashed, as an attacker or a bad tool would)."""

    def apply(meta, members):
        import onnx

        proto = onnx.load_from_string(members["model.onnx"])
        edit(proto, meta)
        members["model.onnx"] = proto.SerializeToString()

    return apply


def _poison_bias(value: float):
    def edit(proto, meta):
        from onnx import numpy_helper

        last = [t for t in proto.graph.initializer if t.name.endswith("bias") and len(t.dims) == 1][-1]
        arr = numpy_helper.to_array(last).copy()
        arr[0] = value
        last.CopyFrom(numpy_helper.from_array(arr, last.name))

    return edit


def _poison_weights(value: float):
    def apply(meta, members):
        from safetensors.numpy import load, save

        tensors = load(members["model.safetensors"])
        name = sorted(k for k in tensors if k.endswith("bias"))[-1]
        tensors[name] = tensors[name].copy()
        tensors[name][0] = value
        members["model.safetensors"] = save(tensors)

    return apply


@pytest.mark.parametrize("value", NON_FINITE, ids=str)
@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_a_bundle_whose_outputs_are_not_finite_is_refused_at_load(value, backend, bundle, tmp_path):
    edit = _onnx_edit(_poison_bias(value)) if backend == "onnx" else _poison_weights(value)
    meta, members = C.bundle_parts(bundle)
    edit(meta, members)
    bad = C.write_crafted(tmp_path / "nan.dlens", meta, members)
    folder = tmp_path / "parts"
    C.good_images(folder)
    result = C.run_cli(
        ["predict", str(folder), "--model", str(bad), "--backend", backend, "--out", str(tmp_path / "o")]
    )
    assert not result.crash and result.code == 2, (result.crash, result.err)
    assert "not finite" in result.err and len(result.err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("value", NON_FINITE, ids=str)
def test_a_diverged_checkpoint_is_refused_at_load_export_and_evaluate(value, tmp_path, tiny_dataset):
    from defectlens.models import load_checkpoint

    run = make_checkpoint(tmp_path / "run", logits=[value, 0.0])  # a bias blown up, as by a diverged run
    with pytest.raises(DefectlensError, match="not finite"):
        load_checkpoint(run / "best.pt")
    image = C.good_images(tmp_path / "parts", n=1)[0]
    for argv in (
        ["predict", str(image), "--model", str(run)],
        ["export", str(run), "--out", str(tmp_path / "m.dlens")],
        ["evaluate", str(run), "--data", str(tiny_dataset), "--out", str(tmp_path / "eval")],
    ):
        result = C.run_cli(argv)
        assert not result.crash and result.code == 2, (argv[0], result.crash, result.err)
        assert "diverged" in result.err and len(result.err.strip().splitlines()) == 1, result.err
    assert not (tmp_path / "m.dlens").exists()


def _nan_for_bright(x: np.ndarray) -> np.ndarray:
    """Logits of a model that breaks (NaN) on bright images and works on the others."""
    logits = np.tile(np.array([0.5, -0.5], np.float32), (len(x), 1))
    logits[x.mean(axis=(1, 2, 3)) > 0.6] = np.nan
    return logits


@pytest.mark.parametrize("bad", [float("nan"), float("inf")], ids=str)
def test_a_non_finite_row_at_run_time_is_an_error_row_never_a_verdict(bad, monkeypatch, tmp_path):
    from defectlens.core.spec import ModelSpec
    from defectlens.inference.predictor import Predictor

    def run(x):
        out = _nan_for_bright(x)
        return np.where(np.isnan(out), bad, out)

    spec = ModelSpec("simple_cnn", 16, 1, (0.5,), (0.25,), class_names=("ok", "defect"), positive_class="defect")
    predictor = Predictor(run, spec.check(), backend="breaks")
    monkeypatch.setattr(Predictor, "load", classmethod(lambda cls, *a, **k: predictor))
    folder = tmp_path / "parts"
    folder.mkdir()
    for i, level in enumerate((10, 250, 30, 240)):
        C.Image.new("L", (16, 16), level).save(folder / f"p{i}.png")
    result = C.run_cli(["predict", str(folder), "--model", "x", "--out", str(tmp_path / "o")])
    assert result.code == 1, result.err
    with (tmp_path / "o" / "predictions.csv").open() as fh:
        rows = {Path(r["file"]).name: r for r in csv.DictReader(fh)}
    assert [rows[f"p{i}.png"]["status"] for i in range(4)] == ["ok", "error", "ok", "error"]
    for broken in (rows["p1.png"], rows["p3.png"]):
        assert broken["prediction"] == "" and "not a finite number" in broken["reason"]
    single = C.run_cli(["predict", str(folder / "p1.png"), "--model", "x"])
    assert single.code == 1 and _strict_json(single.out)["status"] == "error"


_JSON_VALUES = st.recursive(
    st.one_of(st.floats(), st.integers(), st.text(max_size=5), st.none(), st.booleans()),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=4), inner, max_size=4)),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None, database=None)
@given(value=_JSON_VALUES)
def test_json_output_is_strict_json(value):
    from defectlens.cli.output import json_text

    parsed = _strict_json(json_text(value))
    assert isinstance(parsed, type(value)) or value is None or isinstance(value, float)


BAD_THRESHOLDS = [float("nan"), float("inf"), float("-inf"), -0.1, -1e-9, 1.0000001, 7.0, "0.5", True, None]


@pytest.mark.parametrize("threshold", BAD_THRESHOLDS[:-1], ids=repr)
def test_the_library_refuses_a_threshold_that_is_not_a_probability(threshold, tmp_path):
    predictor = scripted_predictor("defect_last")
    image = write_part(tmp_path / "a.png", {"ok": 0.6, "defect": 0.4}, LAYOUTS["defect_last"][0])
    calls = {
        "predict": lambda: predictor.predict(image, threshold=threshold),
        "predict_many": lambda: predictor.predict_many([image], threshold=threshold),  # refused at the call
        "decide": lambda: predictor.decide(np.array([[0.6, 0.4]]), threshold),
    }
    for name, call in calls.items():
        with pytest.raises(DefectlensError, match="threshold") as info:
            call()
        assert repr(threshold) in str(info.value) or str(threshold) in str(info.value), (name, info.value)


@pytest.mark.parametrize("threshold", [0, 0.0, 1, 1.0, 0.4, np.float32(0.41), np.float64(0.5)], ids=repr)
def test_a_threshold_in_range_is_used(threshold, tmp_path):
    predictor = scripted_predictor("defect_last")
    image = write_part(tmp_path / "a.png", {"ok": 0.6, "defect": 0.4}, LAYOUTS["defect_last"][0])
    expected = "defect" if float(threshold) <= 0.4 else "ok"
    assert predictor.predict(image, threshold=threshold).prediction == expected
    assert next(predictor.predict_many([image], threshold=threshold)).prediction == expected


@pytest.mark.parametrize("depth", [2_000, 20_000, 100_000])
@pytest.mark.parametrize("where", ["top", "spec", "spec.extra", "training_config", "files"])
def test_a_deeply_nested_spec_json_is_a_clear_refusal(depth, where, bundle, tmp_path):
    meta, members = C.bundle_parts(bundle)
    marker = '"__deep__"'
    if where == "top":
        meta["deep"] = "__deep__"
    elif where == "spec":
        meta["spec"]["deep"] = "__deep__"
    elif where == "spec.extra":
        meta["spec"]["extra"] = {"deep": "__deep__"}
    elif where == "training_config":
        meta["training_config"] = {"deep": "__deep__"}
    else:
        meta["files"] = "__deep__"
    text = json.dumps(meta).replace(marker, "[" * depth + "1" + "]" * depth, 1)
    path = tmp_path / "deep.dlens"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("spec.json", text)
        for name, data in members.items():
            zf.writestr(name, data)
    with pytest.raises(DefectlensError, match="nested too deeply"):
        read_bundle(path)
    result = C.run_cli(["predict", str(C.good_images(tmp_path / "p", n=1)[0]), "--model", str(path)])
    assert not result.crash and result.code == 2 and "nested too deeply" in result.err, (result.crash, result.err)


def _open_dims(channels: int | None = None, classes: int | None = None):
    """Make every input dimension but the batch, and the output's classes, open (symbolic); then give the
    spec other channels or classes than the graph has."""

    def edit(proto, meta):
        for i, dim in enumerate(proto.graph.input[0].type.tensor_type.shape.dim):
            if i:
                dim.dim_param = f"d{i}"
        proto.graph.output[0].type.tensor_type.shape.dim[1].dim_param = "classes"
        if channels is not None:
            meta["spec"].update(in_channels=channels, mean=[0.5] * channels, std=[0.25] * channels)
        if classes is not None:
            names = [f"c{i}" for i in range(classes)]
            meta["spec"].update(class_names=names, positive_class=None, threshold=None)

    return edit


OPEN_DIM_CASES = {
    "rgb spec, gray graph": _open_dims(channels=3),
    "3 classes": _open_dims(classes=3),
    "5 classes": _open_dims(classes=5),
    "rgb and 4 classes": _open_dims(channels=3, classes=4),
}


@pytest.mark.parametrize("case", sorted(OPEN_DIM_CASES))
def test_open_dimensions_that_disagree_with_the_spec_are_refused_at_load(case, bundle, tmp_path):
    from defectlens.inference.predictor import Predictor

    meta, members = C.bundle_parts(bundle)
    _onnx_edit(OPEN_DIM_CASES[case])(meta, members)
    bad = C.write_crafted(tmp_path / "open.dlens", meta, members)
    with pytest.raises(DefectlensError, match="does not match its spec"):
        Predictor.load(bad, backend="onnx")
    _, members = C.bundle_parts(bundle)
    meta, _ = C.bundle_parts(bundle)
    _onnx_edit(_open_dims())(meta, members)  # open dimensions that agree: loads and predicts
    fine = Predictor.load(C.write_crafted(tmp_path / "fine.dlens", meta, members), backend="onnx")
    assert fine.predict(C.noise()).status == "ok"


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_one_defect_probability_everywhere(layout, monkeypatch, tmp_path):
    from defectlens.core.decision import defect_probability
    from defectlens.inference.predictor import Predictor
    from defectlens.workflows.predict import row_of

    classes, positive, _ = LAYOUTS[layout]
    predictor = scripted_predictor(layout)
    probs = {"defect_last": {"ok": 0.6, "defect": 0.4}, "defect_first": {"defect": 0.4, "ok": 0.6}}.get(
        layout, {"crack": 0.2, "ok": 0.2, "scratch": 0.6}
    )
    image = write_part(tmp_path / "a.png", probs, classes)
    pred = predictor.predict(image)
    expected = None if positive is None else pytest.approx(0.4, abs=1e-6)
    assert pred.defect_probability == expected
    assert defect_probability(pred.probabilities, class_names=classes, positive_class=positive) == expected
    row = row_of(pred, classes, None, positive)
    assert row.get("defect_probability") == (None if positive is None else pytest.approx(0.4, abs=1e-6))
    monkeypatch.setattr(Predictor, "load", classmethod(lambda cls, *a, **k: predictor))
    out = _strict_json(C.run_cli(["predict", str(image), "--model", "x"]).out)
    assert out.get("defect_probability") == expected
    assert math.isfinite(pred.confidence)


@pytest.mark.slow
@pytest.mark.parametrize("lr", ["1e30", "1e12"])
def test_a_diverging_training_run_is_refused_with_one_line(lr, tiny_dataset, tmp_path):
    argv = ["train", "--data", str(tiny_dataset), "--model", "simple_cnn", "--no-pretrained", "--channels", "1",
            "--input-size", "32", "--epochs", "2", "--batch-size", "16", "--workers", "1", "--lr", lr,
            "--out", str(tmp_path / "runs")]  # fmt: skip
    result = C.run_cli(argv)
    assert not result.crash and result.code == 2, (result.crash, result.err[-2000:])
    last = result.err.strip().splitlines()[-1]
    assert last.startswith("defectlens: error: training diverged") and "--lr" in last
    assert not list(Path(tmp_path / "runs").rglob("best.pt"))  # no model saved from it


@pytest.mark.parametrize("bad", NON_FINITE, ids=str)
@pytest.mark.parametrize("split", ["val", "test"])
def test_evaluation_refuses_outputs_that_are_not_finite(bad, split):
    from defectlens.core.spec import ModelSpec
    from defectlens.evaluation.evaluate import SplitScores, evaluate

    spec = ModelSpec("simple_cnn", 32, 1, (0.5,), (0.25,), class_names=("ok", "defect"), positive_class="defect")
    rng = np.random.default_rng(0)
    scores = {s: SplitScores(rng.normal(size=(12, 2)), np.arange(12) % 2, [Path(f"{i}.png") for i in range(12)])
              for s in ("val", "test")}  # fmt: skip
    scores[split].logits[3, 1] = bad
    with pytest.raises(DefectlensError, match=f"not finite numbers .* on 1 of 12 {split} images"):
        evaluate(scores, spec=spec, report=["val", "test"])
