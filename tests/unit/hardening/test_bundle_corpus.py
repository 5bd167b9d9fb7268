"""Issue #18 items 5 and 9: crafted bundles are refused with the reason, before anything is built;
a shipped bundle records no absolute path of the training machine."""

from __future__ import annotations

import json
import re
import warnings
import zipfile
from pathlib import Path

import pytest

from defectlens.core.bundle import MAX_MEMBER_BYTES, read_bundle, without_paths
from defectlens.core.errors import DefectlensError
from defectlens.core.spec import ModelSpec, SpecError, spec_problems
from tests.unit.hardening import corpus as C


@pytest.mark.parametrize("case", sorted(C.BUNDLES))
def test_crafted_bundle_is_refused_with_its_reason(case, bundle, image, tmp_path):
    spec = C.BUNDLES[case]
    crafted = spec.make(bundle, tmp_path / f"{case}.dlens")
    argv = ["predict", str(image), "--model", str(crafted)]
    result = C.run_cli([*argv, "--backend", spec.backend] if spec.backend != "auto" else argv)
    assert not result.crash and result.code == 2, (result.crash, result.out, result.err)
    message = result.err.strip()
    assert message.startswith("defectlens: error: ") and "\n" not in message
    assert spec.expect in message
    assert "plain-data" not in message  # a broken bundle is not called a broken checkpoint


def test_declared_bomb_is_refused_before_a_byte_is_read(bundle, tmp_path, monkeypatch):
    crafted = C.BUNDLES["bomb_declared_2gib"].make(bundle, tmp_path / "bomb.dlens")

    def no_read(self, name, pwd=None):
        raise AssertionError(f"read {name} before checking the directory")

    monkeypatch.setattr(zipfile.ZipFile, "read", no_read)
    with pytest.raises(DefectlensError, match=f"limit {MAX_MEMBER_BYTES:,}"):
        read_bundle(crafted)


def test_a_valid_bundle_passes_every_check(bundle):
    loaded = read_bundle(bundle)
    assert spec_problems(loaded.meta["spec"]) == []
    assert loaded.spec.class_names == ("ok", "defect")


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("input_size", True, "input_size"),  # a bool is not an integer
        ("input_size", 8, "16..2048"),
        ("class_names", ["ok"], "2 to 1000"),
        ("class_names", ["ok", ""], "non-empty"),
        ("class_names", ["ok", "x" * 101], "longer than 100"),
        ("threshold", "0.5", "threshold"),
        ("temperature", float("inf"), "temperature"),
        ("mean", ["a"], "finite numbers"),
        ("illumination", "sunlight", "illumination"),
        ("extra", [], "extra"),
    ],
)
def test_spec_schema_names_the_field(field, value, words):
    spec = ModelSpec("simple_cnn", 32, 1, (0.5,), (0.25,), class_names=("ok", "defect")).to_dict()
    spec[field] = value
    with pytest.raises(SpecError, match=re.escape(words)):
        ModelSpec.from_dict(spec)


def test_spec_json_records_no_absolute_path(tmp_path):
    """Item 9: a run trained from /abs/folders exports a spec.json with names only."""
    from defectlens.export import export_bundle
    from tests.helpers import make_checkpoint

    run = make_checkpoint(tmp_path / "machine" / "runs" / "r1")
    import torch

    payload = torch.load(run / "best.pt", weights_only=True)
    payload["config"] = {"data": str(tmp_path / "machine" / "datasets" / "casting"), "out": str(tmp_path / "runs")}
    (run / "best.pt.sha256").unlink()
    torch.save(payload, run / "best.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = export_bundle(run / "best.pt", tmp_path / "m.dlens")
    with zipfile.ZipFile(result.path) as zf:
        text = zf.read("spec.json").decode()
    assert str(tmp_path) not in text and "/machine/" not in text
    meta = json.loads(text)
    assert meta["training_config"] == {"data": "casting", "out": "runs"}
    assert "casting" in meta["parity"].get("note", "casting")
    strings = re.findall(r'"([^"]*)"', text)
    assert not [s for s in strings if s.startswith("/") or re.match(r"^[A-Za-z]:\\\\", s)]


def test_without_paths_keeps_names_numbers_and_relative_paths():
    meta = {
        "a": "/home/ana/data/casting",
        "b": "dataset C:\\Users\\ana\\parts here",
        "c": ["runs/x", 3, None, "0.5/1", "https://example.org/x"],
    }
    assert without_paths(meta) == {
        "a": "casting",
        "b": "dataset parts here",
        "c": ["runs/x", 3, None, "0.5/1", "https://example.org/x"],
    }


def test_checkpoint_is_not_mistaken_for_a_bundle(run_dir, tmp_path):
    """A checkpoint renamed .dlens is reported as what it is, not as a plain-data problem."""
    renamed = tmp_path / "model.dlens"
    renamed.write_bytes((run_dir / "best.pt").read_bytes())
    with pytest.raises(DefectlensError, match="members are wrong"):
        read_bundle(renamed)
    assert Path(run_dir / "best.pt").is_file()
