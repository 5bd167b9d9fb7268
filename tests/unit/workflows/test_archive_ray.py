"""Archive scoring on Ray Data (``predict --engine ray``) against local predict, on a local Ray.

The same folder through both engines gives the same rows, cell for cell (bar the timing column): the
Ray engine decides through local predict's own code. One Ray serves the module (its start takes seconds).
"""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from defectlens.core.errors import DefectlensError
from defectlens.inference.predictor import Predictor
from defectlens.workflows import archive
from defectlens.workflows.archive import ArchiveModel, Cluster, score_archive
from defectlens.workflows.predict import collect_inputs, predict_files
from tests.conftest import draw_part
from tests.require import import_or_missing
from tests.unit.hardening import corpus as C

TIMING = {"latency_ms"}


@pytest.fixture(scope="module")
def ray_local():
    ray = import_or_missing("ray", flag="EXTRAS", reason="--engine ray needs the [ray] extra (Ray Data, pyarrow)")
    import_or_missing("pyarrow", flag="EXTRAS", reason="--engine ray needs the [ray] extra (Ray Data, pyarrow)")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def archive_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Parts in class subfolders, a black frame (the gate's needs_review), and five entries that are error
    rows: a corrupt PNG, a text file, an empty file, a dangling symlink and a FIFO (never opened); a hidden
    file, which is no input."""
    root = tmp_path_factory.mktemp("archive")
    rng = np.random.default_rng(3)
    for label in ("ok", "defect"):
        (root / label).mkdir()
        for i in range(12):
            draw_part(rng, label == "defect").save(root / label / f"{label}_{i:02d}.png")
    Image.new("L", (48, 48)).save(root / "black.png")
    (root / "defect" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    (root / "notes.txt").write_text("not an image", encoding="utf-8")
    (root / "empty.png").write_bytes(b"")
    (root / ".hidden.png").write_bytes(b"")
    (root / "gone.png").symlink_to(root / "missing.png")
    os.mkfifo(root / "pipe.png")
    return root


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def local_rows(bundle: Path, folder: Path, out: Path) -> list[dict[str, str]]:
    predictor = Predictor.load(bundle)
    predict_files(predictor, collect_inputs(folder, predictor.spec.class_names), out=out)
    return read_csv(out / "predictions.csv")


def same_cells(a: list[dict[str, str]], b: list[dict[str, str]], *, skip: set[str] = TIMING) -> None:
    assert [list(r) for r in a] == [list(r) for r in b]  # the same columns, in the same order
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert {k: v for k, v in x.items() if k not in skip} == {k: v for k, v in y.items() if k not in skip}


def test_same_rows_as_local_predict(ray_local, gated_bundle, archive_dir, tmp_path):
    local = local_rows(gated_bundle, archive_dir, tmp_path / "local")
    result = score_archive(archive_dir, model=ArchiveModel(str(gated_bundle)), out=tmp_path / "ray", cluster=Cluster())
    rows = read_csv(tmp_path / "ray" / "predictions.csv")
    same_cells(local, rows)
    assert result.files == result.scored == len(rows) == 30 and result.skipped == 0
    status = {Path(r["file"]).name: (r["status"], r["reason"]) for r in rows}
    assert status["corrupt.png"][0] == status["notes.txt"][0] == status["empty.png"][0] == "error"
    assert "not an image" in status["notes.txt"][1] and status["empty.png"][1] == "empty file (0 bytes)"
    assert status["gone.png"][0] == status["pipe.png"][0] == "error" and "FIFO" in status["pipe.png"][1]
    assert status["black.png"][0] == "needs_review"
    assert result.statuses["error"] == len(result.errors) == 5


def test_parquet_holds_the_same_rows(ray_local, gated_bundle, archive_dir, tmp_path):
    import pyarrow.parquet as pq

    score_archive(archive_dir, model=ArchiveModel(str(gated_bundle), gate="warn"), out=tmp_path, cluster=Cluster())
    table = pq.read_table(tmp_path / archive.PARQUET_DIR)
    csv_rows = {r["file"]: r for r in read_csv(tmp_path / "predictions.csv")}
    assert table.num_rows == len(set(table.column("file").to_pylist())) == len(csv_rows) == 30
    assert table.schema.field("confidence").type == "double" and table.schema.field("status").type == "string"
    for row in table.to_pylist():
        cells = csv_rows[row["file"]]
        for k, v in row.items():
            assert cells[k] == ("" if v is None else str(v)), (row["file"], k)


def test_resume_scores_only_the_files_without_a_row(ray_local, bundle, archive_dir, tmp_path):
    import pyarrow.parquet as pq

    model = ArchiveModel(str(bundle))
    first = score_archive(archive_dir, model=model, out=tmp_path, cluster=Cluster(actors=1))
    assert first.scored == 30
    (part,) = (tmp_path / archive.PARQUET_DIR).glob("part-*.parquet")
    pq.write_table(pq.read_table(part).slice(0, 12), part)  # as if the run had stopped after 12 rows
    again = score_archive(archive_dir, model=model, out=tmp_path, cluster=Cluster())
    assert (again.skipped, again.scored, again.files) == (12, 18, 30)
    rows = read_csv(tmp_path / "predictions.csv")
    assert len(rows) == len({r["file"] for r in rows}) == 30  # rows = files: none lost, none twice
    same_cells(local_rows(bundle, archive_dir, tmp_path / "local"), rows)
    done = score_archive(archive_dir, model=model, out=tmp_path, cluster=Cluster())
    assert (done.skipped, done.scored, done.actors) == (30, 0, 0)  # nothing left: Ray is not even asked


def test_resume_refuses_another_model_or_threshold(ray_local, bundle, archive_dir, tmp_path):
    score_archive(f"{archive_dir}/ok/*.png", model=ArchiveModel(str(bundle)), out=tmp_path, cluster=Cluster())
    with pytest.raises(DefectlensError, match=r"another model or settings.*--force"):
        score_archive(archive_dir, model=ArchiveModel(str(bundle), threshold=0.2), out=tmp_path)
    forced = score_archive(archive_dir, model=ArchiveModel(str(bundle), threshold=0.2), out=tmp_path, force=True)
    assert (forced.skipped, forced.scored) == (0, 30)


def test_object_store_uri_reads_bytes_through_ray(ray_local, bundle, archive_dir, tmp_path):
    """A URI goes through Ray's reader (here ``file://``; ``s3://`` and ``gs://`` alike): its bytes are
    decoded under the same rule, so only the file column differs from local predict."""
    score_archive(f"file://{archive_dir}", model=ArchiveModel(str(bundle)), out=tmp_path / "uri", cluster=Cluster())
    rows = read_csv(tmp_path / "uri" / "predictions.csv")
    assert all(r["file"].startswith("file:///") for r in rows)
    odd = {"gone.png", "pipe.png"}  # pyarrow lists no dangling symlink; the FIFO is an error row, never opened
    local = [r for r in local_rows(bundle, archive_dir, tmp_path / "local") if Path(r["file"]).name not in odd]
    same_cells(local, [r for r in rows if Path(r["file"]).name not in odd], skip=TIMING | {"file"})
    (pipe,) = [r for r in rows if r["file"].endswith("/pipe.png")]
    assert (pipe["status"], pipe["reason"]) == ("error", "not a regular file (a FIFO, socket or device); not opened")


def closed_port() -> int:
    """A local port with nothing listening on it (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_address_that_does_not_answer_fails_fast():
    port = closed_port()
    started = time.perf_counter()
    with pytest.raises(DefectlensError, match=rf"--address 127\.0\.0\.1:{port}: no Ray cluster answers there"):
        archive.reachable(f"127.0.0.1:{port}", timeout_s=2)
    assert time.perf_counter() - started < 3
    with pytest.raises(DefectlensError, match="give HOST:PORT"):
        archive.reachable("no-port-here")


def test_the_command_names_the_address_that_does_not_answer(ray_local, bundle, archive_dir, tmp_path):
    port = closed_port()
    argv = ["predict", str(archive_dir), "--model", str(bundle), "--out", str(tmp_path), "--engine", "ray"]
    result = C.run_cli([*argv, "--address", f"127.0.0.1:{port}"])
    assert result.code == 2 and f"--address 127.0.0.1:{port}: no Ray cluster answers there" in result.err
    assert C.run_cli([*argv, "--threads", "2"]).code == 2  # each actor has one core
    assert "need --engine ray" in C.run_cli([*argv[:-2], "--actors", "2"]).err


def test_without_the_extra_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(DefectlensError, match=r"pip install 'defectlens\[ray\]'"):
        archive.import_ray()


def test_ray_is_imported_only_when_used():
    code = (
        "import sys, defectlens, defectlens.cli, defectlens.cli.predict, defectlens.workflows.archive; "
        "print(sorted({'ray', 'pyarrow'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
