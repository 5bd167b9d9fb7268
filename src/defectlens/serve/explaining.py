"""Grad-CAM overlays for ``POST /v1/predict?explain=true``, or a note saying why there is none.

Grad-CAM needs the model's torch weights (every bundle carries them) and the ``[train]`` extra
(torch, grad-cam). A service installed without them still answers; each file then carries an
``explain_note`` instead of an ``overlay_png``.
"""

from __future__ import annotations

import base64
import io
import logging

from defectlens.core.errors import DefectlensError
from defectlens.inference.predictor import Predictor

_log = logging.getLogger("defectlens.serve")


def explain_png(predictor: Predictor, data: bytes, label: str) -> dict[str, str]:
    """``{"overlay_png": base64 PNG}`` of the Grad-CAM for class ``label``, or ``{"explain_note": why not}``."""
    if not predictor.has_torch_weights:
        return {"explain_note": "no Grad-CAM: this model has no torch weights (serve a .dlens bundle)"}
    try:
        from defectlens.explain.gradcam import explain

        _, overlay = explain(predictor, data, target=label)
    except ImportError as exc:  # torch or grad-cam missing: a service installed without [train]
        missing = exc.name or str(exc)
        return {"explain_note": f"no Grad-CAM: {missing!r} is not installed: pip install 'defectlens[train]'"}
    except DefectlensError as exc:
        return {"explain_note": f"no Grad-CAM: {exc}"}
    except Exception as exc:  # the decision stands without its explanation
        _log.exception("Grad-CAM failed")
        return {"explain_note": f"no Grad-CAM: it failed ({type(exc).__name__})"}
    buf = io.BytesIO()
    overlay.save(buf, format="PNG")
    return {"overlay_png": base64.b64encode(buf.getvalue()).decode("ascii")}
