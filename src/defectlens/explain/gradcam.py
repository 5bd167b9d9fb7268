"""Grad-CAM for any defectlens model, via the ``grad-cam`` package (``pytorch_grad_cam``): the torch path.

Surfaces call :func:`defectlens.explain.maps.explain`, which takes the torch-free CAM where the bundle
has it and this module where it does not (a dense head, an older bundle, a checkpoint).

The heatmap is computed on the torch copy of the network (a bundle's safetensors weights) at the
model's input size, on exactly the preprocessed input the Predictor classifies, then resized to
the original image so the overlay lines up with what the inspector sees.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from defectlens.data.images import load_image
from defectlens.explain.overlay import overlay
from defectlens.inference.predictor import Predictor

if TYPE_CHECKING:
    from torch import nn

    from defectlens.models import Classifier


def explain(predictor: Predictor, image: Any, *, target: int | str | None = None) -> tuple[np.ndarray, Image.Image]:
    """Grad-CAM for one image, through torch (:func:`defectlens.explain.maps.explain` picks the CAM when the
    bundle has it).

    Args:
        predictor: a :class:`~defectlens.inference.predictor.Predictor` with torch weights.
        image: path, bytes or PIL image.
        target: class index or name to explain; default: the predicted class.

    Returns:
        ``(heatmap, overlay)``: a float32 array (H, W) in [0, 1] at the original image size, and an
        RGB PIL image of that size with the heatmap blended in and the label and probability drawn.
    """
    # decoded as every model path decodes it (gray for a 1-channel model), so the map is of the verdict's pixels
    original = image if isinstance(image, Image.Image) else load_image(image, gray=predictor.spec.in_channels == 1)
    heatmap, idx, probs = gradcam_map(predictor, original, target=target)
    label = f"{predictor.spec.class_names[idx]} {probs[idx]:.1%}"
    return heatmap, overlay(original, heatmap, label=label)


def gradcam_map(
    predictor: Predictor, original: Image.Image, *, target: int | str | None = None
) -> tuple[np.ndarray, int, np.ndarray]:
    """The Grad-CAM heatmap at ``original``'s size, the explained class and the image's probabilities."""
    import torch
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    arr = predictor.preprocess(original)
    x = torch.from_numpy(arr[None].astype(np.float32) / np.float32(255.0))
    model = predictor.torch_model()
    with predictor.explain_lock:  # the CAM's hooks make the model single-user while it runs
        with torch.inference_mode():
            probs = predictor.probabilities(model(x).float().numpy())[0]
        idx = predictor.class_index(target, probs)
        # The map explains the image as it is, not the flipped views test-time augmentation adds.
        with GradCAM(model=_single_view(model), target_layers=[model.target_layer]) as cam:
            small = cam(input_tensor=x, targets=[ClassifierOutputTarget(idx)])[0]
    return _resize(np.nan_to_num(small.astype(np.float32)), original.size), idx, probs


def _single_view(model: Classifier) -> nn.Module:
    """The Classifier without test-time augmentation, as a module (what Grad-CAM differentiates)."""
    from defectlens.models.classifier import SingleView

    return SingleView(model)


def _resize(heatmap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    img = Image.fromarray(heatmap, mode="F").resize(size, Image.Resampling.BILINEAR)
    return np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)


def save_overlay(predictor: Predictor, image: Any, out: str | Path, *, target: int | str | None = None) -> Path:
    """Write the Grad-CAM overlay of ``image`` as a PNG and return its path."""
    _, img = explain(predictor, image, target=target)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out, format="PNG")
    return out
