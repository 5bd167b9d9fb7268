"""benchmarks/search_elpv.py: its variants are valid changes of the ELPV recipe, and names are checked."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from defectlens.config import TrainConfig, config_path

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def search():
    sys.path.insert(0, str(ROOT / "benchmarks"))  # search_elpv imports its sibling machine.py
    try:
        spec = importlib.util.spec_from_file_location("search_elpv", ROOT / "benchmarks" / "search_elpv.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def test_every_variant_is_a_distinct_valid_recipe(search):
    base = TrainConfig.from_yaml(config_path("elpv"))
    resolved = {}
    for name, overrides in search.VARIANTS.items():
        config = TrainConfig.from_dict({**base.to_dict(), **overrides}, source=name)  # refuses unknown keys
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
