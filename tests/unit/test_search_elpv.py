"""benchmarks/search_elpv.py: its variants are valid changes of the ELPV recipe, names are checked,
and a later search replaces only the rows it re-ran on the same device."""

from __future__ import annotations

import sys

import pytest

from defectlens.training.config import TrainConfig
from defectlens.workflows.recipes import recipe_path
from tests.benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def search():
    return load_benchmark("search_elpv")


def test_every_variant_is_a_distinct_valid_recipe(search):
    base = TrainConfig.from_yaml(recipe_path("elpv"))
    resolved = {}
    for name, overrides in search.VARIANTS.items():
        config = base.replace(**overrides)  # as run_variant does: an unknown key raises TypeError
        resolved[name] = config
        if name != "base":
            assert config != base, f"{name} changes nothing"
    assert resolved["base"] == base
    assert len({repr(c) for c in resolved.values()}) == len(resolved)


def test_unknown_variant_is_refused_by_name(search, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["search_elpv.py", "base", "bogus_variant"])
    with pytest.raises(SystemExit) as info:
        search.main()
    assert info.value.code == 2
    assert "bogus_variant" in capsys.readouterr().err


def test_a_later_run_replaces_its_own_row_only(search, tmp_path):
    gpu = [{"name": "base", "device": "NVIDIA H200", "val_macro_f1": 0.888}]
    gpu.append({"name": "lite2", "device": "NVIDIA H200", "val_macro_f1": 0.5})
    path = tmp_path / "search.json"
    search.write_results(path, gpu)
    cpu = {"name": "lite2", "device": "cpu", "val_macro_f1": 0.901}
    rerun = {"name": "lite2", "device": "NVIDIA H200", "val_macro_f1": 0.9}
    runs = search.merge_runs(search.read_runs(path), [cpu, rerun])
    assert [(r["name"], r["device"], r["val_macro_f1"]) for r in runs] == [
        ("base", "NVIDIA H200", 0.888),
        ("lite2", "NVIDIA H200", 0.9),
        ("lite2", "cpu", 0.901),
    ]
    assert search.read_runs(tmp_path / "absent.json") == []
