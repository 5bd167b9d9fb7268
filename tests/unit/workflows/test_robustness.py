"""Robustness: the shift family, and a model's figures under each shift from the evaluation's metrics."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from defectlens.data.manifest import Manifest
from defectlens.data.shifts import KINDS, STRENGTHS, family
from defectlens.inference.predictor import Predictor
from defectlens.workflows.robustness import evaluate_shifts


def test_the_family_is_documented_and_applies_to_gray_and_rgb():
    shifts = family()
    assert {s.kind for s in shifts} == set(KINDS) and {s.strength for s in shifts} == set(STRENGTHS)
    rng = np.random.default_rng(0)
    for mode, shape in (("L", (40, 50)), ("RGB", (40, 50, 3))):
        img = Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode=mode)
        for s in shifts:
            out = s.apply(img, seed=1)
            assert out.size == img.size and out.mode == img.mode, s.name
    assert [s.value for s in family(("exposure",), ("moderate",))] == [0.8, 1.2]
    with pytest.raises(ValueError, match="unknown shift"):
        family(("fog",))


def test_evaluate_shifts_matches_the_clean_predictions(tiny_dataset, run_dir):
    predictor = Predictor.load(run_dir)
    manifest = Manifest.read(tiny_dataset)
    result = evaluate_shifts(predictor, manifest, shifts=family(("exposure", "blur"), ("moderate",)))
    records = manifest.split("test")
    decided = [predictor.predict(manifest.resolve(r)).prediction == r.label for r in records]
    assert result["clean"]["accuracy"] == pytest.approx(np.mean(decided))
    assert [r["name"] for r in result["shifts"]] == ["exposure 0.8", "exposure 1.2", "blur 1"]
    for r in result["shifts"]:
        assert r["accuracy_change"] == pytest.approx(r["accuracy"] - result["clean"]["accuracy"])
    assert set(result["worst_by_kind"]) == {"exposure", "blur"}
    assert result["worst"]["accuracy"] == min(r["accuracy"] for r in result["shifts"])
