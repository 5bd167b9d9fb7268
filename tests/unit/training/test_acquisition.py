"""The ``line`` augmentation: seeded, shape- and type-preserving, and usable with cached frozen stages."""

from __future__ import annotations

import torch

from defectlens.training.acquisition import acquisition_shift
from defectlens.training.augment import build_augment
from defectlens.training.config import TrainConfig


def _batch() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (6, 1, 48, 48), generator=g, dtype=torch.uint8)


def test_a_seeded_draw_repeats_and_changes_the_images():
    batch = _batch()
    a = acquisition_shift(batch, torch.Generator().manual_seed(3))
    b = acquisition_shift(batch, torch.Generator().manual_seed(3))
    c = acquisition_shift(batch, torch.Generator().manual_seed(4))
    assert a.dtype == torch.uint8 and a.shape == batch.shape
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert sum(not torch.equal(x, y) for x, y in zip(a, batch, strict=True)) >= 4  # most images drift


def test_line_is_an_augment_level_and_cacheable():
    out = build_augment("line")(_batch(), torch.Generator().manual_seed(0))
    assert out.dtype == torch.float32 and float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    config = TrainConfig(augment="line", cache_frozen=True, freeze_stages=6, cache_variants=4)
    assert config.augment == "line"
