"""Issue #33, rows lost: a problem writing an output is exit 2 with the path and the reason, never an
internal error (3), and never half a row that reads as a row.

Read-only folders, full disks and quotas are injected at each write step (every errno a user meets);
the real ones run in a subprocess: a file-size limit (RLIMIT_FSIZE, which also truncates a write
midway), /dev/full as standard output, standard output closed, a name that is a file in the way, and
dangling symbolic links at every output path.
"""

from __future__ import annotations

import csv
import errno
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

import defectlens.workflows.predict as workflow
from tests.unit.hardening import corpus as C

ERRNOS = [errno.EACCES, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EPERM]
REASONS = {
    errno.EACCES: "permission denied",
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "no space left",
    errno.EDQUOT: "quota",
    errno.EFBIG: "file too large",
    errno.EIO: "input/output error",
    errno.EPERM: "not permitted",
}


def _cli(*argv: str, **kw) -> subprocess.CompletedProcess:
    """``python -m defectlens ARGV`` in a child process (for limits and file descriptors of its own)."""
    kw.setdefault("stdout", subprocess.PIPE)
    return subprocess.run([sys.executable, "-m", "defectlens", *argv], stderr=subprocess.PIPE, timeout=300, **kw)


def _one_error_line(err: str, *words: str) -> None:
    lines = err.strip().splitlines()
    assert lines and lines[-1].startswith("defectlens: error: "), err
    assert "Traceback" not in err and "internal error" not in err
    for word in words:
        assert word in lines[-1], (word, lines[-1])


def _complete_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a predictions.csv, after asserting that every line is a whole row."""
    data = path.read_bytes()
    assert not data or data.endswith(b"\r\n"), data[-80:]  # never a half row at the end
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    assert all(len(r) == len(rows[0]) for r in rows), rows
    return [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]


@pytest.fixture
def parts(tmp_path: Path) -> Path:
    folder = tmp_path / "parts"
    C.good_images(folder, n=9)
    return folder


@pytest.mark.parametrize("code", ERRNOS, ids=errno.errorcode.get)
@pytest.mark.parametrize("step", ["mkdir", "open", "write"])
def test_a_write_failure_is_exit_2_naming_the_path_and_reason(step, code, bundle, parts, tmp_path, monkeypatch):
    out = tmp_path / "out"
    fail = OSError(code, os.strerror(code))
    if step == "mkdir":
        real_mkdir = Path.mkdir

        def mkdir(self, *a, **kw):
            if self == out:
                raise OSError(code, os.strerror(code), str(self))
            return real_mkdir(self, *a, **kw)

        monkeypatch.setattr(Path, "mkdir", mkdir)
    elif step == "open":
        monkeypatch.setattr(workflow, "open_output", lambda path: (_ for _ in ()).throw(fail))
    else:
        calls = []

        def write_all(fh, data):  # the fourth row: half of it written, then the disk fails
            calls.append(1)
            if len(calls) == 4:
                fh.write(data[: len(data) // 2])
                raise fail
            fh.write(data)

        monkeypatch.setattr(workflow, "write_all", write_all)
    result = C.run_cli(["predict", str(parts), "--model", str(bundle), "--out", str(out)])
    assert not result.crash and result.code == 2, (result.crash, result.err)
    name = "out" if step == "mkdir" else "predictions.csv"
    _one_error_line(result.err, name, REASONS[code])
    if step == "write":
        assert "3 complete rows" in result.err
        assert len(_complete_rows(out / "predictions.csv")) == 3


def _limit(size: int):
    def set_limit() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))

    return set_limit


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
@pytest.mark.parametrize("limit", [0, 150, 437, 700, 1111])
def test_a_file_size_limit_keeps_only_whole_rows(limit, bundle, parts, tmp_path):
    out = tmp_path / "out"
    proc = _cli("predict", str(parts), "--model", str(bundle), "--out", str(out), preexec_fn=_limit(limit), text=True)
    assert proc.returncode == 2, proc.stderr
    _one_error_line(proc.stderr, str(out / "predictions.csv"), "file too large")
    rows = _complete_rows(out / "predictions.csv")
    assert f"its {len(rows)} complete rows are kept" in proc.stderr
    assert len(rows) < 9 and all(r["status"] == "ok" and r["latency_ms"] for r in rows)


def test_data_import_under_a_size_limit_leaves_no_half_manifest(tmp_path):
    src = tmp_path / "src"
    for label in ("ok", "defect"):
        C.good_images(src / label, n=30)
    out = tmp_path / "ds"
    proc = _cli("data", "import", str(src), "--out", str(out), preexec_fn=_limit(2000), text=True)
    assert proc.returncode == 2, proc.stderr
    _one_error_line(proc.stderr, "manifest.csv", "file too large", "nothing was written")
    assert sorted(p.name for p in out.iterdir()) == []  # no manifest.csv at all, not half of one


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full here")
@pytest.mark.parametrize("target", ["one image", "folder"])
def test_stdout_on_a_full_disk_is_exit_2(target, bundle, parts, tmp_path):
    args = [str(parts / "good_0.png")] if target == "one image" else [str(parts), "--out", str(tmp_path / "o")]
    with Path("/dev/full").open("w") as full:
        proc = _cli("predict", *args, "--model", str(bundle), stdout=full, text=True)
    assert proc.returncode == 2, proc.stderr
    _one_error_line(proc.stderr, "standard output", "no space left")


@pytest.mark.parametrize("command", [["predict", "{image}"], ["predict", "{parts}", "--out", "{tmp}/o"], ["--version"]])
def test_closed_stdout_is_exit_2_before_any_work(command, bundle, parts, tmp_path):
    argv = [a.format(image=parts / "good_0.png", parts=parts, tmp=tmp_path) for a in command]
    if argv[0] == "predict":
        argv += ["--model", str(bundle)]
    proc = _cli(*argv, preexec_fn=lambda: os.close(1), text=False)
    assert proc.returncode == 2, proc.stderr
    _one_error_line(proc.stderr.decode(), "standard output is closed")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("layout", ["file", "file/below", "file/below/deeper"])
def test_out_through_a_file_is_exit_2(layout, bundle, parts, tmp_path):
    (tmp_path / "file").write_text("in the way")
    result = C.run_cli(["predict", str(parts), "--model", str(bundle), "--out", str(tmp_path / layout)])
    assert not result.crash and result.code == 2, (result.crash, result.err)
    _one_error_line(result.err, "a file of that name is in the way")
    assert (tmp_path / "file").read_text() == "in the way"


def _read_only_folder(tmp_path: Path) -> Path:
    """A folder no one may create entries in, for real: chmod 555 (root ignores it: then /sys)."""
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    for candidate in (folder, Path("/sys")):
        try:
            (candidate / "probe").mkdir()
        except OSError:
            return candidate
        (candidate / "probe").rmdir()
    pytest.skip("no read-only folder here (root, and /sys is writable)")


def test_read_only_out_for_real(bundle, parts, tmp_path):
    out = _read_only_folder(tmp_path) / "out"
    result = C.run_cli(["predict", str(parts), "--model", str(bundle), "--out", str(out)])
    assert not result.crash and result.code == 2, (result.crash, result.err)
    _one_error_line(result.err, str(out), "cannot write")


def _dangling(link: Path, tmp_path: Path) -> Path:
    target = tmp_path / "elsewhere" / f"target-of-{link.name}"
    target.parent.mkdir(exist_ok=True)
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
    return target


@pytest.mark.parametrize("which", ["--out folder", "predictions.csv inside --out"])
def test_a_dangling_symlink_output_is_refused_then_replaced_never_followed(which, bundle, parts, tmp_path):
    out = tmp_path / "out"
    link = out if which == "--out folder" else out / "predictions.csv"
    target = _dangling(link, tmp_path)
    argv = ["predict", str(parts), "--model", str(bundle), "--out", str(out)]
    refused = C.run_cli(argv)
    assert not refused.crash and refused.code == 2 and "--force" in refused.err, refused.err
    assert not target.exists() and link.is_symlink()
    forced = C.run_cli([*argv, "--force"])
    assert forced.code == 0, forced.err
    assert not target.exists() and not (out / "predictions.csv").is_symlink()
    assert len(_complete_rows(out / "predictions.csv")) == 9


def test_export_and_import_refuse_a_dangling_symlink_out(run_dir, tmp_path):
    bundle_link = tmp_path / "m.dlens"
    bundle_target = _dangling(bundle_link, tmp_path)
    result = C.run_cli(["export", str(run_dir), "--out", str(bundle_link)])
    assert not result.crash and result.code == 2 and "dangling" in result.err, result.err
    src = tmp_path / "src"
    for label in ("ok", "defect"):
        C.good_images(src / label)
    ds_link = tmp_path / "ds"
    ds_target = _dangling(ds_link, tmp_path)
    result = C.run_cli(["data", "import", str(src), "--out", str(ds_link)])
    assert not result.crash and result.code == 2 and "dangling" in result.err, result.err
    assert not bundle_target.exists() and not ds_target.exists()
