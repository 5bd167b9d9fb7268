"""benchmarks/pretrain_elpv_ssl.py and the ``ssl_simclr`` variant of search_elpv.py: SimCLR's loss ranks a
batch's own pairs first, the views are cells of the asked size in [0, 1], and the fine-tuning starts from
exactly the weights the pretraining wrote (its one-channel stem included)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def ssl():
    return load_benchmark("pretrain_elpv_ssl")


def test_the_loss_is_low_when_each_view_finds_its_partner_and_high_when_it_cannot(ssl):
    z = torch.randn(16, 32, generator=torch.Generator().manual_seed(0))
    paired = float(ssl.nt_xent(z, z + 0.01 * torch.randn_like(z), 0.2))
    shuffled = float(ssl.nt_xent(z, z[torch.randperm(16, generator=torch.Generator().manual_seed(1))], 0.2))
    assert paired < 0.5 and shuffled > np.log(31)  # chance is log(2N - 1): 31 other views


def test_views_are_augmented_crops_of_the_asked_size(ssl):
    cells = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (4, 64, 64), dtype=np.uint8))
    generator = torch.Generator().manual_seed(0)
    a, b = ssl.views(cells, 32, generator), ssl.views(cells, 32, generator)
    assert a.shape == b.shape == (4, 1, 32, 32)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert not torch.equal(a, b)  # two draws, two views


def test_the_variant_fine_tunes_from_the_written_weights(tmp_path):
    from defectlens.models import create_model

    search = load_benchmark("search_elpv")
    model = create_model("efficientnet_lite0", num_classes=2, in_channels=1, pretrained=True, input_size=64)
    with torch.no_grad():
        for p in model.features.parameters():
            p.add_(0.01)  # as if pretrained further
    path = tmp_path / "ssl.pt"
    torch.save(model.features.state_dict(), path)
    search.register_ssl_backbone(path)
    again = create_model("efficientnet_lite0_ssl", num_classes=2, in_channels=1, pretrained=True, input_size=64)
    saved, loaded = model.features.state_dict(), again.features.state_dict()
    assert saved.keys() == loaded.keys()
    for key in saved:
        torch.testing.assert_close(loaded[key], saved[key], rtol=1e-6, atol=1e-6, msg=key)
