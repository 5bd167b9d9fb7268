"""evaluate_model end to end on tiny_dataset: outputs, no fitting on test, refit=False, multi-class."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from defectlens.core.checkpoint import save_checkpoint
from defectlens.data.manifest import Manifest, replace
from defectlens.evaluation.evaluate import EvalSettings, EvaluationResult
from defectlens.inference.predictor import Predictor
from defectlens.models import create_model, default_spec
from defectlens.reporting.report import SECTIONS
from defectlens.workflows.evaluate import EvaluationRun, evaluate_model


def run_evaluation(predictor, manifest, *, out_dir, bootstrap=1000, refit=True, splits=("train", "val", "test"), **kw):
    """evaluate_model with the settings these tests vary."""
    return evaluate_model(
        predictor,
        manifest,
        out_dir=out_dir,
        splits=splits,
        settings=EvalSettings(bootstrap=bootstrap, refit=refit),
        **kw,
    )


def make_run(folder: Path, class_names=("ok", "defect"), positive="defect", **spec_changes) -> Path:
    """An untrained simple_cnn checkpoint in a run folder with a history.csv (no training needed)."""
    torch.manual_seed(0)
    model = create_model("simple_cnn", num_classes=len(class_names), in_channels=1, input_size=48)
    spec = default_spec("simple_cnn", in_channels=1, input_size=48, class_names=tuple(class_names))
    spec = spec.replace(positive_class=positive, **spec_changes)
    save_checkpoint(folder / "best.pt", model, spec)
    (folder / "history.csv").write_text(
        "epoch,train_loss,val_loss,val_accuracy,val_macro_f1,lr,epoch_s\n1,0.7,0.69,0.5,0.4,0.001,1.2\n2,0.5,0.6,0.7,0.65,0.001,1.1\n"
    )
    return folder


@pytest.fixture(scope="module")
def evaluated(tiny_dataset, tmp_path_factory):
    torch.set_num_threads(1)
    run = make_run(tmp_path_factory.mktemp("run"))
    out = run / "eval"
    result = run_evaluation(
        Predictor.load(run),
        Manifest.read(tiny_dataset),
        out_dir=out,
        run_info={"run_dir": str(run)},
        history=run / "history.csv",
        bootstrap=100,
    )
    return result, out


def test_writes_metrics_and_report_with_every_section(evaluated):
    run, out = evaluated
    assert isinstance(run, EvaluationRun) and isinstance(run.result, EvaluationResult)
    assert run.report_path == out / "report.html"
    result = run.result
    payload = json.loads((out / "metrics.json").read_text())
    assert set(payload["metrics"]) == {"train", "val", "test"}
    assert payload["threshold"]["method"] == "f1" and payload["threshold"]["sweep"]
    assert payload["calibration"]["fitted_on"] == "val"
    assert payload["calibration"]["method"] == "nll"  # an untrained model makes validation errors
    assert payload["provenance"]["dataset"]["name"] == "tiny"
    assert payload["provenance"]["model"]["spec"]["arch"] == "simple_cnn"
    assert payload["metrics"]["test"]["n"] == 16 and "defect_recall" in payload["metrics"]["test"]
    html = run.report_path.read_text()
    for key, title in SECTIONS:
        assert f'id="{key}"' in html and title in html
    assert html.count("data:image/png;base64,") >= 12  # confusion/ROC/PR x3, reliability, threshold, learning, mistakes
    assert "http://" not in html and "https://" not in html  # self-contained, opens offline
    assert result.threshold is not None and result.positive_class == "defect"
    assert result.temperature == pytest.approx(payload["temperature"])


def test_predictions_csv_rows_are_the_counted_errors(evaluated, tiny_dataset):
    import csv

    run, out = evaluated
    result = run.result
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    records = {(r.split, r.path): r.label for r in Manifest.read(tiny_dataset).records}
    assert len(rows) == len(records)
    for split in ("train", "val", "test"):
        mine = [r for r in rows if r["split"] == split]
        assert all(records[(split, r["path"])] == r["label"] for r in mine)  # dataset-relative paths
        wrong = sum(r["correct"] == "0" for r in mine)
        assert wrong == round((1 - result.metrics[split]["accuracy"]) * len(mine))
        for r in mine:
            p_defect = float(r["p_defect"])
            assert r["prediction"] == ("defect" if p_defect >= result.threshold.threshold else "ok")
            assert p_defect + float(r["p_ok"]) == pytest.approx(1.0, abs=1e-5)


def test_threshold_and_temperature_ignore_test_labels(evaluated, tiny_dataset, tmp_path):
    result = evaluated[0].result
    m = Manifest.read(tiny_dataset)
    flip = {"ok": "defect", "defect": "ok"}
    changed = m.with_records([replace(r, label=flip[r.label]) if r.split == "test" else r for r in m.records])
    changed.write(tmp_path / "ds")
    run = make_run(tmp_path / "run")
    other = run_evaluation(
        Predictor.load(run),
        Manifest.read(tmp_path / "ds"),
        out_dir=tmp_path / "eval",
        splits=("val", "test"),
        bootstrap=0,
    ).result
    assert other.threshold.threshold == result.threshold.threshold
    assert other.temperature == result.temperature
    # the test metrics did see the flipped labels
    assert other.metrics["test"]["accuracy"] == pytest.approx(1 - result.metrics["test"]["accuracy"])


def test_refit_false_uses_stored_values(tiny_dataset, tmp_path):
    run = make_run(tmp_path / "run", threshold=0.3, temperature=2.0)
    r = run_evaluation(
        Predictor.load(run),
        Manifest.read(tiny_dataset),
        out_dir=tmp_path / "eval",
        splits=("test",),
        refit=False,
        bootstrap=0,
    ).result
    assert r.threshold.threshold == 0.3 and r.threshold.method == "stored" and r.temperature == 2.0
    assert r.metrics["test"]["threshold"] == 0.3


def test_no_val_split_keeps_spec_threshold(tiny_dataset, tmp_path):
    m = Manifest.read(tiny_dataset)
    m.with_records([r for r in m.records if r.split != "val"]).write(tmp_path / "ds")
    run = make_run(tmp_path / "run", threshold=0.4)
    r = run_evaluation(
        Predictor.load(run),
        Manifest.read(tmp_path / "ds"),
        out_dir=tmp_path / "eval",
        splits=("test",),
        bootstrap=0,
    ).result
    assert r.threshold.threshold == 0.4 and "no validation split" in r.threshold.reason
    assert r.temperature == 1.0 and any("no validation split" in n for n in r.notes)


def test_multiclass_path(tmp_path):
    from tests.conftest import draw_part

    rng = np.random.default_rng(0)
    root = tmp_path / "imgs"
    records = []
    from defectlens.data.manifest import Record

    for label in ("crazing", "patches", "scratches"):
        (root / label).mkdir(parents=True)
        for i in range(8):
            rel = f"{label}/{i}.png"
            draw_part(rng, label != "crazing").save(root / rel)
            records.append(Record(path=rel, label=label, split="val" if i < 4 else "test"))
    Manifest(
        records=records, info={"name": "multi", "root": str(root), "classes": ["crazing", "patches", "scratches"]}
    ).write(tmp_path / "ds")
    run = make_run(tmp_path / "run", class_names=("crazing", "patches", "scratches"), positive=None)
    evaluation = run_evaluation(
        Predictor.load(run), Manifest.read(tmp_path / "ds"), out_dir=tmp_path / "eval", bootstrap=50
    )
    r = evaluation.result
    assert r.threshold is None and r.positive_class is None
    assert set(r.metrics) == {"val", "test"}
    assert "top2" in r.metrics["test"]["top_k_accuracy"] and len(r.metrics["test"]["confusion_matrix"]) == 3
    assert "macro_f1" in r.metrics["test"]["ci"]
    assert "No operating threshold" in evaluation.report_path.read_text()


def test_cli_evaluate(evaluated, tiny_dataset, tmp_path, capsys):
    from defectlens.cli import main

    run = make_run(tmp_path / "run")
    assert (
        main(
            [
                "evaluate",
                str(run),
                "--data",
                str(tiny_dataset),
                "--split",
                "test",
                "--refit",
                "--threshold-method",
                "cost",
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    payload = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert payload["threshold"]["method"] == "cost" and payload["splits"] == ["test"]
    assert main(["evaluate", str(tmp_path / "missing"), "--data", str(tiny_dataset)]) == 2
    assert "defectlens: error:" in capsys.readouterr().err


def test_error_free_validation_is_said_in_notes_and_report(tiny_dataset, tmp_path, monkeypatch):
    import defectlens.evaluation.calibration as calibration

    monkeypatch.setattr(calibration, "separated", lambda logits, y: True)
    run = make_run(tmp_path / "run")
    evaluation = run_evaluation(Predictor.load(run), Manifest.read(tiny_dataset), out_dir=run / "eval", bootstrap=0)
    payload = json.loads((run / "eval" / "metrics.json").read_text())
    assert payload["calibration"]["method"] == "rule_of_succession"
    assert any("classified without error" in n for n in payload["notes"])
    assert "rule of succession" in evaluation.report_path.read_text()


def test_results_by_image_attribute_count_the_same_errors(tiny_dataset, tmp_path):
    import csv

    m = Manifest.read(tiny_dataset)
    # a 'camera' attribute with two values, and a per-image id that is too varied to group by
    tagged = m.with_records([replace(r, meta={"camera": "AB"[i % 2], "serial": i}) for i, r in enumerate(m.records)])
    run = make_run(tmp_path / "run")
    evaluation = run_evaluation(Predictor.load(run), tagged, out_dir=run / "eval", bootstrap=0)
    result = evaluation.result
    payload = json.loads((run / "eval" / "metrics.json").read_text())
    assert set(payload["slices"]) == {"train", "val", "test"}
    assert list(payload["slices"]["test"]) == ["camera"]  # 'serial' has 80 values, size and mode one
    rows = list(csv.DictReader((run / "eval" / "predictions.csv").open()))
    camera = {(r.split, r.path): r.meta["camera"] for r in tagged.records}
    for split in ("val", "test"):
        by_value = {s["value"]: s for s in payload["slices"][split]["camera"]}
        assert set(by_value) == {"A", "B"}
        for value, s in by_value.items():
            mine = [r for r in rows if r["split"] == split and camera[(split, r["path"])] == value]
            assert s["n"] == len(mine) == 8
            assert s["errors"] == sum(r["correct"] == "0" for r in mine)
            assert s["missed_defects"] == sum(r["label"] == "defect" and r["correct"] == "0" for r in mine)
        assert sum(s["errors"] for s in by_value.values()) == round((1 - result.metrics[split]["accuracy"]) * 16)
    assert "<h3>camera</h3>" in evaluation.report_path.read_text()
    from rich.console import Console

    from defectlens.cli.summary import print_evaluation

    console = Console(record=True, width=200)
    print_evaluation(console, result, evaluation.report_path)
    test = {s["value"]: s for s in payload["slices"]["test"]["camera"]}
    expected = f"test errors by camera: A {test['A']['errors']}/8; B {test['B']['errors']}/8"
    assert expected in console.export_text()
