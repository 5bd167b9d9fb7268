"""The predict CSV's row values and its writer on hand cases: six decimals, empty cells where a value is
absent, the decoder's warning and the overlay's path, the exact bytes on disk, and what a failed write
leaves (complete rows only) and says."""

from __future__ import annotations

import errno
import io

import pytest

import defectlens.workflows.predict as predict_module
from defectlens.core.errors import DefectlensError
from defectlens.inference.gate import GateCheck
from defectlens.inference.predictor import Prediction
from defectlens.workflows.predict import CSV_COLUMNS, _CsvSink, row_of


def test_probabilities_are_written_to_six_decimals_and_an_absent_threshold_is_an_empty_cell():
    pred = Prediction(
        "p.png", "defect", 0.123456789, {"defect": 0.123456789, "ok": 0.876543211}, None, 1.23456,
        defect_probability=0.123456789,
    )  # fmt: skip
    row = row_of(pred, ["defect", "ok"], "defect", "defect")
    assert row["confidence"] == 0.123457 and row["defect_probability"] == 0.123457
    assert (row["p_defect"], row["p_ok"]) == (0.123457, 0.876543)
    assert row["threshold"] == "" and row["latency_ms"] == 1.235
    assert row["match"] == "MATCH"


def rows_bytes(*rows: list[str]) -> bytes:
    return b"".join(",".join(r).encode() + b"\r\n" for r in rows)


#: the header of a binary model's CSV whose classes are ok, defect: the documented columns, in their order
BINARY_HEADER = [c for name in CSV_COLUMNS for c in (["p_ok", "p_defect"] if name == "p_<class>" else [name])]


def test_a_warned_frame_with_an_overlay_is_written_cell_by_cell(tmp_path):
    """The row a QC engineer reads for a frame that decoded with a warning, passed the gate and got an
    explanation overlay: the gate's OOD score to six decimals, the decoder's warning and the overlay's
    path each in its own column, under the documented header."""
    pred = Prediction(
        "line/p1.jpg", "defect", 0.75, {"ok": 0.25, "defect": 0.75}, 0.5, 2.0,
        extra={"overlay": "out/gradcam/00000_p1.png"}, warning="Corrupt JPEG data: 12 extraneous bytes",
        gate=GateCheck(False, (), 0.123456789, 3.0), defect_probability=0.75,
    )  # fmt: skip
    path = tmp_path / "predictions.csv"
    with _CsvSink(path) as sink:
        sink.write(row_of(pred, ["ok", "defect"], "defect", "defect"))
    cells = ["line/p1.jpg", "ok", "defect", "0.75", "0.75", "0.25", "0.75", "0.5", "false", "0.123457", "2.0"]
    cells += ["defect", "MATCH", "", "", "Corrupt JPEG data: 12 extraneous bytes", "out/gradcam/00000_p1.png"]
    assert path.read_bytes() == rows_bytes(BINARY_HEADER, cells)


def test_a_row_without_gate_warning_or_overlay_holds_empty_strings_never_none():
    """The rows are also what ``predict_files`` hands back (``FolderResult.errors``, ``.review``,
    ``.warnings``): an absent value is an empty string there, as it is an empty cell in the file."""
    pred = Prediction("p.png", "ok", 0.8, {"ok": 0.8, "defect": 0.2}, 0.5, 1.0, defect_probability=0.2)
    row = row_of(pred, ["ok", "defect"], None, "defect")
    assert list(row) == BINARY_HEADER
    absent = ("needs_review", "ood_score", "truth", "match", "reason", "gate_reason", "warning", "overlay")
    assert {c: row[c] for c in absent} == dict.fromkeys(absent, "")


def test_the_writer_puts_the_header_then_each_row_and_fills_a_missing_cell_with_nothing(tmp_path):
    path = tmp_path / "a" / "b" / "predictions.csv"  # folders made as needed
    with _CsvSink(path) as sink:
        sink.write({"file": "x.png", "prediction": "ok"})
        sink.write({"file": "=y.png"})  # no prediction: an empty cell; a formula defused
    assert sink._fh.closed
    assert path.read_bytes() == rows_bytes(["file", "prediction"], ["x.png", "ok"], ["'=y.png", ""])


def test_without_a_path_nothing_is_written_and_nothing_fails():
    with _CsvSink(None) as sink:
        sink.write({"file": "x.png"})
    assert sink._fh is None


def test_a_folder_that_cannot_be_made_names_the_csv_and_the_reason(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    path = tmp_path / "file" / "predictions.csv"
    with pytest.raises(DefectlensError) as info:
        _CsvSink(path).__enter__()
    assert str(info.value).startswith(f"{path}: cannot write: ")


class HalfThenFail:
    """``write_all`` that writes the first ``ok`` chunks whole, then half a chunk and fails as a full disk."""

    def __init__(self, ok: int):
        self.ok, self.calls = ok, 0

    def __call__(self, fh, data: bytes) -> None:
        self.calls += 1
        if self.calls <= self.ok:
            fh.write(data)
            return
        fh.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_failed_write_keeps_complete_rows_only_and_says_how_many(tmp_path, monkeypatch):
    path = tmp_path / "predictions.csv"
    monkeypatch.setattr(predict_module, "write_all", HalfThenFail(ok=3))
    with pytest.raises(DefectlensError) as info, _CsvSink(path) as sink:
        for i in range(5):
            sink.write({"file": f"p{i}.png", "prediction": "ok"})
    reason = predict_module.output_error(path, OSError(errno.ENOSPC, "No space left on device"))
    assert str(info.value) == f"{reason}; its 3 complete rows are kept"
    assert path.read_bytes() == rows_bytes(["file", "prediction"], *[[f"p{i}.png", "ok"] for i in range(3)])


class Unreliable(io.BytesIO):
    """A file whose truncate and close fail (a disk that went away)."""

    def truncate(self, size=None):
        raise OSError(errno.EIO, "I/O error")

    def close(self):
        raise OSError(errno.EIO, "I/O error")


def test_a_cut_back_or_close_that_fails_never_hides_the_write_error(tmp_path, monkeypatch):
    monkeypatch.setattr(predict_module, "open_output", lambda path: Unreliable())
    monkeypatch.setattr(predict_module, "write_all", HalfThenFail(ok=0))
    with pytest.raises(DefectlensError, match="its 0 complete rows are kept"), _CsvSink(tmp_path / "p.csv") as sink:
        sink.write({"file": "p.png"})
