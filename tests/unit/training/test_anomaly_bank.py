"""The memory bank's feature-level pieces (``defectlens.training.anomaly``), which the library's fit and the
benchmark probes both call: the per-image share of the patch pool and the leave-one-out distances."""

from __future__ import annotations

import torch

from defectlens.training.anomaly import leave_one_out_distances, pool_patches


def _maps(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 3, 4, 4, generator=torch.Generator().manual_seed(seed))


def test_each_image_gives_the_same_share_of_the_pool_whatever_the_batches() -> None:
    maps = _maps(5, 0).half()
    pool, owners, total = pool_patches([maps[:2], maps[2:3], maps[3:]], 5, 30)
    assert pool.shape == (30, 3) and pool.dtype == torch.float32 and total == 5 * 16
    assert torch.bincount(owners).tolist() == [6] * 5 and owners.tolist() == sorted(owners.tolist())
    for image in range(5):  # every row is a patch of the image it is said to come from, none twice
        patches = maps[image].permute(1, 2, 0).reshape(16, 3).float()
        rows = pool[owners == image]
        assert all(bool((patches == r).all(dim=1).any()) for r in rows)
        assert len({tuple(r.tolist()) for r in rows}) == 6
    again, _, _ = pool_patches([maps], 5, 30)
    assert torch.equal(pool_patches([maps], 5, 30)[0], again) and not torch.equal(
        pool_patches([maps], 5, 30, seed=1)[0], again
    )


def test_more_images_than_the_pool_holds_keep_one_patch_of_a_random_subset() -> None:
    pool, owners, total = pool_patches([_maps(6, 1), _maps(4, 2)], 10, 7)
    assert pool.shape == (7, 3) and total == 160
    assert len(set(owners.tolist())) == 7  # one patch each from 7 of the 10 images


def test_leave_one_out_distances_leave_each_images_own_bank_rows_out_across_batches() -> None:
    maps = _maps(4, 3)
    pool, owners, _ = pool_patches([maps], 4, 64)  # every patch of every image: each patch's own row is in the bank
    got = leave_one_out_distances([maps[:3], maps[3:]], pool, owners)
    assert got.shape == (4, 4, 4)
    for image in range(4):
        x = maps[image].permute(1, 2, 0).reshape(16, 3)
        others = pool[owners != image]
        want = torch.cdist(x, others, compute_mode="donot_use_mm_for_euclid_dist").amin(dim=1).reshape(4, 4)
        assert torch.allclose(torch.from_numpy(got[image]), want, atol=1e-3)
    assert (got > 1e-3).all()  # with its own rows in, every patch would have scored 0


def test_an_inspection_region_fills_the_pool_from_its_patches_only() -> None:
    maps = _maps(3, 4)
    cells = torch.zeros(16, dtype=torch.bool)
    cells[[0, 5, 6, 9]] = True
    pool, owners, total = pool_patches([maps], 3, 300, cells=cells)
    assert pool.shape == (12, 3) and total == 12  # 4 inspected patches of each image, all of them kept
    for image in range(3):
        inside = maps[image].permute(1, 2, 0).reshape(16, 3)[cells]
        assert torch.equal(pool[owners == image].sort(dim=0).values, inside.sort(dim=0).values)
