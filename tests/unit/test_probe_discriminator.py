"""The second-method probe's discriminator (``benchmarks/probe_discriminator.py``, issue #29): trained on normal
patch features only, it must score features that leave the normal cloud above the normal ones, and the PatchCore
baseline beside it must do the same with its bank."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def probe():
    return load_benchmark("probe_discriminator")


def _maps(n: int, shift: float, seed: int) -> torch.Tensor:
    """(n, 8, 4, 4) feature maps of normal patches; ``shift`` moves one patch of each map off the cloud."""
    gen = torch.Generator().manual_seed(seed)
    f = torch.randn(n, 8, 4, 4, generator=gen)
    f[:, 0, 1, 2] += shift
    return f


def test_the_discriminator_learns_where_normal_features_end(probe):
    normal = _maps(1500, 0.0, 0)
    flat = normal.permute(0, 2, 3, 1).reshape(-1, 8)
    mean, std = flat.mean(dim=0), flat.std(dim=0)
    net, losses = probe.fit_discriminator(flat, mean, std, sigma=0.5, epochs=4, batch=1024)
    assert losses[-1] < losses[0]
    held_out, off = _maps(100, 0.0, 1), _maps(100, 6.0, 2)
    good, bad = probe.discriminator_scores(net, held_out, mean, std), probe.discriminator_scores(net, off, mean, std)
    assert np.mean(bad > np.median(good)) > 0.9


def test_the_patchcore_baseline_scores_an_image_by_its_farthest_patch(probe):
    bank = torch.zeros(1, 8)
    maps = torch.zeros(2, 8, 4, 4)
    maps[1, 3, 2, 2] = 5.0
    assert probe.patchcore_scores(bank, maps).tolist() == pytest.approx([0.0, 5.0])


def test_figures_rank_the_selection_set_and_the_test_split(probe):
    scores = {"val": np.array([0.1, 0.2, 0.3]), "defects": np.array([0.25, 0.9]), "test": np.array([0.1, 0.8])}
    out = probe.figures(scores, np.array([False, True]))
    assert out["selection_auroc"] == pytest.approx(5 / 6) and out["test_auroc"] == 1.0


def test_a_probe_writes_its_entry_and_keeps_the_rest_of_the_file(probe, tmp_path):
    out = tmp_path / "anomaly-casting.json"
    out.write_text('{"image": {"image_auroc": 0.969}, "second_method_probe": {"runs": {}}}')
    probe.write_entry(out, "projection_probe", {"runs": {"bank_8192_dims_64": {"selection_auroc": 0.957}}})
    written = json.loads(out.read_text())
    assert written["image"] == {"image_auroc": 0.969} and written["second_method_probe"] == {"runs": {}}
    assert written["projection_probe"]["runs"]["bank_8192_dims_64"]["selection_auroc"] == 0.957


def test_a_probe_record_names_its_question_command_and_machine_around_its_extras(probe, monkeypatch):
    monkeypatch.setattr("sys.argv", ["probe_x.py", "--work", "W"])
    doc = "Does it earn its place?\n\nDetails nobody reads."
    record = probe.probe_record(doc, "probe_x.py", {"val": 274}, "Lite0", {"a": {"auroc": 0.9}}, {"cpu": "AMD"}, bank=9)
    assert record == {
        "what": "Does it earn its place?",
        "command": "python benchmarks/probe_x.py --work W",
        "counts": {"val": 274},
        "features": "Lite0",
        "bank": 9,
        "runs": {"a": {"auroc": 0.9}},
        "machine": {"cpu": "AMD"},
    }


def test_the_good_only_threshold_is_the_conformal_level_of_the_held_out_good_scores(probe):
    # 100 good scores 0..99: the conformal 1 % level is the 100th of 101 ranks, the largest good score (99)
    scores = {
        "val": np.arange(100.0),
        "defects": np.array([50.0, 99.0, 100.0, 120.0]),
        "test": np.array([99.5, 10.0, 99.0, 5.0]),
    }
    got = probe.good_only_figures(scores, np.array([True, True, False, False]))
    assert got == {
        "selection_recall_at_good_only_threshold": 0.75,
        "test_recall_at_good_only_threshold": 0.5,
        "test_false_alarms_at_good_only_threshold": 0.5,
    }
