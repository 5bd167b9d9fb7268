"""The standalone QA Inspector (``make inspector-app``: PyInstaller, ``packaging/inspector.spec``): the BUILT program,
not Python, started on an Xvfb display on a bundle and a folder of real ELPV cells, until its first verdict; and
started on a missing or a corrupt bundle, where it shows an error dialog naming the file, never a traceback.

The program is built here unless ``dist/defectlens-inspector`` is newer than every source it is built from (the
library, ``packaging/``, ``pyproject.toml``), so an edit is never tested against an old build. It skips when Xvfb,
xdotool, Tk or PyInstaller is missing, unless DEFECTLENS_REQUIRE_UI_TESTS=1 (CI), where that fails. Set
DEFECTLENS_UI_SCREENSHOTS=DIR to keep the screenshots.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import elpv_cells
from tests.require import missing

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "dist" / "defectlens-inspector"
PROGRAM = APP / ("defectlens-inspector.exe" if sys.platform == "win32" else "defectlens-inspector")
SOURCES = [ROOT / "pyproject.toml", *ROOT.joinpath("packaging").glob("*"), *ROOT.joinpath("src").rglob("*.py")]
TITLE = "defectlens QA Inspector"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def display() -> str:
    """A private Xvfb display, after the checks CI may not skip (xdotool and PyInstaller here; Xvfb and Tk in
    :func:`xvfb`)."""
    if shutil.which("xdotool") is None:
        missing("UI_TESTS", "xdotool not installed (apt-get install -y xdotool)")
    try:
        import PyInstaller  # noqa: F401
    except ImportError as exc:
        missing("UI_TESTS", f"PyInstaller is not installed (pip install 'defectlens[dev]'): {exc}")
    from tests.integration.test_inspector_xvfb import xvfb

    return xvfb("1280x900")


@pytest.fixture(scope="module")
def program(display) -> Path:
    """The built program: rebuilt when any source is newer than it (``make inspector-app``'s command)."""
    newest = max(p.stat().st_mtime for p in SOURCES if p.is_file())
    if not PROGRAM.is_file() or PROGRAM.stat().st_mtime < newest:
        cmd = [sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN", "--distpath", "dist"]
        cmd += ["--workpath", "build/pyinstaller", "packaging/inspector.spec"]
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1200)
        assert done.returncode == 0, done.stderr[-3000:]
    assert PROGRAM.stat().st_mtime >= newest
    return PROGRAM


def test_the_built_program_carries_no_torch(program):
    internal = program.parent / "_internal"
    shipped = {p.name.split(".")[0].split("-")[0] for p in internal.iterdir()}
    assert {"onnxruntime", "PIL", "numpy", "_tcl_data", "_tk_data"} <= shipped
    assert not shipped & {"torch", "torchvision", "matplotlib", "openvino", "cv2", "fastapi"}


class Launched:
    """The program running on the display, its stderr in a file; stopped (by its own id) on exit."""

    def __init__(self, program: Path, display: str, tmp_path: Path, *args: str):
        env = {**os.environ, "DISPLAY": display, "DEFECTLENS_CONFIG_DIR": str(tmp_path / "config")}
        self.display, self.err = display, tmp_path / "stderr.txt"
        with self.err.open("w") as err:
            self.proc = subprocess.Popen([str(program), "--db", str(tmp_path / "log.sqlite"), *args], env=env,
                                         stdout=err, stderr=subprocess.STDOUT)  # fmt: skip
        self.started = time.perf_counter()

    def window(self, pattern: str, timeout: float = 120.0) -> tuple[str, float]:
        """The name of the first shown window whose name matches ``pattern``, and seconds since the start."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"the program ended ({self.proc.returncode}): {self.err.read_text()}"
            env = {**os.environ, "DISPLAY": self.display}
            cmd = ["xdotool", "search", "--onlyvisible", "--name", "QA Inspector", "getwindowname", "%@"]  # then re
            found = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30)
            names = [n for n in found.stdout.splitlines() if re.search(pattern, n)]
            if names:
                return names[0], time.perf_counter() - self.started
            time.sleep(0.1)
        raise TimeoutError(f"no window {pattern!r} in {timeout} s; stderr: {self.err.read_text()}")

    def stop(self) -> str:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        return self.err.read_text()


@pytest.fixture
def launch(program, display, tmp_path) -> Iterator:
    running: list[Launched] = []

    def start(*args: str) -> Launched:
        launched = Launched(program, display, tmp_path, *args)
        running.append(launched)
        return launched

    yield start
    for launched in running:
        if launched.proc.poll() is None:
            launched.stop()


def screenshot(display: str, path: Path) -> np.ndarray:
    from PIL import ImageGrab

    image = ImageGrab.grab(xdisplay=display)
    image.save(path)
    keep = os.environ.get("DEFECTLENS_UI_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        image.save(Path(keep) / path.name)
    return np.asarray(image.convert("L"), dtype=np.float64)


def test_first_verdict_on_real_cells(launch, bundle, display, tmp_path):
    cells = elpv_cells(tmp_path / "cells", per_class=3)
    app = launch("--model", str(bundle), "--folder", str(cells))
    name, seconds = app.window(rf"^{TITLE} - cell\d+\.png: ")
    assert re.fullmatch(rf"{TITLE} - cell\d{{4}}\.png: (OK|DEFECT|NEEDS REVIEW)", name), name
    assert seconds < 120
    time.sleep(1.0)  # the scored batch's figures are drawn after the first verdict
    pixels = screenshot(display, tmp_path / "inspector-app.png")
    assert pixels.shape == (900, 1280) and pixels.std() > 20  # a drawn window, not a blank screen
    assert "Traceback" not in app.stop()


@pytest.mark.parametrize("problem", ["missing", "corrupt"])
def test_a_bad_bundle_is_named_in_a_dialog_not_a_traceback(launch, display, tmp_path, problem):
    model = tmp_path / f"{problem}.dlens"
    if problem == "corrupt":
        model.write_bytes(b"PK\x03\x04 half a bundle")
    app = launch("--model", str(model))
    app.window(rf"^{TITLE}: error$", timeout=60)
    time.sleep(1.0)  # the dialog is mapped before its text is drawn
    pixels = screenshot(display, tmp_path / f"inspector-app-{problem}.png")
    assert pixels.std() > 5
    assert app.proc.poll() is None  # the window stays: another model can be opened
    said = app.stop()
    assert str(model) in said and "Traceback" not in said
    assert ("not found" if problem == "missing" else "not a defectlens bundle") in said
