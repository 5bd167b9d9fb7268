"""``defectlens inspector`` refuses clearly (exit 2) where no window can be opened or a path is wrong."""

from __future__ import annotations

import sys

import pytest

from defectlens.cli import main


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="$DISPLAY decides only on Linux/X11")
def test_no_display_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.delenv("DISPLAY", raising=False)
    assert main(["inspector"]) == 2
    err = capsys.readouterr().err
    assert "no display: $DISPLAY is not set" in err and "Traceback" not in err


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="X11 display names are Linux-specific here")
def test_unreachable_display_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setenv("DISPLAY", ":9876")  # no X server there
    assert main(["inspector"]) == 2
    assert "cannot open a window on display ':9876'" in capsys.readouterr().err


def test_missing_paths_are_named(tmp_path, capsys):
    assert main(["inspector", "--folder", str(tmp_path / "nope")]) == 2
    assert f"--folder {tmp_path / 'nope'}: no such file or folder" in capsys.readouterr().err
    assert main(["inspector", "--model", str(tmp_path / "m.dlens")]) == 2
