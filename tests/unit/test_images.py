"""The one decode/preprocess path: every mode converts, bad files fail with the path and reason."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from defectlens.core.errors import ImageError
from defectlens.core.spec import ModelSpec
from defectlens.data.images import convert_mode, decode_image, load_image, prepare, preprocess, to_array


def _png_bytes(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("mode", "make"),
    [
        ("L", lambda: Image.new("L", (20, 10), 100)),
        ("RGB", lambda: Image.new("RGB", (20, 10), (10, 200, 30))),
        ("RGBA", lambda: Image.new("RGBA", (20, 10), (10, 200, 30, 128))),
        ("LA", lambda: Image.new("LA", (20, 10), (100, 255))),
        ("P", lambda: Image.new("RGB", (20, 10), (10, 200, 30)).convert("P")),
        ("CMYK", lambda: Image.new("CMYK", (20, 10), (0, 50, 100, 0))),
        ("I;16", lambda: Image.fromarray(np.full((10, 20), 40000, dtype=np.uint16))),
        ("F", lambda: Image.fromarray(np.full((10, 20), 0.5, dtype=np.float32))),
        ("1", lambda: Image.new("1", (20, 10), 1)),
    ],
)
@pytest.mark.parametrize("channels", [1, 3])
def test_every_mode_converts(mode, make, channels):
    img = make()
    assert img.mode == mode
    out = to_array(img, size=16, channels=channels)
    assert out.shape == (channels, 16, 16)
    assert out.dtype == np.uint8


def test_sixteen_bit_scales_by_bit_depth_not_per_image():
    img = Image.fromarray(np.full((4, 4), 257 * 100, dtype=np.uint16))
    assert np.asarray(convert_mode(img, 1)).max() == 100


def test_rgba_composites_on_white():
    img = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert np.asarray(convert_mode(img, 3)).min() == 255


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("L", (30, 10), 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    path = tmp_path / "rot.jpg"
    img.save(path, exif=exif.tobytes())
    assert load_image(path).size == (10, 30)


def test_bytes_and_path_give_the_same_array(tmp_path):
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (30, 40), dtype=np.uint8))
    path = tmp_path / "a.png"
    img.save(path)
    spec = ModelSpec(arch="simple_cnn", input_size=24, in_channels=1)
    np.testing.assert_array_equal(preprocess(path, spec), preprocess(path.read_bytes(), spec))


def test_a_decoded_image_passes_through_once_decoded(tmp_path):
    # the web service decodes once (it needs the size and the warnings) and hands the result on
    img = Image.new("L", (30, 10), 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif.tobytes())
    decoded = decode_image(buf.getvalue(), name="rot.jpg")
    assert decode_image(decoded) is decoded and decoded.image.size == (10, 30)  # not turned a second time
    spec = ModelSpec(arch="simple_cnn", input_size=24, in_channels=1)
    arr, notes = prepare(decoded, spec)
    np.testing.assert_array_equal(arr, prepare(buf.getvalue(), spec)[0])
    assert notes == decoded.warnings


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty file"),
        (b"this is not an image", "not an image"),
        (None, "truncated or corrupt"),
    ],
)
def test_bad_files_name_path_and_reason(tmp_path, content, reason):
    path = tmp_path / "bad.png"
    if content is None:  # a JPEG cut in half
        content = _png_bytes(Image.new("RGB", (64, 64), (1, 2, 3)), "JPEG")[:300]
        path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageError) as err:
        load_image(path)
    assert str(path) in str(err.value)
    assert reason in err.value.reason


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="file not found"):
        load_image(tmp_path / "nope.png")


def test_decompression_bomb_is_refused(tmp_path):
    # A 20000x20000 1-bit PNG compresses to a few kB but would decode to 400 Mpx.
    path = tmp_path / "bomb.png"
    Image.new("1", (20000, 20000)).save(path)
    with pytest.raises(ImageError, match="decompression bomb"):
        load_image(path)


@pytest.mark.parametrize("orientation", [None, 1, 3, 6, 8])
def test_a_file_read_whole_or_streamed_decodes_to_the_pixels_pillow_gives(tmp_path, monkeypatch, orientation):
    # a frame is read in one call and decoded from memory, a large file from the open file in chunks:
    # both must give exactly Pillow's own upright pixels, and an image that outlives its file
    from PIL import ImageOps

    from defectlens.data import images

    rng = np.random.default_rng(1)
    img = Image.fromarray(rng.integers(0, 255, (24, 40, 3), dtype=np.uint8))
    path = tmp_path / "a.jpg"
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    img.save(path, exif=exif.tobytes(), quality=90)
    with Image.open(path) as raw:
        expected = np.asarray(ImageOps.exif_transpose(raw))
    whole = decode_image(path).image
    monkeypatch.setattr(images, "READ_WHOLE_MAX_BYTES", 16)
    streamed = decode_image(path).image
    for got in (whole, streamed, decode_image(path.read_bytes()).image):
        np.testing.assert_array_equal(np.asarray(got), expected)
        assert got.convert("L").size == expected.shape[1::-1]  # still usable: its pixels were not closed


def test_a_corrupt_jpeg_is_flagged_whether_read_whole_or_streamed(tmp_path, monkeypatch):
    from defectlens.data import images

    rng = np.random.default_rng(2)
    Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8)).save(tmp_path / "ok.jpg", quality=95)
    data = bytearray((tmp_path / "ok.jpg").read_bytes())
    start = len(data) // 2
    data[start : start + 600] = bytes(600)  # a zeroed block inside the compressed data
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(bytes(data))
    assert "zero bytes" in decode_image(bad).warning
    monkeypatch.setattr(images, "READ_WHOLE_MAX_BYTES", 16)
    assert "zero bytes" in decode_image(bad).warning


@pytest.mark.parametrize("orientation", [None, 6])
def test_a_gray_model_decodes_a_colour_jpegs_luma_alone_to_the_same_pixels(tmp_path, monkeypatch, orientation):
    # a 1-channel model asks the JPEG decoder for the luma plane alone (no chroma upsampling or colour
    # conversion): the same pixels as decoding RGB and converting, read whole, streamed, as bytes or upright
    from PIL import ImageFilter, ImageOps

    from defectlens.data import images

    rng = np.random.default_rng(3)
    img = Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).filter(ImageFilter.GaussianBlur(2))
    path = tmp_path / "colour.jpg"
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    img.save(path, quality=85, exif=exif.tobytes())
    with Image.open(path) as raw:
        expected = np.asarray(ImageOps.exif_transpose(raw).convert("L"))
    spec = ModelSpec(arch="simple_cnn", in_channels=1, input_size=32, class_names=("a", "b"))
    luma = decode_image(path, gray=True).image
    assert luma.mode == "L" and decode_image(path).image.mode == "RGB"  # only when asked
    np.testing.assert_array_equal(np.asarray(luma), expected)
    np.testing.assert_array_equal(np.asarray(decode_image(path.read_bytes(), gray=True).image), expected)
    monkeypatch.setattr(images, "READ_WHOLE_MAX_BYTES", 16)
    np.testing.assert_array_equal(np.asarray(decode_image(path, gray=True).image), expected)
    # every model path asks for it: the model input equals converting the RGB decode
    rgb = decode_image(path).image
    np.testing.assert_array_equal(preprocess(path, spec), to_array(rgb, size=32, channels=1))
    asked, stream = [], images._decode_stream
    monkeypatch.setattr(images, "_decode_stream", lambda *a, **k: asked.append(k.get("gray")) or stream(*a, **k))
    preprocess(path, spec)
    preprocess(path.read_bytes(), spec.replace(in_channels=3))
    assert asked == [True, False]
