"""The inference path needs no torch: loading a bundle and predicting, from Python and the CLI.

A line PC or a service container installs ``defectlens`` without the ``[train]`` extra; these tests
run the ONNX path in a fresh interpreter where importing torch is made impossible.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image

BLOCK_TORCH = textwrap.dedent(
    """
    import importlib.abc, sys

    class NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError(f"{name} is not installed (blocked by the test)")
            return None

    sys.meta_path.insert(0, NoTorch())
    """
)


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", BLOCK_TORCH + textwrap.dedent(code)], capture_output=True, text=True)


def _image(path: Path) -> Path:
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40), dtype=np.uint8)).save(path)
    return path


def test_bundle_loads_and_predicts_without_torch(bundle, tmp_path):
    img = _image(tmp_path / "part.png")
    proc = _run(
        f"""
        from defectlens import Predictor
        p = Predictor.load({str(bundle)!r})
        r = p.predict({str(img)!r})
        rows = list(p.predict_many([{str(img)!r}, b"not an image"]))
        assert r.ok and r.prediction in p.spec.class_names, r
        assert rows[0].ok and rows[1].status == "error"
        assert "torch" not in sys.modules
        print("ok", p.backend)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["ok", "onnxruntime"]


def test_cli_predicts_a_folder_without_torch(bundle, tmp_path):
    folder = tmp_path / "parts" / "defect"
    folder.mkdir(parents=True)
    _image(folder / "a.png")
    out = tmp_path / "preds"
    proc = _run(
        f"""
        from defectlens.cli import main
        code = main(["predict", {str(folder.parent)!r}, "--model", {str(bundle)!r}, "--out", {str(out)!r}])
        assert "torch" not in sys.modules
        raise SystemExit(code)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert (out / "predictions.csv").read_text().count("\n") == 2  # header and the one image
