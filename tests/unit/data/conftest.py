"""Synthetic files in each importer's real on-disk format, written at run time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def noise_image(seed: int, size: int = 24, mode: str = "L") -> Image.Image:
    """A distinct random image (different seeds give far-apart perceptual hashes)."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (size, size, 3 if mode == "RGB" else 1), dtype=np.uint8)
    return Image.fromarray(arr[..., 0] if mode == "L" else arr, mode=mode)


def write_image(path: Path, seed: int, *, size: int = 24, mode: str = "L") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    noise_image(seed, size, mode).save(path)
    return path


VOC = """<annotation><folder>xx</folder><filename>{filename}</filename>
<size><width>24</width><height>24</height><depth>1</depth></size>{objects}</annotation>"""
OBJ = "<object><name>{}</name><bndbox><xmin>{}</xmin><ymin>{}</ymin><xmax>{}</xmax><ymax>{}</ymax></bndbox></object>"


def write_voc(path: Path, filename: str, boxes: list[tuple[str, int, int, int, int]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(VOC.format(filename=filename, objects="".join(OBJ.format(*b) for b in boxes)))
    return path


@pytest.fixture
def broken_files(tmp_path: Path) -> dict[str, Path]:
    """One file per kind of bad or odd input, all in one folder ``bad/``."""
    d = tmp_path / "bad"
    d.mkdir()
    files = {}
    files["zero"] = d / "zero.png"
    files["zero"].write_bytes(b"")
    good = d / "full.jpg"
    noise_image(1, 64, "RGB").save(good, quality=90)
    files["truncated"] = d / "truncated.jpg"
    files["truncated"].write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    good.unlink()
    files["text"] = d / "notes.png"
    files["text"].write_text("this is not an image")
    files["thumbs"] = d / "Thumbs.db"
    files["thumbs"].write_bytes(b"\x00" * 32)
    files["i16"] = d / "deep.png"
    Image.fromarray(np.arange(24 * 24, dtype=np.uint16).reshape(24, 24) * 100).save(files["i16"])
    files["cmyk"] = d / "cmyk.jpg"
    noise_image(2, 24, "RGB").convert("CMYK").save(files["cmyk"])
    files["palette"] = d / "palette.png"
    noise_image(3, 24, "RGB").convert("P").save(files["palette"])
    files["rgba"] = d / "rgba.png"
    noise_image(4, 24, "RGB").convert("RGBA").save(files["rgba"])
    return files
