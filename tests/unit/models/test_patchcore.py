"""PatchCore's pieces: the coreset, the nearest-neighbour distances, the map, the rebuild from weights."""

from __future__ import annotations

import pytest
import torch

from defectlens.core.anomaly import ANOMALOUS, ANOMALY_TASK
from defectlens.core.errors import DefectlensError
from defectlens.models import default_spec, model_from_state
from defectlens.models.patchcore import create_patchcore, gaussian_kernel, greedy_coreset, nearest_squared


def test_the_coreset_keeps_the_rare_rows_random_sampling_would_miss() -> None:
    gen = torch.Generator().manual_seed(0)
    common = torch.randn(2000, 8, generator=gen) * 0.1  # one dense cluster
    rare = torch.full((3, 8), 5.0) + torch.arange(3.0)[:, None]  # three far-out patches
    feats = torch.cat([common, rare])
    chosen = greedy_coreset(feats, 10, seed=1)
    assert len(set(chosen.tolist())) == 10
    assert {2000, 2001, 2002} <= set(chosen.tolist())


def test_a_coreset_asked_for_more_rows_than_there_are_keeps_them_all() -> None:
    feats = torch.randn(7, 4)
    assert greedy_coreset(feats, 10).tolist() == list(range(7))


def test_the_coreset_is_the_same_for_the_same_seed_and_differs_for_another() -> None:
    feats = torch.randn(500, 80, generator=torch.Generator().manual_seed(3))  # > 64 dims: projected
    a, b, c = (greedy_coreset(feats, 20, seed=s) for s in (0, 0, 1))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_patch_scores_are_the_distance_to_the_nearest_bank_row() -> None:
    model = create_patchcore("efficientnet_lite0", in_channels=3, input_size=64, pretrained=False, bank=5)
    dims = model.head.bank.shape[1]
    bank = torch.randn(5, dims, generator=torch.Generator().manual_seed(0))
    model.head.set_bank(bank)
    fmap = torch.randn(2, dims, 8, 8, generator=torch.Generator().manual_seed(1))
    got = model.head.patch_scores(fmap)
    patches = fmap.permute(0, 2, 3, 1).reshape(2, 64, dims)
    want = torch.cdist(patches, bank[None].expand(2, -1, -1)).amin(dim=2).reshape(2, 8, 8)
    assert torch.allclose(got, want, atol=1e-4)
    # a patch equal to a bank row scores 0, up to the rounding of |x|^2 - 2 x.m + |m|^2 in float32 (the
    # matrix-product form the exported graph uses), far below any other patch's score
    fmap[0, :, 3, 4] = bank[2]
    scores = model.head.patch_scores(fmap)
    assert float(scores[0, 3, 4]) < 0.02 < float(scores.flatten()[scores.flatten() > 0.02].min())


def test_the_image_score_is_the_largest_patch_score_and_the_logit_is_zero_at_the_threshold() -> None:
    model = create_patchcore("efficientnet_lite0", in_channels=1, input_size=64, pretrained=False, bank=3)
    model.set_normalisation(center=2.0, width=0.5, map_range=(0.1, 2.0))
    patches = torch.tensor([[[0.5, 2.0], [1.0, 0.2]], [[3.0, 0.0], [0.0, 0.0]]])
    scores = model.head.image_scores(patches)
    assert scores.tolist() == [2.0, 3.0]
    logits = model.head.logits(scores)
    assert logits[:, 0].tolist() == [0.0, 0.0]
    assert logits[:, 1].tolist() == [0.0, 2.0]  # (3 - 2) / 0.5


def test_a_map_scored_image_ranks_a_defect_spanning_patches_above_a_lone_noisy_patch_of_the_same_peak() -> None:
    """``image_score="map"``: the image's score is its anomaly map's largest value, so a 3x3 blob outranks one
    noisy patch of the same height, which the largest patch score ties; the spec's choice survives a rebuild (a
    spec without it is an older bundle's: the largest patch score)."""
    lone, blob = torch.zeros(8, 8), torch.zeros(8, 8)
    lone[4, 4] = 1.0
    blob[3:6, 3:6] = 1.0
    patches = torch.stack([lone, blob])
    by_patch = create_patchcore("efficientnet_lite0", in_channels=1, input_size=64, pretrained=False, bank=3)
    by_map = create_patchcore(
        "efficientnet_lite0", in_channels=1, input_size=64, pretrained=False, bank=3, image_score="map"
    )
    assert by_patch.head.image_scores(patches).tolist() == [1.0, 1.0]
    scores = by_map.head.image_scores(patches)
    assert torch.equal(scores, by_map.head.anomaly_map(patches).flatten(1).amax(dim=1))
    assert float(scores[0]) < 0.5 < float(scores[1]) <= 1.0
    by_map.head.set_bank(torch.randn(6, by_map.head.bank.shape[1], generator=torch.Generator().manual_seed(2)))
    by_map.set_normalisation(center=float(scores[1]), width=0.1, map_range=(0.0, 1.0))
    x = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(3))
    logits, _, amap = by_map.forward_outputs(x)
    assert torch.allclose(logits, by_map(x)) and torch.allclose(
        logits[:, 1], (amap.flatten(1).amax(1) - scores[1]) / 0.1
    )
    spec = default_spec("efficientnet_lite0", in_channels=1, input_size=64, class_names=("good", ANOMALOUS))
    spec = spec.replace(positive_class=ANOMALOUS, threshold=0.5, extra={"task": ANOMALY_TASK, "image_score": "map"})
    assert torch.allclose(model_from_state(by_map.state_dict(), spec)(x), by_map(x))
    older = spec.replace(extra={"task": ANOMALY_TASK})
    assert model_from_state(by_map.state_dict(), older).head.image_score == "patch"
    with pytest.raises(DefectlensError, match=r"image score must be one of map, patch, got 'mean'"):
        create_patchcore("efficientnet_lite0", in_channels=1, input_size=64, pretrained=False, image_score="mean")


def test_the_anomaly_map_is_smoothed_at_the_input_size_and_peaks_where_the_patch_does() -> None:
    model = create_patchcore("efficientnet_lite0", in_channels=3, input_size=64, pretrained=False, bank=2)
    patches = torch.zeros(1, 8, 8)
    patches[0, 2, 5] = 1.0
    amap = model.head.anomaly_map(patches)
    assert amap.shape == (1, 1, 64, 64)
    y, x = divmod(int(amap.flatten().argmax()), 64)
    assert abs(y - (2 * 8 + 4)) <= 4 and abs(x - (5 * 8 + 4)) <= 4
    assert float(amap.max()) < 1.0  # smoothed, not the raw peak
    assert float(gaussian_kernel(4.0).sum()) == pytest.approx(1.0)


def test_a_bad_normalisation_is_refused() -> None:
    model = create_patchcore("efficientnet_lite0", in_channels=3, input_size=64, pretrained=False, bank=2)
    with pytest.raises(DefectlensError, match="width > 0"):
        model.set_normalisation(center=1.0, width=0.0, map_range=(0.0, 1.0))


def test_only_efficientnet_lite_backbones_are_tapped() -> None:
    with pytest.raises(DefectlensError, match="EfficientNet-Lite"):
        create_patchcore("resnet18", in_channels=3, input_size=64, pretrained=False)


def test_a_fitted_model_is_rebuilt_from_its_weights_and_spec() -> None:
    model = create_patchcore("efficientnet_lite0", in_channels=1, input_size=64, pretrained=False, bank=4)
    model.head.set_bank(torch.randn(9, model.head.bank.shape[1]))
    model.set_normalisation(center=1.5, width=0.25, map_range=(0.2, 1.5))
    spec = default_spec("efficientnet_lite0", in_channels=1, input_size=64, class_names=("good", ANOMALOUS))
    spec = spec.replace(positive_class=ANOMALOUS, threshold=0.5, extra={"task": ANOMALY_TASK})
    again = model_from_state(model.state_dict(), spec)
    x = torch.rand(2, 1, 64, 64)
    assert again.head.bank.shape == (9, model.head.bank.shape[1])
    assert torch.allclose(again(x), model(x))


def test_patch_scores_are_normalised_by_what_good_parts_score_at_each_place() -> None:
    model = create_patchcore("efficientnet_lite0", in_channels=1, input_size=64, pretrained=False, bank=5)
    model.head.set_bank(torch.randn(5, model.head.bank.shape[1], generator=torch.Generator().manual_seed(0)))
    fmap = torch.randn(2, model.head.bank.shape[1], 8, 8, generator=torch.Generator().manual_seed(1))
    raw = model.head.distances(fmap)
    assert torch.equal(model.head.patch_scores(fmap), raw)  # no statistics: the distances themselves
    mean, scale = torch.rand(8, 8) * 3, torch.rand(8, 8) + 0.5
    model.head.set_locations(mean, scale)
    assert torch.allclose(model.head.patch_scores(fmap), (raw - mean) / scale)
    for bad in ((torch.zeros(8, 8), torch.zeros(8, 8)), (torch.zeros(8, 8), torch.ones(4, 4))):
        with pytest.raises(DefectlensError, match="scale > 0"):
            model.head.set_locations(*bad)


def test_a_model_with_position_statistics_and_one_from_before_them_are_rebuilt() -> None:
    model = create_patchcore("efficientnet_lite0", in_channels=1, input_size=64, pretrained=False, bank=4)
    model.head.set_bank(torch.randn(6, model.head.bank.shape[1]))
    model.head.set_locations(torch.rand(8, 8), torch.rand(8, 8) + 0.5)
    spec = default_spec("efficientnet_lite0", in_channels=1, input_size=64, class_names=("good", ANOMALOUS))
    spec = spec.replace(positive_class=ANOMALOUS, threshold=0.5, extra={"task": ANOMALY_TASK})
    x = torch.rand(2, 1, 64, 64)
    again = model_from_state(model.state_dict(), spec)
    assert torch.allclose(again(x), model(x)) and again.head.loc_mean.shape == (8, 8)
    before = {k: v for k, v in model.state_dict().items() if not k.startswith("head.loc_")}  # an older bundle
    older = model_from_state(before, spec)
    assert torch.equal(older.head.loc_scale, torch.ones(1, 1))
    assert torch.allclose(older.head.patch_scores(torch.ones(1, model.head.bank.shape[1], 8, 8)),
                          older.head.distances(torch.ones(1, model.head.bank.shape[1], 8, 8)))  # fmt: skip


def test_a_spec_naming_an_unknown_task_is_refused() -> None:
    spec = default_spec("efficientnet_lite0", class_names=("a", "b")).replace(extra={"task": "segmentation"})
    with pytest.raises(DefectlensError, match="segmentation"):
        model_from_state({}, spec)


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"kind": "anomaly_map", "range": [0.5, 2.0]}, None),
        ({"kind": "heat"}, "kind must be 'cam' or 'anomaly_map'"),
        ({"kind": "anomaly_map", "range": [2.0, 0.5]}, "low < high"),
        ({"kind": "anomaly_map", "range": [0.0, float("nan")]}, "two finite numbers"),
        ({"kind": "anomaly_map", "range": [True, 2.0]}, "two finite numbers"),
        ({"kind": "anomaly_map"}, "two finite numbers"),
    ],
)
def test_a_bundle_names_its_anomaly_maps_drawing_range_or_is_refused(entry: dict, problem: str | None) -> None:
    from safetensors.torch import save

    from defectlens.core.bundle import cam_problem

    weights = save({"w": torch.tensor([[0.0], [1.0]]), "b": torch.zeros(2)})
    found = cam_problem({"output": "cam_features", "weight": "w", "bias": "b", **entry}, weights)
    assert (found is None) if problem is None else (problem in (found or ""))


def test_the_overlay_draws_the_map_with_the_fixed_range_not_stretched_per_image() -> None:
    import numpy as np

    from defectlens.inference.cam import anomaly_map_at

    flat_good = np.full((1, 4, 4), 1.0, np.float32)
    assert anomaly_map_at(flat_good, (2.0, 6.0)).max() == 0.0  # below the typical level: cold, not stretched
    bad = np.array([[[2.0, 4.0], [6.0, 9.0]]], np.float32)
    assert anomaly_map_at(bad, (2.0, 6.0)).tolist() == [[0.0, 0.5], [1.0, 1.0]]


@pytest.mark.parametrize("channels", [1, 3])
def test_building_the_model_keeps_the_imagenet_batchnorm_statistics(channels: int) -> None:
    """The dry runs that find the taps and the feature width must not move BatchNorm's running statistics: the
    features are the package's ImageNet weights, exactly (a training-mode pass shifted them by up to 1.9)."""
    from defectlens.models.classifier import _to_grayscale
    from defectlens.models.registry import get_entry

    model = create_patchcore("efficientnet_lite0", in_channels=channels, input_size=96)
    fresh, _ = get_entry("efficientnet_lite0").build(pretrained=True, input_size=96)
    if channels == 1:
        _to_grayscale(fresh)
    reference = fresh.net.state_dict()
    ours = {k.removeprefix("features."): v for k, v in model.state_dict().items() if k.startswith("features.")}
    checked = 0
    for key, value in ours.items():
        if key.endswith(("running_mean", "running_var")):
            name = key.replace("stem.0.", "_conv_stem.").replace("stem.1.", "_bn0.").replace("blocks.", "_blocks.")
            assert torch.equal(value, reference[name]), key
            checked += 1
    assert checked > 10


def test_nearest_squared_distances_leave_excluded_bank_rows_out() -> None:
    gen = torch.Generator().manual_seed(2)
    bank, x = torch.randn(6, 5, generator=gen), torch.randn(2, 4, 5, generator=gen)
    full = torch.cdist(x, bank[None].expand(2, -1, -1)).square()  # (2, 4, 6)
    got = nearest_squared(x, bank, bank.square().sum(dim=1))
    assert torch.allclose(got, full.amin(dim=2), atol=1e-4)
    exclude = torch.zeros(2, 1, 6, dtype=torch.bool)
    exclude[0, 0, full[0].argmin(dim=1)] = True  # image 0 loses every row any of its patches was nearest to
    kept = nearest_squared(x, bank, bank.square().sum(dim=1), exclude=exclude)
    assert torch.allclose(kept[0], full[0].masked_fill(exclude[0], float("inf")).amin(dim=1), atol=1e-4)
    assert bool((kept[0] > got[0]).all()) and torch.equal(kept[1], got[1])


def test_stride_4_features_are_the_finer_block_halved_onto_the_same_grid_beside_the_default_ones() -> None:
    from defectlens.models.patchcore import patch_strides

    torch.manual_seed(0)
    default = create_patchcore("efficientnet_lite0", in_channels=1, input_size=64, pretrained=False)
    torch.manual_seed(0)
    finer = create_patchcore("efficientnet_lite0", in_channels=1, input_size=64, pretrained=False, strides=(4, 8, 16))
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        a, b = default.features(x), finer.features(x)
        four = finer.features._maps(x)[0]  # the stride-4 block's 3x3 averages, (2, 24, 16, 16)
    assert a.shape == (2, 152, 8, 8) and b.shape == (2, 176, 8, 8)
    assert torch.allclose(b[:, 24:], a)  # the stride-8/16 part is the default's
    assert torch.allclose(b[:, :24], torch.nn.functional.avg_pool2d(four, 2))
    assert patch_strides("4,8,16") == (4, 8, 16) and patch_strides("8,16") == (8, 16)
    for bad in ("4,8", "8,16,32", "x"):
        with pytest.raises(DefectlensError, match="patch strides must be one of 8,16, 4,8,16"):
            patch_strides(bad)


def test_zero_padding_shrinks_only_the_border_patches_and_unknown_padding_is_refused() -> None:
    """``padding="zeros"`` (anomalib's pooling) counts the padding in each tap's 3x3 average: the patches of the
    border differ, the inner ones (out of reach of every tap's border, the upsampled stride-16 one included) are
    the same numbers, and a corner's stride-8 part is the valid average times 4/9."""
    torch.manual_seed(0)
    valid = create_patchcore("efficientnet_lite0", in_channels=1, input_size=128, pretrained=False)
    torch.manual_seed(0)
    zeros = create_patchcore("efficientnet_lite0", in_channels=1, input_size=128, pretrained=False, padding="zeros")
    x = torch.rand(2, 1, 128, 128)
    with torch.no_grad():
        a, b = valid.features(x), zeros.features(x)
    assert a.shape == b.shape == (2, 152, 16, 16)
    assert torch.allclose(a[..., 3:-3, 3:-3], b[..., 3:-3, 3:-3])
    assert not torch.allclose(a[..., 0, 0], b[..., 0, 0])
    assert torch.allclose(b[:, :40, 0, 0], a[:, :40, 0, 0] * 4 / 9, atol=1e-6)  # the stride-8 tap's corner
    with pytest.raises(DefectlensError, match="patch padding must be one of valid, zeros, got 'same'"):
        create_patchcore("efficientnet_lite0", in_channels=1, input_size=64, pretrained=False, padding="same")


def test_patch_features_find_their_blocks_at_input_sizes_not_divisible_by_16() -> None:
    model = create_patchcore("efficientnet_lite0", in_channels=1, input_size=72, pretrained=False, strides=(4, 8, 16))
    assert model.features(torch.rand(1, 1, 72, 72)).shape == (1, 176, 9, 9)  # 72 / 8; the stride-16 map is 5x5


def test_patches_outside_the_inspection_region_never_decide_the_score_and_stay_cold_on_the_map() -> None:
    """``set_region``: a patch counts when its cell lies at least half inside the mask; a patch outside scores the
    image's lowest inspected score (patch and map scores alike); a full mask is the whole frame, an empty one is
    refused; the region survives a rebuild, and a model from before regions inspects the whole frame."""
    model = create_patchcore("efficientnet_lite0", in_channels=1, input_size=64, pretrained=False, bank=3)
    mask = torch.zeros(64, 64, dtype=torch.bool)
    mask[:, :28] = True  # columns 0-2 of the 8x8 grid fully, column 3 half (4 of its 8 pixels)
    assert model.set_region(mask) == (32, 64)
    assert model.head.region[:, :4].eq(1).all() and model.head.region[:, 4:].eq(0).all()
    patches = torch.zeros(2, 8, 8)
    patches[0, 2, 1] = 1.0  # inside
    patches[1, 2, 6] = 9.0  # outside: a busy background
    patches[1, 5, 2] = 0.5
    kept = model.head.inspected(patches)
    assert model.head.image_scores(kept).tolist() == [1.0, 0.5]
    assert torch.equal(kept[:, :, :4], patches[:, :, :4]) and kept[1, 2, 6] == 0.0  # the image's lowest inside
    amap = model.head.anomaly_map(kept)
    assert float(amap[1, 0, :, 48:].max()) < 0.1 < float(amap[1, 0, :, :32].max())  # cold where not inspected
    spec = default_spec("efficientnet_lite0", in_channels=1, input_size=64, class_names=("good", ANOMALOUS))
    spec = spec.replace(positive_class=ANOMALOUS, threshold=0.5, extra={"task": ANOMALY_TASK})
    model.head.set_bank(torch.randn(5, model.head.bank.shape[1], generator=torch.Generator().manual_seed(4)))
    x = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(5))
    fmap = model.features(model.normalize(x))
    whole = create_patchcore("efficientnet_lite0", in_channels=1, input_size=64, pretrained=False, bank=5)
    whole.head.set_bank(model.head.bank)
    # only the 32 inspected patches meet the bank: the same distances there, 0 elsewhere
    assert model.head.cells.tolist() == [r * 8 + c for r in range(8) for c in range(4)]
    assert torch.allclose(model.head.distances(fmap)[..., :4], whole.head.distances(fmap)[..., :4])
    assert model.head.distances(fmap)[..., 4:].eq(0).all()
    again = model_from_state(model.state_dict(), spec)
    assert "head.cells" not in model.state_dict() and torch.equal(again.head.cells, model.head.cells)
    assert torch.equal(again.head.region, model.head.region) and torch.allclose(again(x), model(x))
    older = model_from_state({k: v for k, v in model.state_dict().items() if k != "head.region"}, spec)
    assert not older.head.has_region and torch.equal(older.head.region, torch.ones(1, 1))
    assert model.set_region(torch.ones(64, 64)) == (64, 64) and not model.head.has_region
    thin = torch.zeros(64, 64)
    thin[:, :3] = 1  # under half of any 8-pixel cell
    with pytest.raises(DefectlensError, match="covers no 8-pixel patch at least half"):
        model.set_region(thin)


def test_the_first_stride_16_stage_stops_the_backbone_at_its_end_and_is_rebuilt_from_its_spec() -> None:
    """``stage16="first"``: the stride-16 tap is the last block of the first stride-16 stage (Lite0: block 7, 80
    channels), the blocks after it are dropped, and the finer taps are the default's numbers; a spec names the
    choice and one from before it rebuilds with the last block."""
    torch.manual_seed(0)
    last = create_patchcore("efficientnet_lite0", in_channels=1, input_size=64, pretrained=False, strides=(4, 8, 16))
    torch.manual_seed(0)
    first = create_patchcore(
        "efficientnet_lite0", in_channels=1, input_size=64, pretrained=False, strides=(4, 8, 16), stage16="first"
    )
    assert last.features.taps == (2, 4, 10) and first.features.taps == (2, 4, 7)
    assert len(first.features.blocks) == 8
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        a, b = last.features(x), first.features(x)
        stage_end = first.features.stem(x)
        for block in first.features.blocks:  # to the tapped block's output, (2, 80, 4, 4)
            stage_end = block(stage_end)
    assert a.shape == (2, 176, 8, 8) and b.shape == (2, 144, 8, 8)
    assert torch.allclose(b[:, :64], a[:, :64])  # the stride-4 and stride-8 parts are the same numbers
    expected = torch.nn.functional.interpolate(
        first.features.pool(stage_end), size=(8, 8), mode="bilinear", align_corners=False
    )
    assert torch.allclose(b[:, 64:], expected)

    first.head.set_bank(torch.randn(5, 144, generator=torch.Generator().manual_seed(1)))
    spec = default_spec("efficientnet_lite0", in_channels=1, input_size=64, class_names=("good", ANOMALOUS))
    extra = {"task": ANOMALY_TASK, "patch_strides": [4, 8, 16], "stride16_stage": "first"}
    spec = spec.replace(positive_class=ANOMALOUS, threshold=0.5, extra=extra)
    rebuilt = model_from_state(first.state_dict(), spec)
    assert rebuilt.features.taps == (2, 4, 7) and torch.allclose(rebuilt(x), first(x))
    older = spec.replace(extra={k: v for k, v in extra.items() if k != "stride16_stage"})
    with pytest.raises(DefectlensError, match=r"holds 144 numbers a patch.*stride-16 stage last"):  # not that model
        model_from_state(first.state_dict(), older)
    with pytest.raises(DefectlensError, match="the stride-16 stage must be one of last, first, got 'middle'"):
        create_patchcore("efficientnet_lite0", in_channels=1, input_size=64, pretrained=False, stage16="middle")
