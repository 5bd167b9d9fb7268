"""Issue #18 item 4: one decode rule for every input type (path, bytes, PIL image, numpy array)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from defectlens.core.errors import ImageError
from defectlens.core.spec import ModelSpec
from defectlens.data.images import ACCEPTED_FORMATS, convert_mode, decode_image, load_image, preprocess, to_array
from defectlens.data.walk import walk
from tests.unit.hardening import corpus as C

SPEC = ModelSpec("simple_cnn", 24, 1, (0.5,), (0.25,), class_names=("ok", "defect"))
RGB = ModelSpec("simple_cnn", 24, 3, (0.5,) * 3, (0.25,) * 3, class_names=("ok", "defect"))


def test_pil_image_gets_the_same_exif_rotation_as_path_and_bytes(tmp_path):
    path = tmp_path / "rotated.jpg"
    path.write_bytes(C.image_files()["rotated.jpg"])
    with Image.open(path) as opened:
        from_pil = preprocess(opened, SPEC)
    np.testing.assert_array_equal(from_pil, preprocess(path, SPEC))
    np.testing.assert_array_equal(from_pil, preprocess(path.read_bytes(), SPEC))
    assert load_image(path).size == (20, 40)
    assert load_image(load_image(path)).size == (20, 40)  # applying the rule twice turns nothing twice


def test_predictor_predict_accepts_every_input_type(bundle, tmp_path):
    from defectlens.inference.predictor import Predictor

    predictor = Predictor.load(bundle)
    img = C.noise((40, 32))
    path = tmp_path / "a.png"
    img.save(path)
    expected = predictor.predict(path).probabilities
    for source in (path.read_bytes(), img, np.asarray(img), np.asarray(img)[..., None]):
        got = predictor.predict(source).probabilities
        assert got == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    ("array", "same_as"),
    [
        (np.full((8, 10), 7, np.uint8), Image.new("L", (10, 8), 7)),
        (np.full((8, 10, 3), (1, 2, 3), np.uint8), Image.new("RGB", (10, 8), (1, 2, 3))),
        (np.full((8, 10), 257 * 100, np.uint16), Image.new("L", (10, 8), 100)),
        (np.full((8, 10, 3), 257 * 100, np.uint16), Image.new("RGB", (10, 8), (100, 100, 100))),
        (np.full((8, 10, 4), (0, 0, 0, 0), np.uint8), Image.new("RGB", (10, 8), (255, 255, 255))),
    ],
)
def test_numpy_arrays_hwc_uint8_uint16(array, same_as):
    for spec in (SPEC, RGB):
        np.testing.assert_array_equal(preprocess(array, spec), preprocess(same_as, spec))


@pytest.mark.parametrize(
    ("array", "words"),
    [
        (np.zeros((8, 10), np.float32), "dtype float32"),
        (np.zeros((3, 8, 10, 2), np.uint8), "shape"),
        (np.zeros((8, 10, 2), np.uint8), "shape"),
        (np.zeros((0, 10), np.uint8), "shape"),
    ],
)
def test_unusable_arrays_are_image_errors(array, words):
    with pytest.raises(ImageError, match=words):
        preprocess(array, SPEC)


def test_pil_image_of_a_refused_format_is_refused(tmp_path):
    path = tmp_path / "x.pcx"
    C.noise().save(path, "PCX")
    with Image.open(path) as opened, pytest.raises(ImageError, match="format PCX is not accepted"):
        decode_image(opened)
    with pytest.raises(ImageError, match="accepted format"):
        decode_image(path)
    assert "PCX" not in ACCEPTED_FORMATS


def test_gray_for_an_rgb_model_is_resized_before_it_is_copied_to_three_channels():
    """The memory saving must not change a pixel: same result as converting to RGB first."""
    rng = np.random.default_rng(0)
    for img in (
        Image.fromarray(rng.integers(0, 256, (61, 83), dtype=np.uint8)),
        Image.fromarray(rng.integers(0, 65536, (61, 83), dtype=np.uint16)),
        Image.fromarray(rng.random((61, 83), dtype=np.float32) * 300),
    ):
        for interpolation in ("bilinear", "bicubic", "area", "lanczos", "nearest"):
            reference = np.asarray(convert_mode(img, 3).resize((32, 32), getattr(Image.Resampling, {
                "bilinear": "BILINEAR", "bicubic": "BICUBIC", "area": "BOX", "lanczos": "LANCZOS", "nearest": "NEAREST"
            }[interpolation]))).transpose(2, 0, 1)  # fmt: skip
            np.testing.assert_array_equal(to_array(img, size=32, channels=3, interpolation=interpolation), reference)


def test_symlinked_folder_is_read_once(tmp_path):
    C.good_images(tmp_path / "real")
    (tmp_path / "alias").symlink_to(tmp_path / "real", target_is_directory=True)
    entries = walk(tmp_path)
    files = [e.path.name for e in entries if e.problem is None]
    problems = {e.path.name: e.problem for e in entries if e.problem}
    assert files == ["good_0.png", "good_1.png"]
    assert list(problems.values()) == [f"same folder as {tmp_path / 'alias'} (a symlink), not read twice"]
