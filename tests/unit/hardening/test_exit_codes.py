"""Issue #18 item 10: exit codes mean one thing in every command.

0 ok; 1 some inputs failed (error rows); 2 usage or input error (one line naming the problem);
3 internal error (one line naming a log file that holds the traceback); 130 interrupted.
"""

from __future__ import annotations

import pytest

from tests.unit.hardening import corpus as C

BAD_INPUT = {
    "data import": ["data", "import", "{missing}", "--out", "{tmp}/ds"],
    "data split": ["data", "split", "{missing}"],
    "data stats": ["data", "stats", "{missing}"],
    "train": ["train", "--data", "{missing}", "--out", "{tmp}/runs"],
    "train --resume": ["train", "--resume", "{missing}"],
    "evaluate": ["evaluate", "{missing}"],
    "export": ["export", "{missing}", "--out", "{tmp}/m.dlens"],
    "predict": ["predict", "{missing}", "--model", "{bundle}"],
    "predict --model": ["predict", "{tmp}", "--model", "{missing}"],
    "bench": ["bench", "--model", "{missing}"],
    "demo": ["demo", "--recipe", "no-such-recipe", "--data", "{tmp}/d", "--out", "{tmp}/r"],
    "serve": ["serve", "--model", "{missing}"],
    "inspector": ["inspector", "--model", "{missing}"],
}


@pytest.mark.parametrize("command", sorted(BAD_INPUT))
def test_bad_input_is_exit_2_with_one_line(command, bundle, tmp_path):
    argv = [a.format(missing=tmp_path / "missing", tmp=tmp_path, bundle=bundle) for a in BAD_INPUT[command]]
    result = C.run_cli(argv)
    assert not result.crash and result.code == 2, (result.crash, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("defectlens: error: ")
    assert "Traceback" not in result.err


@pytest.mark.parametrize("argv", [["predict", "--no-such-flag"], ["no-such-command"], []])
def test_usage_errors_are_exit_2(argv):
    result = C.run_cli(argv)
    assert not result.crash and result.code == 2


def test_internal_error_is_exit_3_with_the_traceback_in_a_log(bundle, image, monkeypatch, _crash_logs):
    import defectlens.workflows.predict as workflow

    def bug(*args, **kwargs):
        raise RuntimeError("a bug, not bad input")

    monkeypatch.setattr(workflow, "collect_inputs", bug)
    result = C.run_cli(["predict", str(image), "--model", str(bundle)])
    assert not result.crash and result.code == 3
    line = result.err.strip()
    assert "\n" not in line and "internal error: RuntimeError: a bug, not bad input" in line
    logs = list(_crash_logs.glob("crash-*.log"))
    assert len(logs) == 1 and str(logs[0]) in line and "Traceback" in logs[0].read_text()


def test_interrupt_is_exit_130(bundle, image, monkeypatch):
    import defectlens.workflows.predict as workflow

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(workflow, "collect_inputs", interrupted)
    assert C.run_cli(["predict", str(image), "--model", str(bundle)]).code == 130


def test_predict_exit_0_and_1(bundle, tmp_path):
    folder = tmp_path / "parts"
    C.good_images(folder)
    assert C.run_cli(["predict", str(folder), "--model", str(bundle), "--out", str(tmp_path / "a")]).code == 0
    (folder / "broken.png").write_bytes(b"not a png")
    assert C.run_cli(["predict", str(folder), "--model", str(bundle), "--out", str(tmp_path / "b")]).code == 1
