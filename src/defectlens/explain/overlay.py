"""Drawing an explanation: a [0, 1] heatmap in jet colours blended onto the image, with its label.

NumPy and Pillow only, so a torch-free install (the line PC, the container) draws the same overlay as
the torch path did with pytorch-grad-cam's ``show_cam_on_image`` (which needs OpenCV).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from defectlens.data.images import convert_mode


def jet(heatmap: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3) jet colours of a [0, 1] map (MATLAB's jet: within 5 of 255 levels of the
    OpenCV colour map pytorch-grad-cam draws with), on 256 levels as OpenCV's is."""
    x = np.uint8(255 * np.clip(heatmap, 0.0, 1.0)).astype(np.float32) / np.float32(255.0)
    channels = [np.clip(1.5 - np.abs(4.0 * x - centre), 0.0, 1.0) for centre in (3.0, 2.0, 1.0)]
    return np.round(np.stack(channels, axis=-1) * 255.0).astype(np.uint8)


def overlay(image: Image.Image, heatmap: np.ndarray, *, label: str = "", alpha: float = 0.45) -> Image.Image:
    """Blend a [0, 1] heatmap (jet colours) onto ``image`` and draw ``label`` in the top-left corner."""
    rgb = np.asarray(convert_mode(image, 3), dtype=np.float32) / 255.0
    blended = alpha * (jet(heatmap).astype(np.float32) / 255.0) + (1.0 - alpha) * rgb
    blended = blended / max(float(blended.max()), 1e-7)  # as pytorch-grad-cam's show_cam_on_image
    out = Image.fromarray(np.uint8(255 * blended))
    if label:
        draw = ImageDraw.Draw(out)
        box = draw.textbbox((4, 4), label)
        draw.rectangle((box[0] - 3, box[1] - 3, box[2] + 3, box[3] + 3), fill=(0, 0, 0))
        draw.text((4, 4), label, fill=(255, 255, 255))
    return out
