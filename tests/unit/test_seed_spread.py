"""Seed spread (benchmarks/seed_spread.py) and the demo's expected range read from the packaged file."""

from __future__ import annotations

import io
import json
import statistics

import pytest
from rich.console import Console

from tests.benchmark_scripts import load_benchmark


def _run(seed: int, acc: float, *, cpu: str = "Intel(R) Xeon(R) Processor", digest: str | None = None) -> dict:
    return {
        "seed": seed,
        "cpu": cpu,
        "test": {"accuracy": acc, "defect_recall": acc - 0.05, "macro_f1": acc - 0.01},
        "train_seconds": 300.0 + seed,
        "weights_sha256": digest or f"w{seed}",
        "config": {"epochs": 10},
    }


def test_spread_per_cpu_uses_the_newest_run_of_each_seed_and_sample_sd():
    ss = load_benchmark("seed_spread")
    runs = [_run(0, 0.80), _run(1, 0.90), _run(2, 0.85), _run(0, 0.70, cpu="AMD EPYC"), _run(1, 0.88)]
    spread = ss.by_cpu(runs)
    intel = spread["Intel(R) Xeon(R) Processor"]
    assert intel["seeds"] == [0, 1, 2]  # seed 1 re-run: the newest (0.88) replaces 0.90
    assert intel["accuracy"]["mean"] == pytest.approx(statistics.fmean([0.80, 0.88, 0.85]))
    assert intel["accuracy"]["sd"] == pytest.approx(statistics.stdev([0.80, 0.88, 0.85]))
    assert (intel["accuracy"]["min"], intel["accuracy"]["max"]) == (0.80, 0.88)
    assert spread["AMD EPYC"]["accuracy"]["sd"] == 0.0 and spread["AMD EPYC"]["seeds"] == [0]
    assert ss.done(runs, cpu="AMD EPYC", seed=0, config={"epochs": 10})
    assert not ss.done(runs, cpu="AMD EPYC", seed=0, config={"epochs": 12})  # another recipe runs again
    assert not ss.done(runs, cpu="AMD EPYC", seed=1, config={"epochs": 10})
    # a setting added since the run (position_norm, anomaly mode's) at its default is the same recipe
    now, defaults = {"epochs": 10, "position_norm": True}, {"epochs": 8, "position_norm": True}
    assert ss.done(runs, cpu="AMD EPYC", seed=0, config=now, defaults=defaults)
    assert not ss.done(runs, cpu="AMD EPYC", seed=0, config={**now, "position_norm": False}, defaults=defaults)
    assert not ss.done(runs, cpu="AMD EPYC", seed=0, config=now)  # without the defaults: a new setting
    table = ss.seed_table({"elpv": {"seeds": {"by_cpu": spread}}})
    assert "| elpv | Intel(R) Xeon(R) Processor | 3 (0-2) | 0.8433 ± 0.0404 [0.8000-0.8800] |" in table


def test_weights_digest_tells_identical_from_different_weights(tmp_path):
    import torch

    from defectlens.core.checkpoint import save_checkpoint
    from defectlens.models import load_checkpoint
    from tests.helpers import make_checkpoint

    ss = load_benchmark("seed_spread")
    a, b, c = (make_checkpoint(tmp_path / n, seed=s) / "best.pt" for n, s in (("a", 0), ("b", 0), ("c", 1)))
    assert ss.weights_digest(a) == ss.weights_digest(b)  # the same seed: bit-identical
    assert ss.weights_digest(a) != ss.weights_digest(c)
    model, spec, _ = load_checkpoint(b)
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] += 1e-6  # one float changed
    save_checkpoint(b, model, spec)
    assert ss.weights_digest(a) != ss.weights_digest(b)


def test_expected_file_round_trip_and_the_demo_line(tmp_path, monkeypatch):
    from defectlens.cli.summary import print_expected
    from defectlens.workflows import recipes

    ss = load_benchmark("seed_spread")
    spread = ss.by_cpu([_run(s, a) for s, a in enumerate((0.873, 0.891, 0.888))] + [_run(0, 0.893, cpu="AMD EPYC")])
    path = tmp_path / "expected.json"
    ss.write_expected("elpv", spread, path)
    assert json.loads(path.read_text())["elpv"]["Intel(R) Xeon(R) Processor"]["min"] == 0.873
    monkeypatch.setattr(recipes.resources, "files", lambda _pkg: tmp_path)
    ranges = recipes.expected_ranges("elpv")
    assert [r.cpu for r in ranges] == ["AMD EPYC", "Intel(R) Xeon(R) Processor"]
    assert recipes.expected_ranges("casting") == []
    # an Intel model not measured falls back to the Intel family; an unknown vendor gets no range
    assert recipes.range_for_cpu(ranges, "Intel(R) Xeon(R) Platinum 8480").cpu.startswith("Intel")
    assert recipes.range_for_cpu(ranges, "Apple M3") is None

    def said(accuracy: float, cpu: str = "Intel(R) Xeon(R) Processor") -> str:
        out = io.StringIO()
        print_expected(Console(file=out, width=400), {"accuracy": accuracy}, ranges, cpu)
        return out.getvalue()

    text = said(0.8731)
    assert "test accuracy 0.8731; this recipe's 3-seed range on this CPU is 0.873-0.891, mean 0.884" in text
    assert "other CPUs: AMD EPYC 0.893-0.893" in text and "warning" not in text
    assert "warning: 0.5000 is outside that range" in said(0.5)  # a broken install says so
    assert "measured on other CPUs only" in said(0.88, cpu="Apple M3")
    assert said(0.88) != "" and print_expected(Console(file=io.StringIO()), {}, ranges, "x") is None


def test_no_seed_runs_say_how_to_make_them_instead_of_an_empty_table():
    ss = load_benchmark("seed_spread")
    assert ss.seed_table({"elpv": {}}).startswith("No seed runs recorded yet: `python benchmarks/run_real.py")


def test_only_a_recipes_own_dataset_writes_its_expected_range():
    """``neu-6-file`` trains ``neu-6``'s recipe on a file-name split (1.0000 every seed); its seeds must not become
    the range ``neu-6`` promises (0.9969 on its own split)."""
    rr = load_benchmark("run_real")
    assert rr.expected_recipe(rr.DATASETS["neu-6"]) == "neu-6"
    assert rr.expected_recipe(rr.DATASETS["elpv"]) == "elpv"
    assert rr.expected_recipe(rr.DATASETS["neu-6-file"]) is None
    assert rr.expected_recipe(rr.DATASETS["neu-binary-file"]) is None


def test_the_packaged_ranges_are_those_of_the_recipes_own_rows():
    """The shipped ``expected.json`` holds, for each recipe, the spread of its own dataset's seed runs."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    shipped = json.loads((root / "src" / "defectlens" / "recipes" / "expected.json").read_text())
    for recipe, by_cpu in shipped.items():
        recorded = json.loads((root / "benchmarks" / "results" / f"{recipe}.json").read_text())["seeds"]["by_cpu"]
        for cpu, entry in by_cpu.items():
            assert entry["seeds"] == recorded[cpu]["seeds"], (recipe, cpu)
            assert entry["mean"] == round(recorded[cpu]["accuracy"]["mean"], 4), (recipe, cpu)
