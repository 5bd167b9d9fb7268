"""The bundle spec's schema, rule by rule, with each refusal's exact sentence written out by hand.

A spec arrives from a file someone else wrote (a bundle, a checkpoint, ONNX metadata); every rule here
is one a bad file must meet before anything is built from it, and every message is what the user reads.
The expectations are hand-written, never produced by the code under test.
"""

from __future__ import annotations

import json

import pytest

from defectlens.core.spec import MAX_CLASSES, MAX_NAME_LENGTH, ModelSpec, SpecError, spec_problems

VALID = {
    "arch": "efficientnet_lite0",
    "input_size": 224,
    "in_channels": 3,
    "mean": [0.5, 0.5, 0.5],
    "std": [0.25, 0.25, 0.25],
    "class_names": ["defect", "ok"],
}


def spec(**changes):
    d = {**VALID, **changes}
    return {k: v for k, v in d.items() if v is not DROP}


DROP = object()


def test_the_minimal_spec_is_valid_and_every_optional_field_takes_its_default():
    """No threshold, temperature, tta, interpolation, resize, illumination or extra: all defaults, no problem."""
    assert spec_problems(spec()) == []
    s = ModelSpec.from_dict(spec())
    assert (s.temperature, s.tta, s.interpolation, s.resize, s.illumination, s.threshold) == (
        1.0, "none", "bilinear", "squash", "none", None
    )  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "problems"),
    [
        # the document itself
        ({"arch": DROP, "std": DROP}, ["missing field(s) arch, std"]),
        # arch and names
        ({"arch": ""}, ["arch '' must be a non-empty string"]),
        ({"arch": "a\x00b"}, ["arch 'a\\x00b' contains control characters"]),
        # input size: 16..2048 inclusive
        ({"input_size": 15}, ["input_size 15 must be an integer in 16..2048"]),
        ({"input_size": 2049}, ["input_size 2049 must be an integer in 16..2048"]),
        ({"input_size": 224.0}, ["input_size 224.0 must be an integer in 16..2048"]),
        # channels, and one mean/std value per channel
        ({"in_channels": 2}, ["in_channels 2 must be 1 or 3"]),
        ({"in_channels": 1}, ["mean has 3 values for 1 channel(s)", "std has 3 values for 1 channel(s)"]),
        ({"mean": [0.5]}, ["mean has 1 values for 3 channel(s)"]),
        ({"std": [0.2, 0.0, 0.2]}, ["std [0.2, 0.0, 0.2] must be > 0"]),
        ({"std": [0.2, -0.1, 0.2]}, ["std [0.2, -0.1, 0.2] must be > 0"]),
        ({"mean": "0.5"}, ["mean must be a list of finite numbers, got '0.5'"]),
        # classes
        ({"class_names": ["ok"]}, [f"class_names must be a list of 2 to {MAX_CLASSES} names, got ['ok']"]),
        ({"class_names": ["ok", "ok"]}, ["class_names ['ok', 'ok'] repeat a name"]),
        ({"class_names": ["ok", " "]}, ["class name ' ' must be a non-empty string"]),
        ({"positive_class": "scratch"}, ["positive_class 'scratch' is not one of class_names"]),
        # decision settings
        ({"threshold": 1.5}, ["threshold 1.5 must be null or a number in [0, 1]"]),
        ({"threshold": -0.1}, ["threshold -0.1 must be null or a number in [0, 1]"]),
        ({"temperature": 0.0}, ["temperature 0.0 must be a finite number in [0.001, 1000]"]),
        ({"temperature": None}, ["temperature None must be a finite number in [0.001, 1000]"]),
        # enumerations
        ({"tta": "rot"}, ["tta 'rot' must be one of none, flips, dihedral"]),
        (
            {"interpolation": "cubic"},
            ["interpolation 'cubic' must be one of nearest, bilinear, bicubic, lanczos, area"],
        ),
        ({"resize": "crop"}, ["resize 'crop' must be one of squash"]),
        ({"illumination": "auto"}, ["illumination 'auto' must be one of none, standardize"]),
        ({"extra": []}, ["extra must be an object"]),
    ],
)
def test_each_rule_refuses_with_its_own_sentence(changes, problems):
    assert spec_problems(spec(**changes)) == problems


@pytest.mark.parametrize(
    "changes",
    [
        {"input_size": 16},
        {"input_size": 2048},
        {"in_channels": 1, "mean": [0.5], "std": [0.25]},
        {"mean": [0.0, -1.0, 2.0]},  # a mean may be zero or negative; only std must be > 0
        {"threshold": 0.0},
        {"threshold": 1.0},
        {"threshold": None},
        {"temperature": 0.001},
        {"temperature": 1000},
        {"positive_class": "defect"},
        {"positive_class": None},
        {"class_names": [f"c{i}" for i in range(MAX_CLASSES)]},
        {"class_names": ["ok", "x" * MAX_NAME_LENGTH]},
        {"tta": "dihedral", "interpolation": "area", "resize": "squash", "illumination": "standardize"},
    ],
)
def test_the_edges_of_each_range_are_accepted(changes):
    assert spec_problems(spec(**changes)) == []


def test_too_many_classes_and_a_name_one_character_too_long_are_refused():
    names = [f"c{i}" for i in range(MAX_CLASSES + 1)]
    assert spec_problems(spec(class_names=names)) == [
        f"class_names must be a list of 2 to {MAX_CLASSES} names, got {names!r:.60}"
    ]
    long = "y" * 39 + "z" * (MAX_NAME_LENGTH - 38)  # MAX + 1 characters; the message shows the first 40
    assert spec_problems(spec(class_names=["ok", long])) == [
        f"class name {'y' * 39 + 'z'!r}... is longer than {MAX_NAME_LENGTH} characters"
    ]
    ctrl = "y" * 39 + "z\x07tail"  # the message shows the first 40 characters only
    shown = "y" * 39 + "z"
    assert spec_problems(spec(class_names=["ok", ctrl])) == [f"class name {shown!r} contains control characters"]


def test_a_repeat_is_reported_only_when_the_names_are_otherwise_fine():
    assert spec_problems(spec(class_names=["", ""])) == ["class name '' must be a non-empty string"] * 2


def test_a_document_that_is_not_an_object_names_its_type():
    assert spec_problems(["arch"]) == ["expected an object of spec fields, got list"]
    with pytest.raises(SpecError, match=r"^invalid model spec: expected an object of spec fields, got NoneType$"):
        ModelSpec.from_dict(None)


def test_every_problem_is_listed_in_one_message():
    with pytest.raises(SpecError) as info:
        ModelSpec.from_dict(spec(input_size=8, tta="rot"))
    assert str(info.value) == (
        "invalid model spec: input_size 8 must be an integer in 16..2048; "
        "tta 'rot' must be one of none, flips, dihedral"
    )
    bad = ModelSpec(arch="x", class_names=("a", "b"), threshold=2.0, temperature=0.0)
    with pytest.raises(SpecError) as info:
        bad.check()
    assert str(info.value) == (
        "invalid model spec: threshold 2.0 must be null or a number in [0, 1]; "
        "temperature 0.0 must be a finite number in [0.001, 1000]"
    )


def test_json_that_does_not_parse_is_refused_as_such():
    with pytest.raises(SpecError, match=r"^model spec is not valid JSON \(Expecting value: line 1 column 1"):
        ModelSpec.from_json("not json")


def test_the_written_form_is_plain_lists_with_sorted_keys_and_reads_back_equal():
    """What a bundle stores: plain JSON lists (a YAML dump of a tuple would carry a Python tag) and keys in a
    fixed order, so the same model always writes the same bytes."""
    s = ModelSpec.from_dict(spec(positive_class="defect", threshold=0.4))
    d = s.to_dict()
    assert (type(d["mean"]), type(d["std"]), type(d["class_names"])) == (list, list, list)
    assert set(d) == {
        "arch", "input_size", "in_channels", "mean", "std", "interpolation", "resize", "class_names",
        "positive_class", "threshold", "temperature", "tta", "illumination", "extra",
    }  # fmt: skip
    text = s.to_json()
    assert list(json.loads(text)) == sorted(d)
    assert ModelSpec.from_json(text) == s


def test_json_nested_past_the_interpreters_depth_is_refused_in_one_sentence():
    with pytest.raises(SpecError) as info:
        ModelSpec.from_json("[" * 100_000 + "]" * 100_000)
    assert str(info.value) == "model spec is nested too deeply to be a spec"
