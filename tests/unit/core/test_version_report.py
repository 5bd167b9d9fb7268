"""``defectlens --version``: the version, the Python and the runtimes installed beside it."""

from __future__ import annotations

from importlib import metadata

import pytest

from defectlens.cli import main
from defectlens.core.machine import RUNTIMES, version_report
from defectlens.core.version import __version__


def test_version_lists_the_installed_runtimes_only(monkeypatch):
    installed = {"onnxruntime": "1.2.3", "torch": "9.9"}

    def version(name: str) -> str:
        if name in installed:
            return installed[name]
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", version)
    first, second = version_report().splitlines()
    assert first.startswith(f"defectlens {__version__} (Python 3.")
    assert second == "runtimes: onnxruntime 1.2.3, torch 9.9"
    assert RUNTIMES == ("onnxruntime", "openvino", "torch")


def test_the_command_prints_it_and_exits_0(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"defectlens {__version__} ") and f"onnxruntime {metadata.version('onnxruntime')}" in out
