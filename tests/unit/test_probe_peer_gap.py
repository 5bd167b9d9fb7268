"""The peer-gap probe (``benchmarks/probe_peer_gap.py``, issue #29): anomalib's re-weighted image score, written
once more on cached features, must be the paper's rule: the largest patch distance, lowered when the test patch
sits as far from the bank rows around its nearest one as from that row, kept when its nearest row is isolated."""

from __future__ import annotations

import pytest
import torch

from tests.benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def probe():
    return load_benchmark("probe_peer_gap")


def _identity_position(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.zeros(h, w), torch.ones(h, w)


def test_the_support_of_a_bank_row_is_itself_then_its_nearest_rows(probe):
    bank = torch.tensor([[0.0, 0.0], [1.0, 0.0], [5.0, 0.0], [5.5, 0.0], [20.0, 0.0]])
    support = probe.support_table(bank, k=3)
    assert support[:, 0].tolist() == [0, 1, 2, 3, 4]
    assert support[0].tolist() == [0, 1, 2] and support[3].tolist() == [3, 2, 1]


def test_the_largest_score_is_the_brute_force_largest_nearest_distance(probe):
    gen = torch.Generator().manual_seed(0)
    bank, maps = torch.randn(40, 6, generator=gen), torch.randn(3, 6, 4, 5, generator=gen)
    scores = probe.image_scores(maps, bank, probe.support_table(bank, k=4), *_identity_position(4, 5))
    x = maps.permute(0, 2, 3, 1).reshape(3, 20, 6)
    exact = torch.cdist(x, bank, compute_mode="donot_use_mm_for_euclid_dist").amin(dim=2).amax(dim=1)
    assert torch.allclose(torch.from_numpy(scores["largest"]), exact, atol=1e-4)
    assert torch.allclose(torch.from_numpy(scores["position_largest"]), exact, atol=1e-4)  # identity statistics


def test_a_patch_near_an_isolated_bank_row_keeps_its_score_and_one_in_a_cluster_loses_a_ninth(probe):
    # bank rows: a tight cluster of 9 around the origin, and one isolated row far away
    cluster = torch.cat([torch.zeros(1, 2), 0.002 * torch.randn(8, 2, generator=torch.Generator().manual_seed(1))])
    bank = torch.cat([cluster, torch.tensor([[50.0, 0.0]])])
    support = probe.support_table(bank, k=9)
    # image 0: one patch 3 units from the cluster (all 9 support distances ~3: weight 1 - 1/9);
    # image 1: one patch 3 units from the isolated row (its support is 50 away: weight ~1)
    maps = torch.tensor([[[0.0, 3.0]], [[50.0, 3.0]]]).reshape(2, 2, 1, 1)
    scores = probe.image_scores(maps, bank, support, *_identity_position(1, 1))
    assert scores["largest"] == pytest.approx([3.0, 3.0], abs=1e-2)
    assert scores["reweighted"][0] == pytest.approx(3.0 * 8 / 9, abs=2e-2)
    assert scores["reweighted"][1] == pytest.approx(3.0, abs=1e-3)


def test_position_statistics_pick_the_patch_and_scale_its_weighted_distance(probe):
    bank = torch.zeros(9, 1) + torch.linspace(-0.01, 0.01, 9)[:, None]
    maps = torch.tensor([4.0, 2.0]).reshape(1, 1, 1, 2)  # patch 0 is farther, but its place is busy
    mean, scale = torch.tensor([[3.5, 0.0]]), torch.tensor([[1.0, 1.0]])
    scores = probe.image_scores(maps, bank, probe.support_table(bank), mean, scale)
    assert scores["largest"][0] == pytest.approx(4.0, abs=1e-2)
    assert scores["position_largest"][0] == pytest.approx(2.0, abs=1e-2)  # patch 1: (2 - 0) / 1
    assert scores["position_reweighted"][0] == pytest.approx(2.0 * 8 / 9, abs=2e-2)
