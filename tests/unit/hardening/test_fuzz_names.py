"""Issue #33: file names fuzzed (hypothesis) through ``defectlens predict`` on a folder and on one file.

Names are built from raw bytes (not always UTF-8), terminal escape sequences, control characters,
newlines, bidi controls, spreadsheet formula prefixes and plain text, up to the 255 bytes a file system
allows. Whatever the names: one row per file, a CSV and a JSON that parse strictly, no cell that
starts with a formula character, the true name in the CSV, and no raw control character on the
terminal (so no name can forge a line of the summary). ``deadline=None``: the machine is shared.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from defectlens.core.text import FORMULA_PREFIXES, csv_cell, terminal_safe, utf8_text
from tests.unit.hardening import corpus as C

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform in ("darwin", "win32"), reason="the file system takes only UTF-8 names"),
]

RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_SPECIAL = [b"\x1b[31m", b"\x1b[2J", b"\x1b]0;owned\x07", b"\n", b"\r", b"\r\n", b"\t", b"\x08", b"\x7f", b"\x9b",
            "\u202e".encode(), "\u2066".encode(), "\u2069".encode(), "\u200f".encode(), "\u061c".encode(),
            b"=", b"+", b"-", b"@", b'=HYPERLINK("http://x")', b"MISMATCH rows: 0", b"error ", b"\xff", b"\xc3(",
            b"\xed\xa0\x80", b"\xe9", b" ", b"\xe6\xac\xa0"]  # fmt: skip
_PIECE = st.one_of(
    st.sampled_from(_SPECIAL),
    st.binary(min_size=1, max_size=24),
    st.text(min_size=1, max_size=12).map(lambda t: t.encode("utf-8")),
)


@st.composite
def file_names(draw: st.DrawFn) -> bytes:
    name = b"".join(draw(st.lists(_PIECE, min_size=1, max_size=8))).replace(b"/", b"_").replace(b"\0", b"_")
    if draw(st.booleans()):
        name = name * draw(st.integers(2, 40))  # long names, up to the limit
    name = name[: draw(st.integers(1, 251))] + b".png"
    return b"x" + name if name.startswith(b".") else name  # a leading dot hides a file: not an input


def _write(folder: Path, name: bytes, good: bool, seed: int) -> Path:
    path = os.path.join(os.fsencode(folder), name)
    with open(path, "wb") as fh:  # a bytes path
        fh.write(C.encode(C.noise(seed=seed), "PNG") if good else b"broken: not an image")
    return Path(os.fsdecode(path))


def _strict_json(text: str):
    def refuse(token: str):
        raise ValueError(f"not JSON: {token}")

    return json.loads(text, parse_constant=refuse)


@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
@given(names=st.lists(file_names(), min_size=1, max_size=5, unique=True), good=st.lists(st.booleans(), min_size=5))
def test_file_names_through_predict(names, good, bundle, tmp_path_factory):
    work = tmp_path_factory.mktemp("names")
    folder = work / "in"
    folder.mkdir()
    files = [_write(folder, n, good[i], i) for i, n in enumerate(names)]
    out = work / "out"
    with C.cwd(folder):  # relative names: each cell starts with the file's own name
        result = C.run_cli(["predict", ".", "--model", str(bundle), "--out", str(out)])
    assert not result.crash and result.code in (0, 1), (result.crash, result.err)
    text = (out / "predictions.csv").read_bytes().decode("utf-8")  # strictly UTF-8
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert sorted(r["file"] for r in rows) == sorted(csv_cell(f.name) for f in files)  # one row each, true name
    for row in rows:
        assert not any(cell.startswith(FORMULA_PREFIXES) for cell in row.values()), row
    assert not RAW_CONTROL.search(result.out), repr(result.out)
    lines = result.out.splitlines()
    errors = [r for r in rows if r["status"] == "error"]
    assert sum(line.startswith("error ") for line in lines) == len(errors)  # no forged summary line
    for r, f in ((r, f) for r in errors for f in files if csv_cell(f.name) == r["file"]):
        assert f"error {terminal_safe(f.name)}: {r['reason']}" in lines
    single = C.run_cli(["predict", str(files[0]), "--model", str(bundle)])
    assert not single.crash and single.code in (0, 1), (single.crash, single.err)
    assert _strict_json(single.out)["file"] == utf8_text(str(files[0]))
