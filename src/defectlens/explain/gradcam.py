"""Grad-CAM for any defectlens model, via the ``grad-cam`` package (``pytorch_grad_cam``).

The heatmap is computed on the torch copy of the network (a bundle's safetensors weights) at the
model's input size, on exactly the preprocessed input the Predictor classifies, then resized to
the original image so the overlay lines up with what the inspector sees.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw

from defectlens.core.errors import DefectlensError
from defectlens.data.images import convert_mode, load_image
from defectlens.inference.predictor import Predictor

if TYPE_CHECKING:
    from torch import nn

    from defectlens.models import Classifier


def _target_index(predictor: Predictor, target: int | str | None, probs: np.ndarray) -> int:
    names = predictor.spec.class_names
    if target is None:
        return int(predictor.decide(probs[None])[0])
    if isinstance(target, str):
        if target not in names:
            raise DefectlensError(f"unknown target class {target!r}; the model knows {', '.join(names)}")
        return names.index(target)
    if not 0 <= int(target) < len(names):
        raise DefectlensError(f"target index {target} out of range for {len(names)} classes")
    return int(target)


def explain(predictor: Predictor, image: Any, *, target: int | str | None = None) -> tuple[np.ndarray, Image.Image]:
    """Grad-CAM for one image.

    Args:
        predictor: a :class:`~defectlens.inference.predictor.Predictor` with torch weights.
        image: path, bytes or PIL image.
        target: class index or name to explain; default: the predicted class.

    Returns:
        ``(heatmap, overlay)``: a float32 array (H, W) in [0, 1] at the original image size, and an
        RGB PIL image of that size with the heatmap blended in and the label and probability drawn.
    """
    import torch
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    original = image if isinstance(image, Image.Image) else load_image(image)
    arr = predictor.preprocess(original)
    x = torch.from_numpy(arr[None].astype(np.float32) / np.float32(255.0))
    model = predictor.torch_model()
    with predictor.explain_lock:  # the CAM's hooks make the model single-user while it runs
        with torch.inference_mode():
            probs = predictor.probabilities(model(x).float().numpy())[0]
        idx = _target_index(predictor, target, probs)
        # The map explains the image as it is, not the flipped views test-time augmentation adds.
        with GradCAM(model=_single_view(model), target_layers=[model.target_layer]) as cam:
            small = cam(input_tensor=x, targets=[ClassifierOutputTarget(idx)])[0]
    heatmap = _resize(np.nan_to_num(small.astype(np.float32)), original.size)
    label = f"{predictor.spec.class_names[idx]} {probs[idx]:.1%}"
    return heatmap, overlay(original, heatmap, label=label)


def _single_view(model: Classifier) -> nn.Module:
    """The Classifier without test-time augmentation, as a module (what Grad-CAM differentiates)."""
    from torch import nn

    class SingleView(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: Any) -> Any:
            return self.model.forward_single(x)

    return SingleView()


def _resize(heatmap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    img = Image.fromarray(heatmap, mode="F").resize(size, Image.Resampling.BILINEAR)
    return np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)


def overlay(image: Image.Image, heatmap: np.ndarray, *, label: str = "", alpha: float = 0.45) -> Image.Image:
    """Blend a [0, 1] heatmap (jet colours) onto ``image`` and draw ``label`` in the top-left corner."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    rgb = np.asarray(convert_mode(image, 3), dtype=np.float32) / 255.0
    blended = Image.fromarray(show_cam_on_image(rgb, heatmap, use_rgb=True, image_weight=1.0 - alpha))
    if label:
        draw = ImageDraw.Draw(blended)
        box = draw.textbbox((4, 4), label)
        draw.rectangle((box[0] - 3, box[1] - 3, box[2] + 3, box[3] + 3), fill=(0, 0, 0))
        draw.text((4, 4), label, fill=(255, 255, 255))
    return blended


def save_overlay(predictor: Predictor, image: Any, out: str | Path, *, target: int | str | None = None) -> Path:
    """Write the Grad-CAM overlay of ``image`` as a PNG and return its path."""
    _, img = explain(predictor, image, target=target)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out, format="PNG")
    return out
