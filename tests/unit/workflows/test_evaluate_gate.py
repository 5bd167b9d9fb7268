"""evaluate with the gate (issue #26): coverage, flagged counts by reason and the figures on the covered
images beside the plain figures on every image; --gate off; the CLI's block and metrics.json.

The test split is four training images of ``tiny_dataset`` (they pass the gate) and one black frame labelled
defect (flagged), so the gate covers 4 of 5 images.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from defectlens.data.manifest import Manifest, Record
from defectlens.evaluation.evaluate import EvalSettings
from defectlens.inference.gate import Gate
from defectlens.inference.predictor import Predictor
from defectlens.workflows.evaluate import evaluate_model
from tests.unit.hardening import corpus as C


@pytest.fixture(scope="module")
def with_black(tiny_dataset, tmp_path_factory) -> Path:
    """A manifest folder whose only split, test, holds ok_000, ok_001, defect_000, defect_001 and black.png (defect)."""
    source = Manifest.read(tiny_dataset)
    root = tmp_path_factory.mktemp("gate-eval-images")
    records = []
    for label in ("ok", "defect"):
        for r in [r for r in source.split("train") if r.label == label][:2]:
            shutil.copy(source.resolve(r), root / Path(r.path).name)
            records.append(Record(path=Path(r.path).name, label=label, split="test", width=48, height=48, mode="L"))
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(root / "black.png")
    records.append(Record(path="black.png", label="defect", split="test", width=48, height=48, mode="L"))
    out = tmp_path_factory.mktemp("gate-eval-manifest")
    Manifest(records=records, info={**source.info, "root": str(root)}).write(out)
    return out


def constant_predictor(gated_bundle: Path, mode: str) -> Predictor:
    """The gated bundle's spec and reference profile (image-quality rules; no OOD score) over a network that
    gives every image P(defect) = 0.8: every image is called defect at the threshold 0.5."""
    loaded = Predictor.load(gated_bundle)
    logits = np.log(np.array([[0.2, 0.8]], np.float32))  # class order (ok, defect)
    gate = Gate(loaded.gate.profile, mode=mode, member=None)  # type: ignore[arg-type]
    return Predictor(lambda x: np.repeat(logits, len(x), axis=0), loaded.spec, backend="constant", gate=gate)


def evaluate_constant(gated_bundle, with_black, out, mode):
    settings = EvalSettings(refit=False, bootstrap=0)
    predictor = constant_predictor(gated_bundle, mode)
    return evaluate_model(predictor, Manifest.read(with_black), out_dir=out, splits=("test",), settings=settings)


def test_coverage_and_covered_figures_by_hand(gated_bundle, with_black, tmp_path):
    run = evaluate_constant(gated_bundle, with_black, tmp_path / "eval", "refuse")
    # every image called defect: on all 5, the 3 defects right (accuracy 3/5, defect recall 3/3);
    # on the 4 covered, 2 of 4 right and both covered defects caught
    plain = run.result.metrics["test"]
    assert (plain["n"], plain["accuracy"]) == (5, pytest.approx(0.6))
    g = run.result.gate
    assert (g["mode"], g["active"]) == ("refuse", True)
    test = g["splits"]["test"]
    assert (test["images"], test["flagged"], test["covered"], test["coverage"]) == (5, 1, 4, 0.8)
    assert test["reasons"] == {"uniform": 1, "under_exposed": 1}  # contrast 0; mean 0 and every pixel black
    assert (test["accuracy_covered"], test["defects_covered"], test["defect_recall_covered"]) == (0.5, 2, 1.0)
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["gate"]["splits"]["test"] == test
    with (tmp_path / "eval" / "predictions.csv").open(encoding="utf-8") as fh:
        flags = {r["path"]: (r["needs_review"], r["gate"]) for r in csv.DictReader(fh)}
    assert flags.pop("black.png") == ("true", "uniform;under_exposed")
    assert set(flags.values()) == {("false", "")}


def test_gate_off_reports_no_coverage(gated_bundle, with_black, tmp_path):
    run = evaluate_constant(gated_bundle, with_black, tmp_path / "eval", "off")
    assert (run.result.gate["active"], run.result.gate["splits"]) == (False, {})
    assert run.result.metrics["test"]["accuracy"] == pytest.approx(0.6)  # the plain figures do not change
    with (tmp_path / "eval" / "predictions.csv").open(encoding="utf-8") as fh:
        assert {(r["needs_review"], r["gate"]) for r in csv.DictReader(fh)} == {("", "")}


def test_cli_prints_the_gate_block_beside_the_plain_figures(gated_bundle, with_black, tmp_path):
    out = tmp_path / "eval"
    result = C.run_cli(["evaluate", str(gated_bundle), "--data", str(with_black), "--split", "test", "--out", str(out)])
    assert result.code == 0, result.err
    test = json.loads((out / "metrics.json").read_text())["gate"]["splits"]["test"]
    assert (test["images"], test["flagged"], test["covered"], test["coverage"]) == (5, 1, 4, 0.8)
    assert test["reasons"]["uniform"] == 1
    with (out / "predictions.csv").open(encoding="utf-8") as fh:
        covered = [r for r in csv.DictReader(fh) if r["needs_review"] == "false"]
    assert len(covered) == 4
    assert test["accuracy_covered"] == sum(r["correct"] == "1" for r in covered) / 4
    text = " ".join(result.out.split())
    assert "gate (refuse) on test: coverage 0.8000 (4 of 5 images), flagged 1 (uniform 1" in text
    off = C.run_cli([*["evaluate", str(gated_bundle), "--data", str(with_black)], "--split", "test", "--gate", "off",
                     "--out", str(tmp_path / "off")])  # fmt: skip
    assert off.code == 0 and "gate: off (--gate off)" in " ".join(off.out.split())
    assert json.loads((tmp_path / "off" / "metrics.json").read_text())["gate"]["splits"] == {}
