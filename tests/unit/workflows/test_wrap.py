"""``defectlens bundle``: a classifier trained elsewhere (a tiny torch model exported to ONNX by hand, and the same
model as TorchScript) wrapped into a bundle that predict, evaluate and the Inspector run, deciding as torch does."""

from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from defectlens.cli import main
from tests.require import import_or_missing

torch = import_or_missing("torch", flag="EXTRAS", reason="the foreign model is made with torch (the [train] extra)")
import_or_missing("onnx", flag="EXTRAS", reason="wrapping edits the graph with onnx (the [train] extra)")

MEAN, STD = 0.5, 0.25
# the foreign model is made the way other toolkits still ship one: legacy ONNX export and TorchScript
pytestmark = [
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


def foreign_model() -> torch.nn.Module:
    """A gray 32 px classifier as another toolkit would ship it: normalised input in, logits out."""
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 2),
    ).eval()


@pytest.fixture(scope="module")
def foreign(tmp_path_factory) -> tuple[torch.nn.Module, Path, Path]:
    model, folder = foreign_model(), tmp_path_factory.mktemp("foreign")
    onnx_path, script_path = folder / "model.onnx", folder / "model.ts"
    torch.onnx.export(
        model, (torch.zeros(1, 1, 32, 32),), str(onnx_path), input_names=["x"], output_names=["y"],
        dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, dynamo=False,
    )  # fmt: skip
    torch.jit.save(torch.jit.script(model), str(script_path))
    return model, onnx_path, script_path


def images_of(tiny_dataset: Path) -> Path:
    """The class-subfolder image folder (``ok/``, ``defect/``) behind the ``tiny_dataset`` manifest."""
    from defectlens.data.manifest import Manifest

    return Path(Manifest.read(tiny_dataset).info["root"])


def args(model: Path, out: Path, *more: str, flag: str = "--onnx") -> list[str]:
    common = ["--classes", "ok,defect", "--input-size", "32", "--channels", "1", "--mean", str(MEAN), "--std", str(STD)]
    return ["bundle", flag, str(model), *common, "--positive-class", "defect", "--out", str(out), *more]


def torch_logits(model: torch.nn.Module, batch: np.ndarray) -> np.ndarray:
    x = torch.as_tensor(batch, dtype=torch.float32) / 255.0
    with torch.no_grad():
        return model((x - MEAN) / STD).numpy()


def test_wrapped_onnx_decides_as_torch_and_predict_and_evaluate_run(foreign, tiny_dataset, tmp_path, capsys):
    from defectlens.inference.predictor import Predictor

    model, onnx_path, _ = foreign
    folder, bundle = images_of(tiny_dataset), tmp_path / "foreign.dlens"
    assert main(args(onnx_path, bundle, "--calibrate", str(folder))) == 0
    out = capsys.readouterr().out
    assert "wrote" in out and "takes [N, 1, 32, 32] and gives 2 classes (ok, defect)" in out
    assert "calibrated on 80 images: temperature" in out

    predictor = Predictor.load(bundle)
    spec = predictor.spec
    assert (spec.arch, spec.class_names, spec.positive_class) == ("external", ("ok", "defect"), "defect")
    assert spec.threshold is not None and 0 <= spec.threshold <= 1 and spec.temperature > 0
    assert not predictor.meta["parity"]["backends"] and predictor.meta["calibration"]["images"] == 80
    files = sorted(folder.glob("*/*.png"))[::10]
    batch = np.stack([predictor.preprocess(f) for f in files])
    # the wrapper's (x - mean) / std in front of the graph is torch's normalisation: same logits
    np.testing.assert_allclose(predictor.logits(batch), torch_logits(model, batch), atol=1e-5)

    predictions = tmp_path / "predictions"
    assert main(["predict", str(folder), "--model", str(bundle), "--out", str(predictions)]) == 0
    rows = list(csv.DictReader((predictions / "predictions.csv").open()))
    assert len(rows) == 80 and all(r["status"] == "ok" for r in rows)
    assert float(rows[0]["threshold"]) == pytest.approx(spec.threshold)
    assert main(["evaluate", str(bundle), "--data", str(tiny_dataset), "--out", str(tmp_path / "eval")]) == 0
    capsys.readouterr()

    assert main(["bundle", *args(onnx_path, bundle)[1:]]) == 2  # never replaced silently
    assert "--force" in capsys.readouterr().err


def test_torchscript_is_converted_and_the_inspector_opens_the_bundle(foreign, tmp_path, capsys):
    from defectlens.gui.model import load_model
    from defectlens.inference.predictor import Predictor

    model, _, script = foreign
    bundle = tmp_path / "scripted.dlens"
    assert main(args(script, bundle, flag="--torchscript")) == 0
    assert "not calibrated" in capsys.readouterr().out
    predictor = Predictor.load(bundle)
    assert predictor.spec.threshold is None and predictor.spec.temperature == 1.0
    batch = np.random.default_rng(0).integers(0, 256, (3, 1, 32, 32), dtype=np.uint8)
    np.testing.assert_allclose(predictor.logits(batch), torch_logits(model, batch), atol=1e-5)
    with zipfile.ZipFile(bundle) as zf:
        meta = json.loads(zf.read("spec.json"))
    assert meta["exporter"] == "defectlens bundle (wrapped TorchScript)" and meta["wrapped"]["file"] == "model.ts"
    loaded = load_model(bundle)
    assert loaded.kind == "bundle" and loaded.spec.class_names == ("ok", "defect")


def test_a_graph_that_disagrees_with_the_spec_is_refused_with_the_reason(foreign, tmp_path, capsys):
    _, onnx_path, _ = foreign
    wrong = args(onnx_path, tmp_path / "x.dlens")
    wrong[wrong.index("--classes") + 1] = "ok,scratch,dent"
    wrong[wrong.index("--positive-class") : wrong.index("--positive-class") + 2] = []
    assert main(wrong) == 2
    err = capsys.readouterr().err
    assert "model.onnx" in err and "3" in err and not (tmp_path / "x.dlens").exists()
    rgb = args(onnx_path, tmp_path / "y.dlens")
    rgb[rgb.index("--channels") + 1 : rgb.index("--channels") + 2] = ["3"]
    assert main(rgb) == 2  # one mean for 3 channels is repeated; the graph takes 1 channel
    assert "1" in capsys.readouterr().err and not (tmp_path / "y.dlens").exists()
    fixed = tmp_path / "fixed.onnx"  # one image at a time: every surface scores batches
    torch.onnx.export(foreign[0], (torch.zeros(1, 1, 32, 32),), str(fixed), dynamo=False)
    assert main(args(fixed, tmp_path / "f.dlens")) == 2
    assert "dynamic batch axis" in capsys.readouterr().err and not (tmp_path / "f.dlens").exists()
    not_onnx = tmp_path / "notes.onnx"
    not_onnx.write_text("not a graph")
    assert main(args(not_onnx, tmp_path / "z.dlens")) == 2
    assert "not an ONNX model" in capsys.readouterr().err
