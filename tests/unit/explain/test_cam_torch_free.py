"""Explanations without torch: ``predict --explain`` and the service's overlay on a pooled-head bundle, in a
fresh interpreter where importing torch (and so pytorch-grad-cam) raises ImportError."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.unit.inference.test_torch_free import BLOCK_TORCH


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", BLOCK_TORCH + textwrap.dedent(code)], capture_output=True, text=True)


def _image(path: Path) -> Path:
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 56), dtype=np.uint8)).save(path)
    return path


def test_predict_explain_without_torch(cam_bundle, tmp_path):
    img = _image(tmp_path / "part.png")
    folder = tmp_path / "parts"
    folder.mkdir()
    _image(folder / "a.png")
    one, many = tmp_path / "one", tmp_path / "many"
    flags = ["--model", str(cam_bundle), "--explain", "--gate", "off", "--out"]
    proc = _run(
        f"""
        from defectlens.cli import main
        code = main(["predict", {str(img)!r}, *{flags!r}, {str(one)!r}])
        assert code in (0, 4), code
        code = main(["predict", {str(folder)!r}, *{flags!r}, {str(many)!r}])
        assert code in (0, 4), code
        assert "torch" not in sys.modules and "pytorch_grad_cam" not in sys.modules
        """
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout[: proc.stdout.index("\n}") + 2])
    assert result["explain_method"] == "CAM (onnxruntime-int8)"  # the bundle's default graph: INT8, accepted
    with Image.open(result["overlay"]) as overlay:
        assert overlay.size == (56, 40)
    assert "overlays: CAM (onnxruntime-int8)" in proc.stdout
    assert len(list((many / "gradcam").glob("*_gradcam.png"))) == 1


@pytest.mark.slow
def test_service_overlay_without_torch(cam_bundle, tmp_path):
    proc = _run(
        f"""
        import io
        import numpy as np
        from PIL import Image
        from fastapi.testclient import TestClient
        from defectlens.inference.predictor import Predictor
        from defectlens.inspections import InspectionLog
        from defectlens.serve import create_app

        buf = io.BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 50), dtype=np.uint8)).save(buf, "PNG")
        predictor = Predictor.load({str(cam_bundle)!r}, precision="fp32", threads=1, gate="off")
        app = create_app(predictor, InspectionLog({str(tmp_path / "l.sqlite")!r}))
        with TestClient(app, base_url="http://127.0.0.1") as c:
            r = c.post("/v1/predict?explain=true", files={{"files": ("a.png", buf.getvalue(), "image/png")}})
        res = r.json()["results"][0]
        assert r.status_code == 200 and res["status"] == "ok", r.text
        assert res["explain_method"] == "CAM (onnxruntime)" and "explain_note" not in res, res
        import base64
        overlay = Image.open(io.BytesIO(base64.b64decode(res["overlay_png"])))
        assert overlay.size == (50, 30), overlay.size
        assert "torch" not in sys.modules and "pytorch_grad_cam" not in sys.modules
        print("ok")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["ok"]


def test_an_old_bundle_says_why_not_without_torch(cam_bundle, tmp_path):
    from tests.unit.explain.test_cam import _rewritten

    old = _rewritten(cam_bundle, tmp_path / "old.dlens", cam=None)
    img = _image(tmp_path / "part.png")
    args = ["predict", str(img), "--model", str(old), "--explain", "--gate", "off", "--out", str(tmp_path / "o")]
    proc = _run(
        f"""
        from defectlens.inference.predictor import Predictor
        from defectlens.explain.maps import method, unavailable
        p = Predictor.load({str(old)!r}, threads=1)
        assert method(p) is None and p.cam_method is None
        print(unavailable(p))
        from defectlens.cli import main
        raise SystemExit(main({args!r}))
        """
    )
    assert proc.returncode != 0
    assert "torch" in proc.stdout and "not installed" in proc.stdout and "export the bundle again" in proc.stdout
    assert "--explain:" in proc.stderr + proc.stdout and "Traceback" not in proc.stderr
