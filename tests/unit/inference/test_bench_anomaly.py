"""``defectlens bench`` on an anomaly bundle: ONNX Runtime against eager torch on an MVTec-style test folder,
whose defect kind's folder counts as ``anomalous`` for the accuracy."""

from __future__ import annotations

from defectlens.cli import main
from defectlens.inference.bench import run_benchmark


def test_bench_measures_an_anomaly_bundle_and_scores_the_defect_folder(anomaly_fitted, tmp_path, capsys) -> None:
    test_folder = anomaly_fitted.source / "test"  # good/ (8) and scratch/ (8)
    result = run_benchmark(
        anomaly_fitted.bundle.path, images=test_folder, batch_sizes=(1, 4), repeats=8, seconds=0.05, rounds=1,
        backends=("onnx", "torch"),
    )  # fmt: skip
    assert result["labelled_images"] == 16  # the scratch/ folder is anomalous ground truth, not unlabelled
    onnx, torch = result["rows"]
    assert (onnx["runtime"], torch["runtime"]) == ("onnx", "torch")
    assert onnx["accuracy"] >= 0.75 and torch["agreement_with_first_row"] == 1.0
    assert onnx["end_to_end_ms"]["p50"] > 0 and onnx["throughput"]["4"]["model_only_img_s"] > 0
    code = main(["bench", "--model", str(anomaly_fitted.bundle.path), "--images", str(test_folder),
                 "--batch-sizes", "1", "--repeats", "4", "--seconds", "0.05", "--backend", "onnx"])  # fmt: skip
    assert code == 0 and "onnx" in capsys.readouterr().out
