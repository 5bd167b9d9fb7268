"""Partial fine-tuning on cached frozen-stage outputs: the split network equals the whole one."""

from __future__ import annotations

import pytest
import torch

from defectlens.core.checkpoint import read_checkpoint
from defectlens.core.errors import DefectlensError
from defectlens.models import create_model, dihedral
from defectlens.training import train
from defectlens.training.config import TrainConfig
from defectlens.training.partial import Prefix, Suffix, cache_prefix


@pytest.fixture(autouse=True)
def _two_threads():
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(old)


@pytest.mark.parametrize(("name", "n"), [("efficientnet_lite0", 6), ("mobilenet_v3_small", 3), ("resnet18", 5)])
def test_prefix_then_suffix_is_the_whole_model(name, n):
    torch.manual_seed(0)
    model = create_model(name, num_classes=2, in_channels=1, input_size=64).eval()
    x = torch.rand(3, 1, 64, 64)
    with torch.inference_mode():
        whole = model(x)
        split = Suffix(model, n)(Prefix(model, n)(x))
    assert torch.allclose(whole, split, atol=1e-5)


def test_dihedral_gives_eight_distinct_transforms():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    outs = {tuple(dihedral(x, k).flatten().tolist()) for k in range(8)}
    assert len(outs) == 8
    assert torch.equal(dihedral(x, 0), x)


def test_cache_holds_each_variant():
    torch.manual_seed(0)
    model = create_model("mobilenet_v3_small", num_classes=2, in_channels=1, input_size=32).eval()
    images = (torch.rand(5, 1, 32, 32) * 255).to(torch.uint8)
    cache = cache_prefix(model, images, 2, variants=(0, 4))
    assert cache.shape[:2] == (2, 5) and cache.dtype == torch.bfloat16
    with torch.inference_mode():
        flipped = Prefix(model, 2)(images.flip(-1).float() / 255)
    assert torch.allclose(cache[1].float(), flipped, atol=2e-2, rtol=2e-2)


def test_partial_training_runs_and_keeps_frozen_stages(tiny_dataset, tmp_path):
    config = TrainConfig(
        data=str(tiny_dataset),
        model="mobilenet_v3_small",
        pretrained=False,
        channels=1,
        input_size=32,
        epochs=3,
        batch_size=16,
        lr=3e-3,
        augment="flips",
        freeze_stages=3,
        cache_frozen=True,
        cache_variants=4,
        patience=0,
        workers=1,
        evaluate=False,
        out=str(tmp_path / "runs"),
    )
    result = train(config)
    assert "outputs of 4 flips/rotations" in (result.run_dir / "train.log").read_text()
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    torch.manual_seed(config.seed)
    fresh = create_model("mobilenet_v3_small", num_classes=2, in_channels=1, input_size=32).state_dict()
    trained = read_checkpoint(result.run_dir / "last.pt")["state_dict"]
    frozen = [k for k in fresh if k.startswith(("features.0.", "features.1.", "features.2."))]
    moved = [k for k in fresh if k.startswith("features.3.") and k.endswith("weight")]
    assert frozen and all(torch.equal(fresh[k], trained[k]) for k in frozen)
    assert any(not torch.equal(fresh[k], trained[k]) for k in moved)


def test_cache_frozen_needs_frozen_stages():
    with pytest.raises(DefectlensError, match="cache_frozen needs"):
        TrainConfig(cache_frozen=True, freeze_stages=0)
    with pytest.raises(DefectlensError, match="cache_frozen needs"):
        TrainConfig(cache_frozen=True, freeze_stages=4, augment="standard")
