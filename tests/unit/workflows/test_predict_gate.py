"""predict with the gate (issue #26): the CSV's gate columns, needs_review rows (no class, neither MATCH
nor MISMATCH), --gate warn and off, the summary and the exit codes."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from defectlens.data.manifest import Manifest
from defectlens.inference.gate import GateCheck
from defectlens.inference.predictor import Prediction
from defectlens.workflows.predict import row_of
from tests.unit.hardening import corpus as C


@pytest.fixture(scope="module")
def parts(tiny_dataset, tmp_path_factory) -> Path:
    """ok/ and defect/ with two training images each (they pass the gate) and defect/black.png (flagged)."""
    manifest = Manifest.read(tiny_dataset)
    root = tmp_path_factory.mktemp("gate-parts")
    for label in ("ok", "defect"):
        (root / label).mkdir()
        for r in [r for r in manifest.split("train") if r.label == label][:2]:
            shutil.copy(manifest.resolve(r), root / label / Path(r.path).name)
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(root / "defect" / "black.png")
    return root


def predict(folder: Path, model: Path, out: Path, *extra: str) -> tuple[C.Outcome, dict[str, dict[str, str]]]:
    result = C.run_cli(["predict", str(folder), "--model", str(model), "--out", str(out), *extra])
    with (out / "predictions.csv").open(encoding="utf-8", newline="") as fh:
        rows = {Path(r["file"]).name: r for r in csv.DictReader(fh)}
    return result, rows


def test_refused_black_frame_is_a_third_outcome(gated_bundle, parts, tmp_path):
    result, rows = predict(parts, gated_bundle, tmp_path / "out")
    assert result.code == 4, result.err
    black = rows["black.png"]
    assert (black["status"], black["prediction"], black["needs_review"]) == ("needs_review", "", "true")
    assert (black["confidence"], black["defect_probability"], black["p_ok"], black["p_defect"]) == ("", "", "", "")
    assert (black["truth"], black["match"]) == ("defect", "")  # no decision: neither MATCH nor MISMATCH
    assert "uniform" in black["gate_reason"] and black["reason"] == black["gate_reason"]
    assert np.isfinite(float(black["ood_score"]))
    passed = [r for name, r in rows.items() if name != "black.png"]
    assert len(passed) == 4
    for r in passed:
        assert (r["status"], r["needs_review"], r["gate_reason"]) == ("ok", "false", "")
        assert np.isfinite(float(r["ood_score"])) and r["match"] in ("MATCH", "MISMATCH")
    text = " ".join(result.out.split())
    assert "(needs review) 1" in text and "(error)" not in text
    assert "gate (refuse): 1 of 5 frames need review" in text and "needs review " in text
    assert "labelled images" in text and "on 4 labelled images" in text


def test_warn_keeps_the_class_and_the_flag(gated_bundle, parts, tmp_path):
    result, rows = predict(parts, gated_bundle, tmp_path / "out", "--gate", "warn")
    assert result.code == 4
    black = rows["black.png"]
    assert (black["status"], black["needs_review"]) == ("ok", "true")
    assert black["prediction"] in ("ok", "defect") and black["match"] in ("MATCH", "MISMATCH")
    assert float(black["p_ok"]) + float(black["p_defect"]) == pytest.approx(1.0, abs=1e-5)
    assert "uniform" in black["gate_reason"] and black["reason"] == ""
    assert "classes kept: --gate warn" in " ".join(result.out.split())


def test_off_fills_no_gate_column(gated_bundle, parts, tmp_path):
    result, rows = predict(parts, gated_bundle, tmp_path / "out", "--gate", "off")
    assert result.code == 0
    assert {(r["status"], r["needs_review"], r["ood_score"], r["gate_reason"]) for r in rows.values()} == {
        ("ok", "", "", "")
    }
    assert "gate: off: frames were not checked (--gate off)" in " ".join(result.out.split())


def test_a_failed_file_outranks_a_flagged_one(gated_bundle, parts, tmp_path):
    folder = tmp_path / "parts"
    shutil.copytree(parts, folder)
    (folder / "ok" / "broken.png").write_bytes(b"not a PNG")
    result, rows = predict(folder, gated_bundle, tmp_path / "out")
    assert result.code == 1
    assert rows["broken.png"]["status"] == "error" and rows["broken.png"]["needs_review"] == ""
    assert rows["black.png"]["status"] == "needs_review"


def test_one_black_image_prints_its_gate_and_exits_4(gated_bundle, parts):
    result = C.run_cli(["predict", str(parts / "defect" / "black.png"), "--model", str(gated_bundle)])
    assert result.code == 4
    d = json.loads(result.out)
    assert (d["status"], d["prediction"], d["probabilities"]) == ("needs_review", "", {})
    assert d["gate"]["flagged"] is True and "uniform" in d["reason"] and "defect_probability" not in d
    assert "uniform" in " ".join(d["gate"]["reasons"]) and isinstance(d["gate"]["ood_score"], float)
    good = next((parts / "ok").iterdir())
    assert C.run_cli(["predict", str(good), "--model", str(gated_bundle)]).code == 0


def test_a_model_without_profile_says_it_is_not_gated(bundle, parts, tmp_path):
    result, rows = predict(parts, bundle, tmp_path / "out")
    assert result.code == 0 and rows["black.png"]["status"] == "ok" and rows["black.png"]["needs_review"] == ""
    assert "gate: off: this model has no reference profile" in " ".join(result.out.split())


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_an_unknown_gate_mode_is_refused_with_the_choices(command, tmp_path):
    argv = [command, str(tmp_path), "--gate", "strict"] + (["--model", "m.dlens"] if command == "predict" else [])
    result = C.run_cli(argv)
    assert result.code == 2
    assert "--gate: invalid choice: 'strict' (choose from 'refuse', 'warn', 'off')" in result.err


def test_row_of_a_refused_and_a_warned_frame_by_hand():
    check = GateCheck(True, ("frame is almost uniform: contrast (std) 0.0 grey levels",), 12.5, 3.0)
    refused = Prediction("a.png", "", 0.0, {}, 0.5, 2.0, status="needs_review", reason=check.reason, gate=check)
    row = row_of(refused, ["ok", "defect"], "defect", "defect")
    assert {k: row[k] for k in ("status", "needs_review", "prediction", "confidence", "defect_probability")} == {
        "status": "needs_review",
        "needs_review": "true",
        "prediction": "",
        "confidence": "",
        "defect_probability": "",
    }
    assert (row["ood_score"], row["match"], row["gate_reason"]) == (12.5, "", check.reason)
    probs = {"ok": 0.25, "defect": 0.75}
    warned = Prediction("b.png", "defect", 0.75, probs, 0.5, 2.0, gate=check, defect_probability=0.75)
    row = row_of(warned, ["ok", "defect"], "defect", "defect")
    assert (row["status"], row["needs_review"], row["match"], row["defect_probability"]) == (
        "ok",
        "true",
        "MATCH",
        0.75,
    )
    passed = Prediction(
        "c.png", "ok", 0.75, {"ok": 0.75, "defect": 0.25}, 0.5, 2.0, gate=GateCheck(False, (), 1.25, 3.0)
    )
    row = row_of(passed, ["ok", "defect"], "defect", "defect")
    assert (row["needs_review"], row["ood_score"], row["gate_reason"], row["match"]) == ("false", 1.25, "", "MISMATCH")
