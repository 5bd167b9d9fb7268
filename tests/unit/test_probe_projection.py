"""The projection probe (``benchmarks/probe_projection.py``, issue #29): the principal directions of the good patches,
and feature maps projected onto them, keep the distances that matter when the features live in fewer dimensions."""

from __future__ import annotations

import argparse

import pytest
import torch

from tests.benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def probe():
    return load_benchmark("probe_projection")


def _low_rank(n: int, seed: int) -> torch.Tensor:
    """(n, 12) rows that vary along 3 directions only, around an offset."""
    gen = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(torch.randn(12, 3, generator=gen))[0]
    return torch.randn(n, 3, generator=gen) * torch.tensor([5.0, 2.0, 1.0]) @ basis.T + 3.0


def test_three_directions_keep_all_the_variance_of_rows_that_vary_along_three(probe):
    pool = _low_rank(700, 0)
    mean, directions, kept = probe.principal_components(pool, 3)
    assert directions.shape == (12, 3) and len(kept) == 12
    assert kept[2] == pytest.approx(1.0, abs=1e-5) and kept[0] < 0.9  # the first one alone is not enough
    assert torch.allclose(directions.T @ directions, torch.eye(3), atol=1e-5)
    assert torch.allclose(mean, pool.mean(dim=0))


def test_projected_maps_keep_the_distances_between_patches(probe):
    pool = _low_rank(700, 1)
    mean, directions, _ = probe.principal_components(pool, 3)
    maps = pool[:32].T.reshape(1, 12, 4, 8)  # 32 patches as a (1, D, h, w) feature map
    z = probe.project(maps, mean, directions)
    assert z.shape == (1, 3, 4, 8)
    flat, zflat = maps.permute(0, 2, 3, 1).reshape(-1, 12), z.permute(0, 2, 3, 1).reshape(-1, 3)
    exact = torch.cdist(zflat, zflat, compute_mode="donot_use_mm_for_euclid_dist")
    assert torch.allclose(exact, torch.cdist(flat, flat, compute_mode="donot_use_mm_for_euclid_dist"), atol=1e-3)


def test_a_config_is_bank_rows_and_dims(probe):
    assert probe.config("8192:64") == (8192, 64)
    for bad in ("8192", "a:b", "0:64"):
        with pytest.raises(argparse.ArgumentTypeError, match=bad):
            probe.config(bad)
