"""Predictor: every image mode predicts, bad inputs become error rows, batches keep order, threads agree."""

from __future__ import annotations

import io
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from defectlens.core.errors import DefectlensError, ImageError
from defectlens.inference.predictor import Predictor


@pytest.fixture(scope="module")
def predictor(bundle):
    return Predictor.load(bundle, threads=1)


def _rgb(seed=0, size=(36, 28)):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), mode="RGB")


def _exif_rotated(path):
    img = _rgb(3, (40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    img.save(path, exif=exif.tobytes(), quality=95)
    return path


def _bomb_png(path, side=20000):
    """A valid PNG header claiming side x side pixels (the data is tiny and never reached)."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    data = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))
    path.write_bytes(data + struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND")))
    return path


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "CMYK", "I;16", "EXIF"])
def test_every_image_mode_predicts(predictor, tmp_path, mode):
    if mode == "EXIF":
        path = _exif_rotated(tmp_path / "rot.jpg")
    else:
        base = _rgb()
        if mode == "I;16":
            img = Image.fromarray(np.asarray(base.convert("L"), dtype=np.uint16) * 257)
            assert img.mode == "I;16"
        else:
            img = base.convert(mode)
        path = tmp_path / ("img.jpg" if mode == "CMYK" else "img.png")
        img.save(path)
    pred = predictor.predict(path)
    assert pred.ok and pred.prediction in ("ok", "defect")
    assert sum(pred.probabilities.values()) == pytest.approx(1.0)


def test_bytes_and_pil_inputs_match_path(predictor, tmp_path):
    path = tmp_path / "a.png"
    _rgb().save(path)
    p_path = predictor.predict(path).probabilities
    assert predictor.predict(path.read_bytes()).probabilities == pytest.approx(p_path)
    assert predictor.predict(Image.open(path)).probabilities == pytest.approx(p_path)


@pytest.fixture
def bad_corpus(tmp_path):
    good = tmp_path / "good.png"
    _rgb().save(good)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not an image")
    _bomb_png(tmp_path / "bomb.png")
    return {
        "good": (good, None),
        "truncated": (truncated, "truncated or corrupt"),
        "empty": (tmp_path / "empty.png", "empty file"),
        "text": (tmp_path / "notes.txt", "not an image"),
        "bomb": (tmp_path / "bomb.png", "too large"),
        "missing": (tmp_path / "missing.png", "not found"),
    }


def test_bad_inputs_give_error_rows_and_run_goes_on(predictor, bad_corpus):
    items = list(bad_corpus.values())
    paths = [str(p) for p, _ in items] + [str(items[0][0])]
    rows = list(predictor.predict_many(paths, batch_size=2))
    assert [r.file for r in rows] == paths
    for (_, reason), row in zip([*items, items[0]], rows, strict=True):
        if reason is None:
            assert row.ok and row.prediction in ("ok", "defect")
        else:
            assert row.status == "error" and reason in row.reason
            assert row.to_dict()["status"] == "error"
    with pytest.raises(ImageError, match="too large"):
        predictor.predict(bad_corpus["bomb"][0])


def test_predict_many_matches_predict_and_keeps_order(predictor):
    images = [_rgb(i) for i in range(7)]
    named = [(f"img{i}", img) for i, img in enumerate(images)]
    rows = list(predictor.predict_many(named, batch_size=3))
    assert [r.file for r in rows] == [n for n, _ in named]
    for img, row in zip(images, rows, strict=True):
        assert row.probabilities == pytest.approx(predictor.predict(img).probabilities, abs=1e-6)
    with pytest.raises(DefectlensError):
        list(predictor.predict_many(images, batch_size=0))


def test_threshold_override_and_multithreaded_use(predictor):
    img = _rgb(1)
    p = predictor.predict(img)
    assert predictor.predict(img, threshold=0.0).prediction == "defect"
    assert predictor.predict(img, threshold=1.0).prediction == "ok"  # over 1 is refused (#33)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    data = buf.getvalue()
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: predictor.predict(data).probabilities, range(16)))
    for r in results:
        assert r == pytest.approx(p.probabilities, abs=1e-6)


def test_load_errors(bundle, run_dir, tmp_path):
    with pytest.raises(DefectlensError, match="backend"):
        Predictor.load(bundle, backend="tensorrt")
    with pytest.raises(DefectlensError, match="needs a bundle"):
        Predictor.load(run_dir, backend="onnx")
    with pytest.raises(DefectlensError, match="not found"):
        Predictor.load(tmp_path / "nothing.dlens")


def test_info_exposes_model_id_and_spec(predictor):
    info = predictor.info()
    assert info["model_id"] == predictor.model_id and info["spec"]["arch"] == "simple_cnn"
    assert info["backend"] == "onnxruntime"


def test_a_missing_model_path_is_named_not_taken_for_a_checkpoint(tmp_path):
    """Without this check a missing bundle fell through to the checkpoint branch, which asks for torch."""
    for name in ("gone.dlens", "gone.pt", "no-run-folder"):
        with pytest.raises(DefectlensError) as info:
            Predictor.load(tmp_path / name)
        assert str(info.value) == f"{tmp_path / name}: model file or run folder not found"
