"""benchmarks/seed_ensemble.py: the seeds' mean probability judged on validation by its fixed rule, test after."""

from __future__ import annotations

import numpy as np

from tests.benchmark_scripts import load_benchmark


def _member(val: np.ndarray, test: np.ndarray, y_val: np.ndarray, y_test: np.ndarray) -> dict:
    return {
        "val": {f"v{i}": (int(y), float(p)) for i, (y, p) in enumerate(zip(y_val, val, strict=True))},
        "test": {f"t{i}": (int(y), float(p)) for i, (y, p) in enumerate(zip(y_test, test, strict=True))},
    }


def test_copies_of_one_model_gain_nothing_and_are_not_adopted():
    se = load_benchmark("seed_ensemble")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 80)
    p = np.clip(y * 0.6 + rng.normal(0.2, 0.2, 80), 0, 1)
    report = se.judge([_member(p, p, y, y)] * 3)
    assert report["val"]["macro_f1"] == report["val_single_macro_f1_mean"]
    assert report["adopted"] is False and report["members"] == 3
    assert abs(report["test"]["accuracy"] - report["test_single_accuracy_mean"]) < 1e-12


def test_members_whose_errors_differ_average_into_a_better_model_and_the_rule_adopts_it():
    se = load_benchmark("seed_ensemble")
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 400)
    members = []
    for _ in range(5):  # each member: the truth plus its own noise, so the mean is closer to the truth
        val, test = (np.clip(y * 0.5 + 0.25 + rng.normal(0, 0.3, 400), 0, 1) for _ in range(2))
        members.append(_member(val, test, y, y))
    report = se.judge(members)
    assert report["val"]["macro_f1"] >= report["val_single_macro_f1_mean"] + se.BAR
    assert report["adopted"] is True
    assert report["test"]["accuracy"] > report["test_single_accuracy_mean"]
    assert 0.0 < report["threshold"] < 1.0
