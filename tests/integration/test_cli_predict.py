"""CLI: export a run, predict a labelled folder (CSV with MATCH/MISMATCH), one image (JSON), exit codes."""

from __future__ import annotations

import csv
import json
import warnings

import numpy as np
import pytest
from PIL import Image

from defectlens.cli import main
from tests.helpers import make_checkpoint


def test_export_and_predict_folder_with_class_subfolders(tmp_path, capsys):
    run = make_checkpoint(tmp_path / "run", size=32)
    bundle = tmp_path / "model.dlens"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["export", str(run), "--out", str(bundle)]) == 0
    assert "SYNTHETIC" in capsys.readouterr().out
    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    for label in ("ok", "defect"):
        (folder / label).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (20, 24), dtype=np.uint8)).save(folder / label / f"{i}.png")
    out = tmp_path / "out"
    assert main(["predict", str(folder), "--model", str(bundle), "--out", str(out), "--explain"]) == 0
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert len(rows) == 6 and {r["truth"] for r in rows} == {"ok", "defect"}
    assert {r["match"] for r in rows} <= {"MATCH", "MISMATCH"}
    assert all(r["match"] == ("MATCH" if r["prediction"] == r["truth"] else "MISMATCH") for r in rows)
    assert len(list((out / "gradcam").glob("*.png"))) == 6
    assert "accuracy" in capsys.readouterr().out
    assert {"confidence", "defect_probability", "warning"} <= set(rows[0])

    # one image: JSON on stdout
    assert main(["predict", str(folder / "ok" / "0.png"), "--model", str(bundle)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"file", "prediction", "confidence", "probabilities", "threshold", "latency_ms"} <= set(result)

    # a bad file makes exit code 1 while the good ones are still predicted
    (folder / "ok" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    assert main(["predict", str(folder), "--model", str(bundle), "--out", str(out)]) == 2  # never overwrites
    assert "--force" in capsys.readouterr().err
    assert main(["predict", str(folder), "--model", str(bundle), "--out", str(out), "--force"]) == 1
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert sum(r["status"] == "error" for r in rows) == 1 and sum(r["status"] == "ok" for r in rows) == 6
    capsys.readouterr()

    # bad arguments: exit code 2 with a one-line message
    assert main(["predict", str(tmp_path / "nope"), "--model", str(bundle)]) == 2
    assert main(["predict", str(folder), "--model", str(bundle), "--threshold", "7"]) == 2
    assert main(["predict", str(folder), "--model", str(tmp_path / "missing.dlens")]) == 2


@pytest.mark.slow
def test_bench_cli_writes_json(tmp_path, capsys):
    run = make_checkpoint(tmp_path / "run", size=32)
    bundle = tmp_path / "model.dlens"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        main(["export", str(run), "--out", str(bundle)])
    out = tmp_path / "bench.json"
    code = main(["bench", "--model", str(bundle), "--batch-sizes", "1,4", "--repeats", "20", "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["onnx"]["single_image_end_to_end_ms"]["p50"] > 0
    assert set(result["onnx"]["throughput"]) == {"1", "4"} and "speedup_vs_torch" in result
    assert main(["bench", "--model", str(bundle), "--batch-sizes", "x"]) == 2
