"""The paths a torch-free install runs need neither torch nor SciPy, scikit-learn or OpenCV (issue 28): those are
the [train], [eval] and [video] extras, about 400 MB the base install, the container image and the standalone
Inspector leave out.

Each test runs in a fresh interpreter where importing any of them raises ImportError, as in an install without
them: the Predictor on a gated bundle, ``predict`` on a labelled folder (its metrics), the Inspector's running
figures, the line station on a hot folder; and where a command does need an extra, the message names it.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.require import import_or_missing

BLOCKED = ("torch", "torchvision", "sklearn", "scipy", "cv2")
BLOCK = textwrap.dedent(
    f"""
    import importlib.abc, sys

    class Blocked(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {BLOCKED!r}:
                raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)", name=name)
            return None

    sys.meta_path.insert(0, Blocked())

    def none_loaded():
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in {BLOCKED!r})
        assert not loaded, loaded
    """
)


def run(code: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", BLOCK + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def parts(folder: Path) -> Path:
    """ok/ and defect/ subfolders (ground truth from the folder names), two 48 px parts each."""
    rng = np.random.default_rng(0)
    for label in ("ok", "defect"):
        (folder / label).mkdir(parents=True)
        for i in range(2):
            pixels = rng.integers(90, 160, (48, 48), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / label / f"{label}{i}.png")
    return folder


def test_the_blocker_blocks():
    proc = run("import sklearn.metrics")
    assert proc.returncode != 0 and "blocked by the test" in proc.stderr


def test_predictor_and_predict_with_metrics(gated_bundle, tmp_path):
    folder = parts(tmp_path / "parts")
    out = tmp_path / "preds"
    proc = run(
        f"""
        from pathlib import Path
        from defectlens import Predictor
        from defectlens.cli import main
        p = Predictor.load({str(gated_bundle)!r})
        rows = list(p.predict_many(sorted(str(f) for f in Path({str(folder)!r}).rglob("*.png"))))
        assert len(rows) == 4 and all(r.status in ("ok", "needs_review") for r in rows), rows
        code = main(["predict", {str(folder)!r}, "--model", {str(gated_bundle)!r}, "--out", {str(out)!r},
                     "--gate", "warn"])
        none_loaded()
        raise SystemExit(code)
        """
    )
    assert proc.returncode in (0, 4), proc.stderr  # 4: the gate flagged some of the random parts
    assert (out / "predictions.csv").read_text().count("\n") == 5
    assert re.search(r"^accuracy \d\.\d{4} on 4 labelled images", proc.stdout, re.M), proc.stdout  # their metrics


def test_the_inspectors_running_figures(gated_bundle, tmp_path):
    folder = parts(tmp_path / "parts")
    proc = run(
        f"""
        import time
        from defectlens.gui.app import Inspector

        app = Inspector(db={str(tmp_path / "log.sqlite")!r}, gate="warn")
        app.open_source({str(folder)!r})
        app.open_model({str(gated_bundle)!r})
        app.wait()
        deadline = time.monotonic() + 60
        while not (app.metrics_ready and app.figures_current):
            assert time.monotonic() < deadline, "no figures"
            app.request_metrics()
            app.wait()
        figures = app.figures
        assert figures is not None and figures["n"] == 4, figures
        assert set(figures) >= {{"accuracy", "macro_f1", "mcc", "roc_auc", "brier", "nll", "ece"}}, figures
        none_loaded()
        app.close()
        print("figures", figures["n"])
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert "figures 4" in proc.stdout


def test_the_line_station_on_a_hot_folder(gated_bundle, tmp_path):
    import_or_missing("watchdog", flag="LINE", reason="the hot folder needs watchdog (the [line] extra)")
    inbox, log = tmp_path / "in", tmp_path / "log.sqlite"
    inbox.mkdir()
    part = parts(tmp_path / "parts") / "ok" / "ok0.png"
    proc = run(
        f"""
        import os, shutil, signal, sqlite3, threading, time
        from defectlens.cli import main

        def feed_then_stop():
            time.sleep(1.0)
            shutil.copy({str(part)!r}, {str(inbox / "p1.png")!r})
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    with sqlite3.connect({str(log)!r}) as db:
                        if db.execute("SELECT count(*) FROM inspections").fetchone()[0]:
                            break
                except sqlite3.OperationalError:
                    pass
                time.sleep(0.1)
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=feed_then_stop, daemon=True).start()
        code = main(["line", "--model", {str(gated_bundle)!r}, "--source", "folder:{inbox}", "--log", {str(log)!r},
                     "--station", "tf", "--gate", "warn"])
        none_loaded()
        raise SystemExit(code)
        """
    )
    assert proc.returncode == 0, proc.stderr
    import sqlite3

    with sqlite3.connect(log) as db:
        assert db.execute("SELECT client_name FROM inspections").fetchall() == [("p1.png",)]


@pytest.mark.parametrize(
    ("code", "extra"),
    [
        ("from defectlens.evaluation.metrics import exact_interval; exact_interval(3, 10)", "eval"),
        ("from defectlens.line.video import _cv2; _cv2()", "video"),
    ],
)
def test_a_missing_extra_is_named(code, extra):
    """The library names the extra, or the CLI does for the package missing (``main`` prints that sentence)."""
    proc = run(
        f"""
        from defectlens.cli import _EXTRAS
        try:
            {code}
        except ModuleNotFoundError as exc:
            print(f"pip install 'defectlens[{{_EXTRAS[exc.name.split('.')[0]]}}]'")
        except Exception as exc:
            print(exc)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert f"pip install 'defectlens[{extra}]'" in proc.stdout, proc.stdout


def test_evaluate_without_the_eval_extra_says_which_to_install(gated_bundle, tiny_dataset, tmp_path):
    proc = run(
        f"""
        from defectlens.cli import main
        raise SystemExit(main(["evaluate", {str(gated_bundle)!r}, "--data", {str(tiny_dataset)!r},
                               "--out", {str(tmp_path / "eval")!r}]))
        """
    )
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'defectlens[eval]'" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
