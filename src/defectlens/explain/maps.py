"""One way every surface explains a decision: the CAM from the graph when the bundle has it, else Grad-CAM.

``predict --explain``, the service's overlay, the Inspector's toggle and the report's figures call
:func:`explain`. It uses :meth:`Predictor.explain` (the graph's feature output and the head's weights in
NumPy: no torch, see :mod:`defectlens.inference.cam`) when the predictor has it, and Grad-CAM through
torch (:mod:`defectlens.explain.gradcam`, the ``[train]`` extra) for the rest: a dense head, where the
two differ, a bundle exported before the feature output, the torch backend, a checkpoint. The export
checks the two agree where both exist (``spec.json``'s ``parity.cam``). :attr:`Explained.method` names
the path taken, for the surface to show.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from defectlens.data.images import load_image
from defectlens.explain.overlay import overlay
from defectlens.inference.predictor import Predictor

#: What a surface shows for the torch path.
GRADCAM = "Grad-CAM (torch)"


@dataclass(frozen=True)
class Explained:
    """A heatmap (float32 (H, W) in [0, 1] at the image's size), its overlay and how it was made."""

    heatmap: np.ndarray
    overlay: Image.Image
    method: str


def method(predictor: Predictor) -> str | None:
    """The path :func:`explain` takes for ``predictor`` (``"CAM (onnxruntime)"``, ``"Grad-CAM (torch)"``),
    or None when it has none (:func:`unavailable` says why)."""
    return predictor.cam_method or (GRADCAM if unavailable(predictor) is None else None)


def unavailable(predictor: Predictor) -> str | None:
    """Why ``predictor`` cannot be explained here, or None when it can."""
    if predictor.cam_method is not None:
        return None
    if not predictor.has_torch_weights:
        return "this model has no feature output for a CAM and no torch weights for Grad-CAM (open a .dlens bundle)"
    missing = [m for m in ("torch", "pytorch_grad_cam") if not _importable(m)]
    if missing:
        return (
            f"{' and '.join(missing)} not installed, and this bundle's graph has no feature output for a CAM "
            "(exported before defectlens had it, or a dense head): pip install 'defectlens[train]' for Grad-CAM, "
            "or export the bundle again"
        )
    return None


def _importable(module: str) -> bool:
    """Whether ``module`` can be found, without importing it (a finder that refuses it counts as missing)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def explain(predictor: Predictor, image: Any, *, target: int | str | None = None) -> Explained:
    """The explanation of one image for class ``target`` (index or name; default: the decided class).

    Raises:
        DefectlensError: for an unknown target class; ImportError when only Grad-CAM could explain and
            torch or grad-cam is not installed.
    """
    # decoded as every model path decodes it (gray for a 1-channel model), so the map is of the verdict's pixels
    original = image if isinstance(image, Image.Image) else load_image(image, gray=predictor.spec.in_channels == 1)
    if predictor.cam_method is not None:
        found = predictor.explain(original, target=target)
        heat, index, probs, how = found.heatmap, found.index, found.probabilities, found.method
    else:
        from defectlens.explain.gradcam import gradcam_map  # torch: only on this path

        heat, index, probs = gradcam_map(predictor, original, target=target)
        how = GRADCAM
    label = f"{predictor.spec.class_names[index]} {probs[index]:.1%}"
    return Explained(heat, overlay(original, heat, label=label), how)


def save_overlay(predictor: Predictor, image: Any, out: str | Path, *, target: int | str | None = None) -> Explained:
    """Write the overlay of ``image`` as a PNG at ``out``; returns the explanation."""
    found = explain(predictor, image, target=target)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    found.overlay.save(out, format="PNG")
    return found
