"""Pictures of a dataset for people: a labelled grid of sample images (PIL only, no plotting library).

Owns :func:`image_grid` (tiles with captions) and :func:`sample_grid` (random images of each class of
a manifest). Training uses the grid for ``train_samples.png``, ``defectlens data stats --grid``
for the dataset overview.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from defectlens.data.images import convert_mode, displayable, load_image
from defectlens.data.manifest import Manifest

_CAPTION = 14  # pixels under each tile for its caption


def _tile(image: np.ndarray | Image.Image, size: int) -> Image.Image:
    """An RGB tile from a PIL image or an array (H, W), (H, W, C) or (C, H, W), uint8 or floats in [0, 1]."""
    img = convert_mode(image if isinstance(image, Image.Image) else Image.fromarray(displayable(image)), 3)
    return img.resize((size, size), Image.Resampling.BILINEAR)


def image_grid(
    images: Sequence[np.ndarray | Image.Image], captions: Sequence[str], *, columns: int = 4, tile: int = 128
) -> Image.Image:
    """Tiles of ``tile`` pixels, ``columns`` per row, each with its caption underneath."""
    rows = max(1, -(-len(images) // columns))
    grid = Image.new("RGB", (columns * tile, rows * (tile + _CAPTION)), "white")
    draw = ImageDraw.Draw(grid)
    for i, (image, caption) in enumerate(zip(images, captions, strict=True)):
        x, y = (i % columns) * tile, (i // columns) * (tile + _CAPTION)
        grid.paste(_tile(image, tile - 4), (x + 2, y + 2))
        draw.text((x + 3, y + tile), caption[: tile // 6], fill="black")
    return grid


def sample_grid(manifest: Manifest, path: str | Path, *, per_class: int = 8, tile: int = 96, seed: int = 0) -> Path:
    """Write a PNG with one row of ``per_class`` random images per class, captioned by class name."""
    rng = np.random.default_rng(seed)
    images, captions = [], []
    for c in manifest.classes:
        rs = [r for r in manifest.records if r.label == c]
        pick = sorted(rng.choice(len(rs), size=min(per_class, len(rs)), replace=False).tolist()) if rs else []
        row = [load_image(manifest.resolve(rs[i])) for i in pick]
        images += row + [Image.new("RGB", (tile, tile), "white")] * (per_class - len(row))
        captions += [f"{c} ({len(rs)})"] + [""] * (per_class - 1)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    image_grid(images, captions, columns=per_class, tile=tile).save(out)
    return out


__all__ = ["image_grid", "sample_grid"]
