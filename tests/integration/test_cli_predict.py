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
def test_bench_cli_prints_tables_and_writes_json(tmp_path, capsys):
    """Every installed backend and torch, on the real images of a class-named folder, with a human table."""
    run = make_checkpoint(tmp_path / "run", size=32)
    bundle = tmp_path / "model.dlens"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        main(["export", str(run), "--out", str(bundle)])
    capsys.readouterr()
    rng = np.random.default_rng(0)
    folder = tmp_path / "parts"
    for label in ("ok", "defect"):
        (folder / label).mkdir(parents=True)
        for i in range(3):  # real files at their own size (40 x 36), not the model's 32 px
            Image.fromarray(rng.integers(0, 256, (36, 40), dtype=np.uint8)).save(folder / label / f"{i}.jpg")
    out = tmp_path / "bench.json"
    argv = ["bench", "--model", str(bundle), "--images", str(folder), "--batch-sizes", "1,4"]
    code = main([*argv, "--repeats", "10", "--seconds", "0.05", "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr()
    result = json.loads(out.read_text())
    from defectlens.inference.backends import installed_runtimes

    labels = {"onnx": "onnxruntime", "openvino": "openvino"}
    backends = [r["backend"] for r in result["rows"]]
    assert backends == [labels[r] for r in installed_runtimes()] + ["torch"]
    for row in result["rows"]:
        assert row["end_to_end_ms"]["p50"] > 0 and row["end_to_end_ms"]["p99"] >= row["end_to_end_ms"]["p50"]
        assert set(row["throughput"]) == {"1", "4"} and row["throughput"]["4"]["model_only_img_s"] > 0
        assert row["accuracy"] is not None and row["agreement_with_first_row"] == 1.0  # exact backends agree
    assert result["labelled_images"] == 6 and result["images"].startswith("6 images of")
    assert set(result["speedup_vs_torch"]) == set(backends[:-1])
    assert result["load_average"]["before"] and result["machine"]["cpu"]
    assert "One image, end to end (ms)" in printed.out and "Images per second" in printed.out
    assert "onnxruntime" in printed.out and "e2e b4" in printed.out and "{" not in printed.out
    assert "one-image latency" in printed.err  # progress on stderr, not silence
    assert main(["bench", "--model", str(bundle), "--batch-sizes", "x"]) == 2
