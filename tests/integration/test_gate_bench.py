"""The gate benchmark runs end to end in its quick mode on a small gated bundle (no figure is asserted)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.benchmark_scripts import load_benchmark


@pytest.mark.slow
def test_bench_gate_quick_writes_every_family(gated_bundle, tiny_dataset, tmp_path, capsys):
    bench = load_benchmark("bench_gate")
    argv = ["--bundle", str(gated_bundle), "--data", str(tiny_dataset), "--name", "tiny", "--quick",
            "--kinds", "exposure", "blur", "--work", str(tmp_path / "none"), "--shared", str(tmp_path / "none"),
            "--out", str(tmp_path)]  # fmt: skip
    assert bench.main(bench.get_args_parser().parse_args(argv)) == 0
    res = json.loads((tmp_path / "gate.json").read_text())["datasets"]["tiny"]
    assert res["quick"] is True and res["model_id"] and res["ood_threshold"] is not None
    assert res["clean"]["n"] == 8 and 0.0 <= res["clean"]["flagged_share"] <= 1.0
    dead = res["dead_camera"]
    assert dead["kinds"]["black"]["flagged"] == 1  # the fixture's promise: a black frame needs review
    assert dead["all"]["n"] == sum(k["n"] for k in dead["kinds"].values())
    assert set(res["other_parts"]["sources"]) == {"casting", "elpv", "generic", "neu-det"}
    assert res["other_parts"]["sources"]["generic"]["n"] >= 2
    assert [s["shift"] for s in res["shifts"]] == ["exposure 0.8", "exposure 1.2", "blur 1"]
    assert res["latency"]["calls"] == 20 and res["latency"]["off"]["p50_ms"] > 0
    assert set(res["goals"]) == {"clean", "dead_camera", "other_parts", "latency"}
    bench.main(bench.get_args_parser().parse_args(["--table", "--out", str(tmp_path)]))
    assert "| dataset | family |" in capsys.readouterr().out


def test_every_ood_candidate_scores_a_far_point_above_the_training_cloud():
    bench = load_benchmark("bench_ood_scores")
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 100)
    layers = [rng.normal(size=(200, 8)) + labels[:, None] * 3.0, rng.normal(size=(200, 4))]
    val = [rng.normal(size=(40, 8)), rng.normal(size=(40, 4))]
    near = [layers[0][:5], layers[1][:5]]
    far = [np.full((5, 8), 40.0) * np.r_[1, -1, 1, -1, 1, -1, 1, -1], np.full((5, 4), 40.0)]
    scores = bench.candidates(layers, labels, val)
    assert {"mahalanobis penultimate", "knn cosine k=5", "gate: both layers (max)"} <= set(scores)
    for name, score in scores.items():
        if name == "relative mahalanobis":  # far along the background's own spread it scores low: its known blind spot
            continue
        assert score(far).min() > score(near).max(), name
