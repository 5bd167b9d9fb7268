"""The service runs without torch (a line PC without the [train] extra); Grad-CAM then says why not."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.unit.inference.test_torch_free import BLOCK_TORCH


@pytest.mark.slow
def test_service_predicts_and_explains_with_a_note_without_torch(bundle, tmp_path):
    code = f"""
        import io, time
        import numpy as np
        from PIL import Image
        from fastapi.testclient import TestClient
        from defectlens.inference.predictor import Predictor
        from defectlens.inspections import InspectionLog
        from defectlens.serve import create_app

        buf = io.BytesIO()
        Image.fromarray(np.zeros((20, 20), np.uint8)).save(buf, "PNG")
        app = create_app(Predictor.load({str(bundle)!r}, threads=1), InspectionLog({str(tmp_path / "l.sqlite")!r}))
        with TestClient(app, base_url="http://127.0.0.1") as c:
            r = c.post("/v1/predict?explain=true", files={{"files": ("a.png", buf.getvalue(), "image/png")}})
        res = r.json()["results"][0]
        assert r.status_code == 200 and res["status"] == "ok", r.text
        assert "overlay_png" not in res and "not installed" in res["explain_note"], res
        assert "torch" not in sys.modules
        print("ok")
    """
    proc = subprocess.run([sys.executable, "-c", BLOCK_TORCH + textwrap.dedent(code)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["ok"]
