"""Anomaly mode's inspection region (``defectlens.data.images.inspection_mask``): the disc inscribed in the frame,
or a mask image drawn on a frame and resized as every frame is; a mask that inspects nothing is refused by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from defectlens.core.errors import DefectlensError, ImageError
from defectlens.data.images import inspection_mask


def test_the_circle_is_the_disc_inscribed_in_the_square_input() -> None:
    mask = inspection_mask("circle", 64)
    assert mask.shape == (64, 64) and mask.dtype == bool
    assert mask[32, 32] and mask[32, 0] and mask[0, 32] and mask[63, 32]  # the centre and each side's middle
    assert not mask[0, 0] and not mask[63, 63] and not mask[4, 4]  # the corners are left out
    assert abs(mask.mean() - np.pi / 4) < 0.02  # the disc's share of the square


def test_a_mask_image_is_resized_to_the_input_as_frames_are(tmp_path: Path) -> None:
    drawn = np.zeros((300, 200), np.uint8)  # a portrait frame: the left half inspected
    drawn[:, :100] = 255
    Image.fromarray(drawn).convert("RGB").save(tmp_path / "region.png")
    mask = inspection_mask(str(tmp_path / "region.png"), 32)
    assert mask.shape == (32, 32)
    assert mask[:, :16].all() and not mask[:, 16:].any()  # stretched to the square, the edge kept sharp


def test_a_mask_that_inspects_nothing_or_cannot_be_read_is_refused_by_name(tmp_path: Path) -> None:
    Image.new("L", (40, 40), 0).save(tmp_path / "black.png")
    with pytest.raises(ImageError, match=r"black\.png.*no white pixel"):
        inspection_mask(str(tmp_path / "black.png"), 32)
    with pytest.raises(DefectlensError, match=r"missing\.png"):
        inspection_mask(str(tmp_path / "missing.png"), 32)
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(DefectlensError, match=r"notes\.png"):
        inspection_mask(str(tmp_path / "notes.png"), 32)
