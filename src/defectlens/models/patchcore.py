"""Anomaly mode's model: PatchCore (Roth et al., CVPR 2022) on frozen EfficientNet-Lite features.

A model fitted on good parts only. :class:`PatchFeatures` runs the pretrained backbone up to its
stride-16 stage and returns *locally aware* patch features: the outputs of the last stride-8 and
stride-16 blocks, each averaged over its 3x3 neighbourhood, the coarse one upsampled, concatenated
(mid-level features: generic enough to describe any surface, local enough to see a scratch).
:class:`PatchCoreHead` holds the memory bank, a greedy coreset of the good parts' patch features
(:func:`greedy_coreset`), and scores each patch by the distance to its nearest bank entry, written as a
matrix product so the exported ONNX graph carries the bank as an initializer: no second inference path.

The image's raw score is its largest patch score (or, with ``image_score="map"``, the largest value of its
smoothed anomaly map); the head maps it to two logits ``[0, (s - c) / w]``
(``c``, ``w``: the normalisation fitted on held-out good images), so the softmax's second column is the
anomaly probability and everything downstream (the threshold, ``Predictor``, the service, the station,
the Inspector, evaluation) treats an anomaly bundle as a binary model with classes ``(normal,
"anomalous")``. The anomaly map (the patch scores upsampled to the input size and smoothed with a
Gaussian, sigma 4 px as in the paper) is the graph's explanation output in place of the class activation
map.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from defectlens.core.anomaly import (
    ANOMALY_TASK,
    IMAGE_SCORE_BEFORE,
    IMAGE_SCORE_CHOICES,
    PATCH_PADDING_CHOICES,
    PATCH_STRIDE_CHOICES,
    STRIDE16_STAGE_CHOICES,
)
from defectlens.core.errors import DefectlensError
from defectlens.core.spec import ModelSpec
from defectlens.models.classifier import Classifier, _to_grayscale, register_rebuilder
from defectlens.models.registry import default_spec, get_entry

#: The anomaly map's smoothing, in pixels of the input (PatchCore's sigma).
MAP_SIGMA = 4.0
#: Backbones PatchCore can tap (their blocks are EfficientNet-Lite's).
PATCH_BACKBONES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
#: The strides whose last blocks describe a patch: mid-level stride 8 and 16 (the default, the paper's choice), or
#: with the finer stride-4 features too (smaller defects; 24 more numbers a patch for Lite0).
PATCH_STRIDES = tuple(tuple(int(s) for s in choice.split(",")) for choice in PATCH_STRIDE_CHOICES)
#: What :func:`create_patchcore` builds unless told, and what a spec without ``patch_strides`` was fitted with.
DEFAULT_STRIDES = PATCH_STRIDES[0]


def patch_strides(text: str) -> tuple[int, ...]:
    """``"4,8,16"`` -> ``(4, 8, 16)``, one of :data:`PATCH_STRIDES`."""
    try:
        strides = tuple(int(s) for s in text.split(","))
    except ValueError:
        strides = ()
    if strides not in PATCH_STRIDES:
        raise DefectlensError(f"patch strides must be one of {', '.join(PATCH_STRIDE_CHOICES)}, got {text!r}")
    return strides


class PatchFeatures(nn.Module):
    """EfficientNet-Lite's stem and blocks up to the stride-16 block tapped; returns (N, D, H/8, W/8).

    ``strides`` names the blocks tapped: the last one of each stride, except at stride 16 with ``stage16`` ``first``:
    the last block of the first stride-16 stage (the blocks before the width changes), where the backbone then
    stops. Each tap is averaged over its 3x3 neighbourhood (``padding``: at the border, over the neighbours that
    exist, ``valid``, or with the zero padding counted, ``zeros``); the stride-16 map is upsampled onto the stride-8
    grid, and a stride-4 map (``4`` in ``strides``) averaged 2x2 onto it, so every patch keeps one 8x8-pixel cell
    whatever the taps.
    """

    def __init__(
        self,
        net: Any,
        *,
        input_size: int,
        strides: tuple[int, ...] = DEFAULT_STRIDES,
        padding: str = "valid",
        stage16: str = STRIDE16_STAGE_CHOICES[0],
    ):
        super().__init__()
        if strides not in PATCH_STRIDES:
            raise DefectlensError(f"patch strides must be one of {', '.join(PATCH_STRIDE_CHOICES)}, got {strides}")
        if padding not in PATCH_PADDING_CHOICES:
            raise DefectlensError(f"patch padding must be one of {', '.join(PATCH_PADDING_CHOICES)}, got {padding!r}")
        if stage16 not in STRIDE16_STAGE_CHOICES:
            raise DefectlensError(
                f"the stride-16 stage must be one of {', '.join(STRIDE16_STAGE_CHOICES)}, got {stage16!r}"
            )
        net.eval()  # the dry run below must not move BatchNorm's ImageNet running statistics
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        found, sides, widths = [], [], []
        x = torch.zeros(1, net._conv_stem.in_channels, input_size, input_size)
        with torch.no_grad():
            x = self.stem(x)
            stride, side = 2, x.shape[-1]  # the stem halves; each block that shrinks the map halves again
            for block in net._blocks:
                x = block(x)
                stride, side = (stride * 2 if x.shape[-1] < side else stride), x.shape[-1]
                found.append(stride)
                sides.append(side)
                widths.append(x.shape[1])
        if any(s not in found for s in strides):
            raise DefectlensError(f"input size {input_size} is too small for patch features (needs >= 64)")
        self.strides = strides
        self.taps = tuple(max(i for i, s in enumerate(found) if s == stride) for stride in strides)
        if stage16 == "first":  # the stage of the first stride-16 block: the blocks of its width that follow it
            first = found.index(16)
            last = first
            while last + 1 < len(found) and found[last + 1] == 16 and widths[last + 1] == widths[first]:
                last += 1
            self.taps = (*self.taps[:-1], last)
        self.blocks = nn.ModuleList(net._blocks[: self.taps[-1] + 1])
        self.pool = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=padding == "zeros")
        self.halve = nn.AvgPool2d(2, stride=2, ceil_mode=True, count_include_pad=False)  # stride 4 onto stride 8
        if 4 in strides and -(-sides[self.taps[0]] // 2) != sides[self.taps[1]]:  # ceil: what halve gives
            raise DefectlensError(f"input size {input_size}: the stride-4 features do not halve onto the stride-8 grid")

    def _maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        maps = []
        for idx, block in enumerate(self.blocks):
            x = block(x)
            if idx in self.taps:
                maps.append(self.pool(x))
        return maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = dict(zip(self.strides, self._maps(x), strict=True))
        fine = maps[8]
        out = [fine, F.interpolate(maps[16], size=fine.shape[-2:], mode="bilinear", align_corners=False)]
        if 4 in maps:
            out.insert(0, self.halve(maps[4]))
        return torch.cat(out, dim=1)


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """A normalised 1-D Gaussian of radius 4 sigma."""
    radius = max(1, math.ceil(4 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def nearest_squared(
    x: torch.Tensor, bank: torch.Tensor, bank_sq: torch.Tensor, exclude: torch.Tensor | None = None
) -> torch.Tensor:
    """Squared distance of each patch feature to its nearest bank row: x (N, P, D), bank (M, D) -> (N, P).

    ``|x - b|^2 = |x|^2 + (|b|^2 - 2 x.b)``. The bracket is one matrix product: ``x`` with a 1 appended
    against the bank with -2 and ``|b|^2`` folded in (``[-2b, |b|^2]``, (M, D + 1): a constant of the
    exported graph, which ONNX Runtime computes once at load). Its minimum over the bank is taken before
    ``|x|^2``, the same for every row, is added: one pass over the (P, M) products where adding both
    norms first took three. ``exclude`` (N, 1 or P, M), where true, keeps a bank row out of a patch's minimum.
    """
    folded = torch.cat([bank * -2.0, bank_sq[:, None]], dim=1)
    products = torch.matmul(F.pad(x, (0, 1), value=1.0), folded.t())
    if exclude is not None:
        products = products.masked_fill(exclude, float("inf"))
    return (products.amin(dim=2) + x.square().sum(dim=2)).clamp_min(0.0)


class PatchCoreHead(nn.Module):
    """The memory bank (M, D), the score normalisation, and the anomaly map.

    Buffers: ``bank``, ``bank_sq`` (its squared norms), ``loc_mean`` and ``loc_scale`` (what normal parts
    score at each patch position, (h, w), or (1, 1) for no position normalisation: a patch's score is its
    distance to the bank minus ``loc_mean`` over ``loc_scale`` at its place), ``center`` and ``width``
    (logit = (score - center) / width), ``cam_weight`` (2, 1) and ``cam_bias`` (2,) (the anomaly map is the
    explanation of the ``anomalous`` class: ``spec.json``'s ``cam`` entry names them), ``map_range`` (the
    map values drawn as 0 and 1 by an overlay), ``region`` (the patches inspected, (h, w) of 0/1, or (1, 1) for the
    whole frame: a patch outside it scores what the image's lowest inspected patch does, so it never decides the
    image's score and its overlay stays cold). ``image_score`` (:data:`~defectlens.core.anomaly.IMAGE_SCORE_CHOICES`):
    an image's raw score is its largest patch score (``patch``) or the largest value of its anomaly map (``map``).
    """

    bank: torch.Tensor
    bank_sq: torch.Tensor
    loc_mean: torch.Tensor
    loc_scale: torch.Tensor
    center: torch.Tensor
    width: torch.Tensor
    cam_weight: torch.Tensor
    cam_bias: torch.Tensor
    map_range: torch.Tensor
    region: torch.Tensor
    cells: torch.Tensor
    kernel: torch.Tensor

    def __init__(self, bank: torch.Tensor, *, input_size: int, image_score: str = IMAGE_SCORE_BEFORE):
        super().__init__()
        if image_score not in IMAGE_SCORE_CHOICES:
            raise DefectlensError(f"image score must be one of {', '.join(IMAGE_SCORE_CHOICES)}, got {image_score!r}")
        bank = bank.float().contiguous()
        self.register_buffer("bank", bank)
        self.register_buffer("bank_sq", bank.square().sum(dim=1))
        self.register_buffer("loc_mean", torch.zeros(1, 1))
        self.register_buffer("loc_scale", torch.ones(1, 1))
        self.register_buffer("center", torch.zeros(1))
        self.register_buffer("width", torch.ones(1))
        self.register_buffer("cam_weight", torch.tensor([[0.0], [1.0]]))
        self.register_buffer("cam_bias", torch.zeros(2))
        self.register_buffer("map_range", torch.tensor([0.0, 1.0]))
        self.register_buffer("region", torch.ones(1, 1))
        # the inspected patches' flat indices, derived from ``region`` (so not saved): only they meet the bank
        self.register_buffer("cells", torch.zeros(0, dtype=torch.long), persistent=False)
        self.register_buffer("kernel", gaussian_kernel(MAP_SIGMA), persistent=False)
        self.input_size = input_size
        self.image_score = image_score

    def set_bank(self, bank: torch.Tensor) -> None:
        self.bank = bank.float().contiguous()
        self.bank_sq = self.bank.square().sum(dim=1)

    def set_locations(self, mean: torch.Tensor, scale: torch.Tensor) -> None:
        """What normal parts score at each patch position ((h, w) each; ``scale`` > 0)."""
        if mean.shape != scale.shape or mean.ndim != 2 or not bool((scale > 0).all()):
            raise DefectlensError(f"position statistics must be two (h, w) maps with scale > 0: {tuple(mean.shape)}")
        self.loc_mean = mean.float().contiguous()
        self.loc_scale = scale.float().contiguous()

    def set_region(self, mask: torch.Tensor, grid: tuple[int, int]) -> int:
        """Inspect only the patches of the (h, w) ``grid`` whose cell lies at least half inside ``mask`` (S, S) at
        the input size; returns how many. A mask covering every cell inspects the whole frame.

        Raises:
            DefectlensError: when the mask covers no cell at least half.
        """
        cells = F.adaptive_avg_pool2d(mask.float()[None, None], grid)[0, 0] >= 0.5
        if not bool(cells.any()):
            raise DefectlensError(
                f"the inspection region covers no {self.input_size // grid[0]}-pixel patch at least half: "
                "draw it larger"
            )
        self.region = torch.ones(1, 1) if bool(cells.all()) else cells.float()
        self.sync_cells()
        return int(cells.sum())

    def sync_cells(self) -> None:
        """Derive :attr:`cells` from the region (after :meth:`set_region` or loading a state dict)."""
        flat = self.region.flatten() > 0
        self.cells = torch.nonzero(flat).flatten() if self.has_region else torch.zeros(0, dtype=torch.long)

    @property
    def has_region(self) -> bool:
        """Whether only part of the frame is inspected (a (1, 1) region is the whole frame)."""
        return self.region.shape[-1] > 1

    def inspected(self, scores: torch.Tensor) -> torch.Tensor:
        """Patch scores (N, h, w) with each patch outside the region at the image's lowest inspected score."""
        if not self.has_region:
            return scores
        inside = self.region > 0
        lowest = scores.masked_fill(~inside, float("inf")).amin(dim=(1, 2), keepdim=True)
        return torch.where(inside, scores, lowest)

    def distances(self, fmap: torch.Tensor) -> torch.Tensor:
        """Distance of each patch feature to its nearest bank entry: (N, D, h, w) -> (N, h, w). With a region only
        the inspected patches are compared with the bank (the product's cost shrinks with the region); the others
        get 0, which :meth:`inspected` then replaces."""
        n, d, h, w = fmap.shape
        x = fmap.permute(0, 2, 3, 1).reshape(n, h * w, d)
        if not self.has_region:
            return nearest_squared(x, self.bank, self.bank_sq).sqrt().reshape(n, h, w)
        near = nearest_squared(x[:, self.cells], self.bank, self.bank_sq).sqrt()  # (n, inspected)
        return near.new_zeros(n, h * w).index_copy(1, self.cells, near).reshape(n, h, w)

    def patch_scores(self, fmap: torch.Tensor) -> torch.Tensor:
        """Each patch's score, (N, D, h, w) -> (N, h, w): its distance to the bank, normalised by what normal
        parts score at its place (identity while no position statistics are set), inside the region."""
        return self.inspected(self.by_position(self.distances(fmap)))

    def by_position(self, distances: torch.Tensor) -> torch.Tensor:
        """Patch distances (N, h, w) normalised by what normal parts score at each place (identity while no
        position statistics are set)."""
        return (distances - self.loc_mean) / self.loc_scale

    def image_scores(self, patches: torch.Tensor, anomaly_map: torch.Tensor | None = None) -> torch.Tensor:
        """The raw image score (N,) from the patch scores (N, h, w): the largest patch score, or with
        ``image_score="map"`` the largest value of the anomaly map (``anomaly_map`` when already computed)."""
        if self.image_score == "map":
            return (self.anomaly_map(patches) if anomaly_map is None else anomaly_map).flatten(1).amax(dim=1)
        return patches.flatten(1).amax(dim=1)

    def logits(self, scores: torch.Tensor) -> torch.Tensor:
        z = (scores - self.center) / self.width
        return torch.stack([torch.zeros_like(z), z], dim=1)

    def anomaly_map(self, patches: torch.Tensor) -> torch.Tensor:
        """Patch scores upsampled to the input size and smoothed: (N, h, w) -> (N, 1, S, S), raw units."""
        size = self.input_size
        m = F.interpolate(patches[:, None], size=(size, size), mode="bilinear", align_corners=False)
        k, r = self.kernel, self.kernel.numel() // 2
        m = F.conv2d(F.pad(m, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
        return F.conv2d(F.pad(m, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.logits(self.image_scores(self.patch_scores(fmap)))


class AnomalyModel(Classifier):
    """A :class:`Classifier` whose head is PatchCore's: the same normalisation, export and surfaces."""

    head: PatchCoreHead

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_single(x)

    def forward_outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        """Logits, the pooled patch features (one vector per image) and the anomaly map (N, 1, S, S)."""
        fmap = self.features(self.normalize(x))
        patches = self.head.patch_scores(fmap)
        amap = self.head.anomaly_map(patches)
        return self.head.logits(self.head.image_scores(patches, amap)), [fmap.mean(dim=(2, 3))], amap

    def raw_scores(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw image scores (N,) and patch scores (N, h, w) of a batch in [0, 1]."""
        patches = self.head.patch_scores(self.features(self.normalize(x)))
        return self.head.image_scores(patches), patches

    def set_region(self, mask: torch.Tensor) -> tuple[int, int]:
        """Inspect only the patches at least half inside ``mask`` (S, S) at the input size
        (:meth:`PatchCoreHead.set_region`); returns how many patches are inspected, of how many."""
        with torch.no_grad():
            size = self.head.input_size
            grid = self.features(torch.zeros(1, self.mean.shape[1], size, size)).shape[-2:]
        return self.head.set_region(mask, (int(grid[0]), int(grid[1]))), int(grid[0] * grid[1])

    def cam_head(self) -> tuple[str, str] | None:
        return "head.cam_weight", "head.cam_bias"

    def set_normalisation(self, *, center: float, width: float, map_range: tuple[float, float]) -> None:
        """Where the raw score crosses probability 0.5 (``center``), its scale, and the overlay's range."""
        if not (math.isfinite(center) and math.isfinite(width) and width > 0):
            raise DefectlensError(f"anomaly score normalisation must be finite with width > 0: {center}, {width}")
        self.head.center.fill_(center)
        self.head.width.fill_(width)
        self.head.map_range.copy_(torch.tensor(map_range, dtype=torch.float32))


def create_patchcore(
    arch: str,
    *,
    in_channels: int,
    input_size: int | None = None,
    pretrained: bool = True,
    bank: int = 1,
    strides: tuple[int, ...] = DEFAULT_STRIDES,
    padding: str = "valid",
    image_score: str = IMAGE_SCORE_BEFORE,
    stage16: str = STRIDE16_STAGE_CHOICES[0],
) -> AnomalyModel:
    """A PatchCore model on ``arch``'s ImageNet features (the blocks of ``strides``, :data:`PATCH_STRIDES`, each
    pooled with ``padding``, :data:`~defectlens.core.anomaly.PATCH_PADDING_CHOICES`) with an empty bank of ``bank``
    rows (filled by :func:`defectlens.training.anomaly.fit_patchcore`, or by loading a state dict), scoring images
    by ``image_score`` (:data:`~defectlens.core.anomaly.IMAGE_SCORE_CHOICES`); the stride-16 tap at the end of the
    ``stage16`` stride-16 stage (:data:`~defectlens.core.anomaly.STRIDE16_STAGE_CHOICES`)."""
    if arch not in PATCH_BACKBONES:
        raise DefectlensError(f"anomaly mode taps EfficientNet-Lite blocks; arch must be one of {PATCH_BACKBONES}")
    entry = get_entry(arch)
    spec = default_spec(arch, in_channels=in_channels, input_size=input_size)
    lite, _ = entry.build(pretrained=pretrained, input_size=spec.input_size)
    if in_channels == 1:
        _to_grayscale(lite)
    features = PatchFeatures(
        lite.net, input_size=spec.input_size, strides=strides, padding=padding, stage16=stage16
    ).eval()
    with torch.no_grad():
        dim = features(torch.zeros(1, in_channels, spec.input_size, spec.input_size)).shape[1]
    head = PatchCoreHead(torch.zeros(bank, dim), input_size=spec.input_size, image_score=image_score)
    model = AnomalyModel(features, head, mean=spec.mean, std=spec.std)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def spec_strides(spec: ModelSpec) -> tuple[int, ...]:
    """The patch strides a spec's model was fitted with (``extra["patch_strides"]``; a spec from before the
    choice existed: stride 8 and 16)."""
    return tuple(spec.extra.get("patch_strides", DEFAULT_STRIDES))


def spec_padding(spec: ModelSpec) -> str:
    """How a spec's model pools its taps at the border (``extra["patch_padding"]``; a spec from before the choice
    existed: ``valid``)."""
    return str(spec.extra.get("patch_padding", PATCH_PADDING_CHOICES[0]))


def spec_stage16(spec: ModelSpec) -> str:
    """Which stride-16 stage a spec's model taps (``extra["stride16_stage"]``; a spec from before the choice
    existed: the last)."""
    return str(spec.extra.get("stride16_stage", STRIDE16_STAGE_CHOICES[0]))


def spec_image_score(spec: ModelSpec) -> str:
    """How a spec's model scores an image (``extra["image_score"]``; a spec from before the choice existed: its
    largest patch score, ``patch``)."""
    return str(spec.extra.get("image_score", IMAGE_SCORE_BEFORE))


@register_rebuilder(ANOMALY_TASK)
def anomaly_from_state(state_dict: dict[str, torch.Tensor], spec: ModelSpec) -> AnomalyModel:
    """Rebuild a fitted anomaly model from its weights and spec (eval mode)."""
    bank = state_dict.get("head.bank")
    if bank is None or bank.ndim != 2:
        raise DefectlensError("an anomaly model's weights must hold its memory bank (head.bank, 2-D)")
    model = create_patchcore(
        spec.arch, in_channels=spec.in_channels, input_size=spec.input_size, pretrained=False, bank=bank.shape[0],
        strides=spec_strides(spec), padding=spec_padding(spec), image_score=spec_image_score(spec),
        stage16=spec_stage16(spec),
    )  # fmt: skip
    head = model.head
    if bank.shape[1] != head.bank.shape[1]:
        raise DefectlensError(
            f"the memory bank holds {bank.shape[1]} numbers a patch, but the spec's features (patch strides "
            f"{','.join(map(str, spec_strides(spec)))}, stride-16 stage {spec_stage16(spec)}) give "
            f"{head.bank.shape[1]}: weights and spec do not match"
        )
    state_dict = {  # a bundle from before position normalisation or regions: identity, the whole frame
        "head.loc_mean": head.loc_mean, "head.loc_scale": head.loc_scale, "head.region": head.region, **state_dict,
    }  # fmt: skip
    head.loc_mean = torch.zeros_like(state_dict["head.loc_mean"])  # sized as fitted
    head.loc_scale = torch.ones_like(state_dict["head.loc_scale"])
    head.region = torch.ones_like(state_dict["head.region"])
    model.load_state_dict(state_dict, strict=True)
    head.sync_cells()
    return model.eval()


#: Dimensions the coreset selection measures distances in (a Gaussian random projection of the patch
#: features; the bank keeps the full features). Selection is memory-bound: each step reads every
#: candidate once, so 64 dimensions instead of ~150-250 make it 3-4x faster for a near-identical choice.
PROJECTION_DIMS = 64


@torch.no_grad()
def greedy_coreset(features: torch.Tensor, size: int, *, seed: int = 0) -> torch.Tensor:
    """Indices of ``size`` rows of ``features`` (P, D) chosen by greedy k-center selection.

    Each step adds the row farthest from every row chosen so far (PatchCore's coreset): the bank then
    covers the good parts' feature space with few rows, rare patches included, where random sampling
    would keep the common ones. Distances are measured after a seeded Gaussian random projection to
    :data:`PROJECTION_DIMS` (Johnson-Lindenstrauss, as the paper does). O(P) per step; the caller caps P
    (a memory budget).
    """
    p, d = features.shape
    if size >= p:
        return torch.arange(p)
    gen = torch.Generator().manual_seed(seed)
    if d > PROJECTION_DIMS:
        proj = torch.randn(d, PROJECTION_DIMS, generator=gen) / math.sqrt(PROJECTION_DIMS)
        features = features.float() @ proj
    features = features.float().contiguous()
    sq = features.square().sum(dim=1)
    chosen = torch.empty(size, dtype=torch.long)
    idx = int(torch.randint(p, (1,), generator=gen))
    nearest = torch.full((p,), float("inf"))
    for i in range(size):
        chosen[i] = idx
        # |x - c|^2 = |x|^2 + |c|^2 - 2 x.c as one matrix-vector product: 3-4x faster than forming x - c
        torch.minimum(nearest, torch.addmv(sq + sq[idx], features, features[idx], alpha=-2.0), out=nearest)
        idx = int(torch.argmax(nearest))
    return chosen
