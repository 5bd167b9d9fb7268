"""Explanation overlays for ``POST /v1/predict?explain=true``, or a note saying why there is none.

A bundle whose graph has the feature output (every pooled-head model exported since it existed) is
explained by its class activation map, computed from that output in NumPy: no torch, so a service
installed without the ``[train]`` extra explains too. Other models fall back to Grad-CAM through
torch (:mod:`defectlens.explain.maps`); without torch each file then carries an ``explain_note``
instead of an ``overlay_png``. ``explain_method`` names the path taken.
"""

from __future__ import annotations

import base64
import io
import logging

from defectlens.core.errors import DefectlensError
from defectlens.explain.maps import explain, unavailable
from defectlens.inference.predictor import Predictor

_log = logging.getLogger("defectlens.serve")


def explain_png(predictor: Predictor, data: bytes, label: str) -> dict[str, str]:
    """``{"overlay_png": base64 PNG, "explain_method": how}`` for class ``label``, or ``{"explain_note": why not}``."""
    why = unavailable(predictor)
    if why is not None:
        return {"explain_note": f"no explanation: {why}"}
    try:
        found = explain(predictor, data, target=label)
    except ImportError as exc:  # torch or grad-cam missing: a service installed without [train]
        missing = exc.name or str(exc)
        return {"explain_note": f"no Grad-CAM: {missing!r} is not installed: pip install 'defectlens[train]'"}
    except DefectlensError as exc:
        return {"explain_note": f"no explanation: {exc}"}
    except Exception as exc:  # the decision stands without its explanation
        _log.exception("explanation failed")
        return {"explain_note": f"no explanation: it failed ({type(exc).__name__})"}
    buf = io.BytesIO()
    found.overlay.save(buf, format="PNG")
    return {"overlay_png": base64.b64encode(buf.getvalue()).decode("ascii"), "explain_method": found.method}
