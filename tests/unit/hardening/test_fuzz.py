"""Bounded fuzzing (hypothesis): image bytes, spec.json fields and CSV rows raise nothing but
DefectlensError (ImageError for images) or succeed. ``deadline=None``: the machine is shared."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from defectlens.core.bundle import read_bundle
from defectlens.core.errors import DefectlensError, ImageError
from defectlens.core.spec import ModelSpec
from defectlens.data.images import decode_image, preprocess
from defectlens.data.importers import import_dataset
from tests.unit.hardening import corpus as C

pytestmark = pytest.mark.slow

SPEC = ModelSpec("simple_cnn", 32, 1, (0.5,), (0.25,), class_names=("ok", "defect"), positive_class="defect")
SEEDS = [C.jpeg((64, 48)), C.encode(C.noise(), "PNG"), C.encode(C.noise(), "BMP"), C.encode(C.noise(), "TIFF"),
         C.encode(C.noise(), "GIF"), C.encode(C.noise(), "WEBP"), C.encode(C.noise(), "PPM")]  # fmt: skip
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)


@st.composite
def mutated_images(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "zero"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "cut":
            del data[at : at + draw(st.integers(1, 512))]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        else:
            data[at : at + 256] = bytes(len(data[at : at + 256]))
    return bytes(data)


@FUZZ
@given(data=st.one_of(mutated_images(), st.binary(max_size=2048)))
def test_image_bytes(data):
    try:
        arr = preprocess(data, SPEC)
    except ImageError:
        return
    assert arr.shape == (1, 32, 32) and arr.dtype == np.uint8


@pytest.fixture(scope="module")
def predictor(bundle):
    from defectlens.inference.predictor import Predictor

    return Predictor.load(bundle)


@settings(max_examples=30, deadline=None, database=None)
@given(data=st.lists(mutated_images(), min_size=1, max_size=5))
def test_predict_many_always_yields_a_row_per_input(data, predictor):
    rows = list(predictor.predict_many([(f"f{i}", d) for i, d in enumerate(data)], batch_size=2))
    assert [r.file for r in rows] == [f"f{i}" for i in range(len(data))]
    assert all(r.status in ("ok", "error") and (r.ok or r.reason) for r in rows)


@pytest.fixture(scope="module")
def _base_bundle(bundle) -> tuple[dict, dict]:
    return C.bundle_parts(bundle)


_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**6), 10**6), st.floats(allow_nan=True), st.text(max_size=12),
    st.lists(st.one_of(st.floats(-2, 2), st.text(max_size=6), st.integers(-3, 3)), max_size=4),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)  # fmt: skip
_FIELDS = ["arch", "input_size", "in_channels", "mean", "std", "interpolation", "resize", "class_names",
           "positive_class", "threshold", "temperature", "tta", "illumination", "extra"]  # fmt: skip


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=st.dictionaries(st.sampled_from(_FIELDS), _VALUES, min_size=1, max_size=4))
def test_spec_json_fields(changes, _base_bundle, tmp_path):
    meta, members = _base_bundle
    meta = json.loads(json.dumps(meta))
    meta["spec"].update(changes)
    path = C.write_crafted(tmp_path / "fuzz.dlens", meta, members, compression=zipfile.ZIP_STORED)
    try:
        loaded = read_bundle(path)
    except DefectlensError:
        return
    assert loaded.spec.input_size == meta["spec"]["input_size"]


_CELL = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=20)


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(
        st.lists(st.one_of(_CELL, st.sampled_from(["a.png", "b.png", "../x.png", "/etc/hostname", "ok", "test"])),
                 max_size=5),
        max_size=6,
    ),
    encoding=st.sampled_from(["utf-8", "cp1252", "latin-1"]),
)  # fmt: skip
def test_csv_rows(rows, encoding, tmp_path_factory):
    folder = tmp_path_factory.mktemp("csv")
    for name in ("a.png", "b.png"):
        C.noise(seed=len(name)).save(folder / name)
    buf = io.StringIO()
    import csv

    writer = csv.writer(buf)
    writer.writerow(["path", "label", "split"])
    writer.writerows(rows)
    (folder / "labels.csv").write_bytes(buf.getvalue().encode(encoding, errors="replace"))
    try:
        manifest = import_dataset(folder / "labels.csv", fmt="csv", workers=1)
    except DefectlensError:
        return
    assert all(Path(manifest.resolve(r)).is_file() for r in manifest.records)


def test_decode_image_never_leaks_other_errors_on_zip_and_text():
    for data in (b"PK\x03\x04" + bytes(100), b"%PDF-1.4\n", b"\xff\xd8\xff" + bytes(10), zipfile.__doc__.encode()):
        with pytest.raises(ImageError):
            decode_image(data)
