"""Class activation maps (CAM) from the graph's feature output, in NumPy: explanations without torch.

For a head that pools the last feature map A (K, h, w) globally and applies one linear layer W (C, K),
Grad-CAM at that map equals the class activation map (Zhou et al., CVPR 2016): the gradient of logit c
with respect to A_k is W_ck / (h w) at every position, so Grad-CAM's channel weights are W_c up to a
positive factor, and ReLU(sum_k W_ck A_k) normalised to [0, 1] is the same map. A bundle exported
with ``cam`` in its ``spec.json`` has that feature map as a graph output
(:data:`~defectlens.core.bundle.CAM_OUTPUT`) and names the head's weight in ``model.safetensors``; the
runtime's pass gives the map and NumPy the rest. The export checks it against pytorch-grad-cam's
GradCAM on validation images (:mod:`defectlens.export.cam`).

The normalisation and resizing follow pytorch-grad-cam (ReLU, min-max to [0, 1], bilinear resize to
the model's input size, again min-max), then a bilinear resize to the image as decoded, as the torch
path does, so both paths draw the same overlay.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from defectlens.core.bundle import ANOMALY_MAP, CAM_OUTPUT, WEIGHTS_FILE, safetensors_array

#: A batch (N, C, H, W) in [0, 1] to the graph's logits (N, classes) and feature maps (N, K, h, w).
FeatureRunner = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class ClassActivation:
    """What :meth:`Predictor.explain` returns.

    Attributes:
        heatmap: float32 (H, W) in [0, 1] at the size of the image as decoded.
        index: the explained class.
        probabilities: calibrated class probabilities of the image (from the same pass).
        method: how the map was made, for a surface to show (``"CAM (onnxruntime)"``).
    """

    heatmap: np.ndarray
    index: int
    probabilities: np.ndarray
    method: str


@dataclass(frozen=True)
class CamModel:
    """A graph's feature runner and the head weight (C, K) the map is computed with; for an anomaly model
    (``map_range`` set) the runner's second output is the anomaly map itself, drawn with that fixed range."""

    run: FeatureRunner
    weight: np.ndarray
    method: str
    map_range: tuple[float, float] | None = None

    def heatmap(self, features: np.ndarray, index: int, *, input_size: int, size: tuple[int, int]) -> np.ndarray:
        """The map of one image's graph output at the image's ``size`` (width, height), in [0, 1]."""
        if self.map_range is not None:
            return np.clip(resized(anomaly_map_at(features, self.map_range), size), 0.0, 1.0)
        return heatmap(features, self.weight, index, input_size=input_size, size=size)


def map_range(meta: dict[str, Any]) -> tuple[float, float] | None:
    """The fixed drawing range of an anomaly model's map (``spec.json``'s ``cam.range``), or None for a CAM."""
    entry = meta.get("cam")
    if not isinstance(entry, dict) or entry.get("kind") != ANOMALY_MAP:
        return None
    low, high = entry["range"]
    return float(low), float(high)


def anomaly_map_at(features: np.ndarray, span: tuple[float, float]) -> np.ndarray:
    """An anomaly map (1, S, S) in raw distance units drawn in [0, 1]: ``span[0]`` (typical of good parts)
    and below is 0, ``span[1]`` (the image threshold's score) and above is 1: no per-image stretching, so
    a good part's overlay stays cold."""
    low, high = span
    return np.clip((np.asarray(features[0], np.float32) - low) / np.float32(high - low), 0.0, 1.0)


def head_weight(meta: dict[str, Any], members: dict[str, bytes]) -> np.ndarray | None:
    """The head's weight (C, K) that ``spec.json``'s ``cam`` entry names, or None for a bundle without one.

    The entry was checked when the bundle was read (:func:`defectlens.core.bundle.cam_problem`).
    """
    entry = meta.get("cam")
    if not isinstance(entry, dict):
        return None
    return safetensors_array(members[WEIGHTS_FILE], str(entry["weight"]))


def class_activation_map(features: np.ndarray, weight: np.ndarray, index: int) -> np.ndarray:
    """ReLU(sum_k W_ck A_k) of one feature map (K, h, w), min-max normalised to [0, 1] (float32 (h, w))."""
    cam = np.tensordot(weight[index].astype(np.float32), features.astype(np.float32), axes=1)
    return _normalised(np.maximum(cam, 0.0))


def cam_at(features: np.ndarray, weight: np.ndarray, index: int, *, input_size: int) -> np.ndarray:
    """The map at the model's input size, as pytorch-grad-cam returns it (what the export compares)."""
    small = class_activation_map(features, weight, index)
    return _normalised(np.maximum(resized(small, (input_size, input_size)), 0.0))


def heatmap(
    features: np.ndarray, weight: np.ndarray, index: int, *, input_size: int, size: tuple[int, int]
) -> np.ndarray:
    """The map at the image's ``size`` (width, height), in [0, 1]: what an overlay draws."""
    return np.clip(resized(cam_at(features, weight, index, input_size=input_size), size), 0.0, 1.0)


def resized(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A float32 (h, w) map resized bilinearly to ``size`` (width, height)."""
    img = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32), mode="F")
    return np.asarray(img.resize(size, Image.Resampling.BILINEAR), dtype=np.float32)


def _normalised(cam: np.ndarray) -> np.ndarray:
    cam = cam - cam.min()
    return (cam / (np.float32(1e-7) + cam.max())).astype(np.float32)


def feature_runner(graph: Any) -> FeatureRunner | None:
    """The runner returning the logits and :data:`CAM_OUTPUT` of ``graph`` (an ONNX Runtime session or
    an OpenVINO :class:`~defectlens.inference.backends.OpenVinoGraph`), or None when the graph has no
    such output (a bundle exported before it, or with a head where the identity does not hold).

    Plain predictions never fetch the map: ONNX Runtime returns only the outputs a call names, and this
    runner is a separate call made only to explain.
    """
    outputs = [o.name for o in graph.get_outputs()]
    if CAM_OUTPUT not in outputs:
        return None
    compiled = getattr(graph, "compiled", None)
    if compiled is not None:  # OpenVINO: one infer request, used by one caller at a time
        request, lock = compiled.create_infer_request(), threading.Lock()

        def run_openvino(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            with lock:
                result = request.infer({0: batch})
                return (
                    np.array(result[compiled.output(outputs[0])], np.float32),
                    np.array(result[compiled.output(CAM_OUTPUT)], np.float32),
                )

        return run_openvino
    input_name = graph.get_inputs()[0].name
    fetch = [outputs[0], CAM_OUTPUT]

    def run_onnx(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, features = graph.run(fetch, {input_name: batch})
        return np.asarray(logits, np.float32), np.asarray(features, np.float32)

    return run_onnx
