"""NaN and infinity wherever a number lives in a spec or a bundle's spec.json: refused, naming the field.

A NaN mean or std makes every input NaN (every probability NaN, and ``NaN >= threshold`` is never a
defect); a NaN threshold calls nothing a defect; an infinite temperature makes every part 50/50.
"""

from __future__ import annotations

import json
import math

import pytest

from defectlens.core.bundle import read_bundle
from defectlens.core.errors import DefectlensError
from defectlens.core.spec import ModelSpec, SpecError, spec_problems
from tests.unit.hardening.corpus import bundle_parts, write_crafted

BAD_NUMBERS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def valid_spec() -> dict:
    return ModelSpec(
        "simple_cnn", 32, 1, (0.5,), (0.25,), class_names=("defect", "ok"), positive_class="defect", threshold=0.5
    ).to_dict()


def number_fields(value: float) -> list[tuple[str, object]]:
    """Every numeric field of the spec, set to ``value`` (in a vector: one element of several)."""
    rgb = {"in_channels": 3, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    return [
        ("input_size", value),
        ("in_channels", value),
        ("mean", [value]),
        ("std", [value]),
        ("mean", {**rgb, "mean": [0.5, value, 0.5]}),
        ("std", {**rgb, "std": [0.25, 0.25, value]}),
        ("threshold", value),
        ("temperature", value),
    ]


def with_field(spec: dict, field: str, value: object) -> dict:
    return {**spec, **value} if isinstance(value, dict) else {**spec, field: value}


CASES = [(name, field, value) for name, bad in BAD_NUMBERS.items() for field, value in number_fields(bad)]


@pytest.mark.parametrize(("name", "field", "value"), CASES)
def test_schema_refuses_a_non_finite_number_naming_the_field(name, field, value):
    spec = with_field(valid_spec(), field, value)
    problems = spec_problems(spec)
    assert len(problems) == 1 and problems[0].startswith(field), problems
    with pytest.raises(SpecError, match=f"invalid model spec: {field}"):
        ModelSpec.from_dict(spec)


@pytest.mark.parametrize(("name", "field", "value"), CASES)
def test_spec_json_with_a_non_finite_literal_is_refused(name, field, value):
    text = json.dumps(with_field(valid_spec(), field, value))  # writes NaN, Infinity, -Infinity
    with pytest.raises(SpecError, match=field):
        ModelSpec.from_json(text)


@pytest.mark.parametrize("field", ["threshold", "temperature"])
def test_an_overflowing_literal_is_refused(field):
    text = json.dumps(valid_spec()).replace(f'"{field}": ', f'"{field}": 1e999, "_was": ')  # parses as inf
    with pytest.raises(SpecError, match=field):
        ModelSpec.from_json(text)


@pytest.mark.parametrize("name", list(BAD_NUMBERS))
def test_check_refuses_a_spec_built_in_code(name):
    spec = ModelSpec("simple_cnn", 32, 1, (0.5,), (0.25,), class_names=("defect", "ok"), threshold=BAD_NUMBERS[name])
    with pytest.raises(SpecError, match="threshold"):
        spec.check()


def test_a_finite_spec_at_the_edges_of_its_ranges_passes():
    spec = {**valid_spec(), "threshold": 0.0, "temperature": 1e-3, "input_size": 2048}
    assert spec_problems(spec) == [] and spec_problems({**spec, "threshold": 1.0, "temperature": 1e3}) == []


@pytest.mark.parametrize(("name", "field", "value"), [c for c in CASES if c[1] in ("mean", "threshold", "temperature")])
def test_bundle_with_a_non_finite_spec_number_is_refused(name, field, value, bundle, tmp_path):
    meta, members = bundle_parts(bundle)
    meta["spec"] = with_field({**meta["spec"], "positive_class": "defect"}, field, value)
    crafted = write_crafted(tmp_path / "crafted.dlens", meta, members)
    with pytest.raises(DefectlensError, match=f"refused: spec.json: invalid model spec: {field}"):
        read_bundle(crafted)
