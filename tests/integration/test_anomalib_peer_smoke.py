"""The anomalib PatchCore peer (issue #29) on a few generated images: fitted offline on our Lite0 weights in
its own virtualenv, exported to ONNX and OpenVINO, timed, and its raw scores read back by our figures.

Skips without ``.venv-anomalib`` (``make anomalib-peer``): CI does not build that environment."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.benchmark_scripts import load_benchmark
from tests.require import missing

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("run_anomaly")


@pytest.fixture(scope="module")
def runner():
    return load_benchmark("peers/anomalib_patchcore")


def _images(root: Path) -> dict[str, object]:
    """4 + 2 plain noisy parts for train and val; test: 2 plain, 2 with a bright square (the defect)."""
    rng = np.random.default_rng(0)
    split: dict[str, object] = {"input_size": 64, "bank": 16}
    for name, n in (("train", 4), ("val", 2), ("test", 4)):
        paths = []
        for i in range(n):
            a = (120 + rng.normal(0, 8, (80, 80, 3))).clip(0, 255).astype(np.uint8)
            if name == "test" and i >= 2:
                a[20:40, 20:40] = 250
            paths.append(str(root / f"{name}_{i}.png"))
            Image.fromarray(a).save(paths[-1])
        split[name] = paths
    return split


def test_the_package_weights_map_one_to_one_onto_timm_names(runner):
    source = [f"_blocks.{b}._bn1.weight" for b in range(16)] + ["_conv_stem.weight", "_bn0.bias", "_fc.weight"]
    mapped = [runner.timm_key(k) for k in source]
    assert len(set(mapped)) == len(mapped)
    assert runner.timm_key("_blocks.0._project_conv.weight") == "blocks.0.0.conv_pw.weight"  # depthwise-separable
    # ours tap blocks 4 and 10 (the last stride-8 and stride-16 blocks): the ends of timm's stages 2 and 4
    assert runner.timm_key("_blocks.4._bn1.weight") == "blocks.2.1.bn2.weight"
    assert runner.timm_key("_blocks.10._expand_conv.weight") == "blocks.4.2.conv_pw.weight"
    assert runner.timm_key("_blocks.15._project_conv.weight") == "blocks.6.0.conv_pwl.weight"
    assert runner.timm_key("_bn1.running_var") == "bn2.running_var" and runner.timm_key("_fc.bias") == "classifier.bias"


def test_anomalib_patchcore_fits_exports_and_scores_offline(bench, tmp_path):
    if bench.anomalib_python() is None:
        missing("PEERS", "no anomalib virtualenv (.venv-anomalib: make peers or make anomalib-peer)")
    split = _images(tmp_path)
    (tmp_path / "split.json").write_text(json.dumps(split))
    summary = bench.call_anomalib(
        "fit", "--split", str(tmp_path / "split.json"), "--weights", str(bench.lite0_weights()),
        "--guard", str(tmp_path / "netguard.log"), out=tmp_path / "fit", timeout=1200,
    )  # fmt: skip
    assert summary["versions"]["anomalib"].startswith("2.")
    assert (summary["bank_size"], summary["dims"]) == (16, 40 + 112)  # the stride-8 and stride-16 stages
    assert 0.1 < summary["fit_peak_rss_gb"] < 64  # its process's peak through the fit, in GiB
    assert summary["netguard"]["blocked_network_attempts"] == 0 and summary["netguard"]["inet_sockets_created"] == 0
    assert math.isfinite(summary["threshold_raw"])
    for backend in ("onnx", "openvino"):
        exported = summary["export"][backend]
        assert exported["mb"] > 0 and exported["latency"]["runs"] == 100
    assert summary["export"]["onnx"]["parity_max_abs_score_diff"] <= 1e-3
    assert summary["export"]["onnx"]["parity_max_abs_map_diff"] <= 1e-3
    # OpenVINO computes in its CPU's default precision: bf16 where the CPU has it (the drift the benchmark reports),
    # f32 elsewhere; with an f32 hint it must agree with the torch model on every CPU
    hinted = summary["export"]["openvino_f32_hint"]
    assert hinted["parity_max_abs_score_diff"] <= 1e-3 and hinted["parity_max_abs_map_diff"] <= 1e-3
    if "f32" in hinted["inference_precision_default"]:
        assert summary["export"]["openvino"]["parity_max_abs_score_diff"] <= 1e-3
    data = np.load(summary["scores"])
    assert list(data["paths"]) == split["test"] and data["maps"].shape == (4, 64, 64)
    y = np.array([False, False, True, True])
    figures = bench.image_figures(y, data["raw"], summary["threshold_raw"], called=data["labels"])
    assert figures["image_auroc"] == 1.0  # the bright squares score above every plain part


def test_the_coreset_cost_times_its_own_selection_loop_at_the_given_shape(bench, tmp_path):
    if bench.anomalib_python() is None:
        missing("PEERS", "no anomalib virtualenv (.venv-anomalib: make peers or make anomalib-peer)")
    cost = bench.call_anomalib(
        "coreset-cost", "--patches", "5000", "--dims", "152", "--bank", "16", "--steps", "5", out=tmp_path, timeout=600
    )
    assert (cost["patches"], cost["dims"], cost["coreset_size"], cost["steps_timed"]) == (5000, 152, 16, 5)
    # its projection's width is the Johnson-Lindenstrauss bound for the row count at eps 0.9, whatever the width
    # it is given: 4 ln(5000) / (0.9^2 / 2 - 0.9^3 / 3) = 210 numbers for 152-wide features (wider, not narrower)
    assert cost["projected_dims"] == int(4 * math.log(5000) / (0.9**2 / 2 - 0.9**3 / 3)) == 210
    assert cost["seconds_per_step"] > 0
    assert cost["full_selection_hours"] == pytest.approx(cost["seconds_per_step"] * 15 / 3600)
