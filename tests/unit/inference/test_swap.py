"""ModelSlot, the one owner of the model in force: the gate mode carries over to a new model, the previous one is
kept for a rollback (twice: back again), a reload re-reads the start file, and a refused model changes nothing."""

from __future__ import annotations

import shutil

import pytest

from defectlens.core.errors import DefectlensError
from defectlens.inference.predictor import Predictor
from defectlens.inference.swap import ClassesDiffer, ModelSlot, NoPrevious


def test_the_gate_mode_and_load_settings_carry_over(bundle, constant_bundle) -> None:
    slot = ModelSlot(Predictor.load(bundle, gate="warn"), threads=1, precision="fp32")
    done = slot.swap(constant_bundle("defect_last"))
    assert slot.current.gate.mode == "warn" and done.action == "load" and done.load_ms > 0
    assert slot.current.model_id == done.model_id != done.previous_model_id


def test_rollback_swaps_current_and_previous_and_back_again(bundle, constant_bundle) -> None:
    first = Predictor.load(bundle)
    slot = ModelSlot(first)
    with pytest.raises(NoPrevious):
        slot.rollback()
    second = slot.swap(constant_bundle("defect_last"))
    assert slot.rollback().model_id == first.model_id and slot.current is first
    assert slot.rollback().model_id == second.model_id
    assert slot.ids() == (second.model_id, first.model_id)


def test_a_refused_model_changes_nothing(bundle, constant_bundle, tmp_path) -> None:
    first = Predictor.load(bundle)
    slot = ModelSlot(first)
    with pytest.raises(ClassesDiffer, match=r"\[crack, ok, scratch\] differ from the served model's \[ok, defect\]"):
        slot.swap(constant_bundle("three_classes"))
    with pytest.raises(DefectlensError, match=r"not a \.dlens bundle"):
        slot.swap(tmp_path, bundle_only=True)

    def refuse(_: Predictor) -> None:
        raise DefectlensError("the caller's own check")

    with pytest.raises(DefectlensError, match="the caller's own check"):
        slot.swap(constant_bundle("defect_last"), check=refuse)
    assert slot.current is first and slot.previous is None


def test_reload_reads_the_start_file_again(bundle, constant_bundle, tmp_path) -> None:
    with pytest.raises(DefectlensError, match="nothing to reload"):
        ModelSlot(Predictor.load(bundle)).reload()
    served = tmp_path / "served.dlens"
    shutil.copyfile(bundle, served)
    slot = ModelSlot(Predictor.load(served), path=served)
    shutil.copyfile(constant_bundle("defect_last"), served)
    done = slot.reload()
    assert done.action == "reload" and done.model_id == Predictor.load(served).model_id != done.previous_model_id
