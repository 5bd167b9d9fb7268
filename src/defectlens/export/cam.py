"""At export: whether a model's explanation can run without torch, and the check that it equals Grad-CAM.

A model whose head is global average pooling then a linear layer (:meth:`Classifier.cam_head`) is
exported with its last feature map as one more graph output; ``spec.json``'s ``cam`` entry names the
output and the head's tensors in ``model.safetensors``, and :mod:`defectlens.inference.cam` computes the
map with NumPy. Before the entry is written, the map from each installed runtime's graph is compared
with pytorch-grad-cam's GradCAM on the torch model (the torch path, :mod:`defectlens.explain.gradcam`)
for the decided class of a few validation images: the largest absolute difference of the two [0, 1]
maps at the input size, and the smallest Pearson correlation. A graph beyond :data:`CAM_TOLERANCE`
ships without the entry, so its surfaces explain through torch, as for a dense head.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from defectlens.core.bundle import CAM_OUTPUT
from defectlens.core.decision import decide, softmax
from defectlens.core.errors import DefectlensError
from defectlens.core.spec import ModelSpec
from defectlens.inference import cam
from defectlens.inference.backends import installed_runtimes, onnx_runner, openvino_runner
from defectlens.inference.cam import ANOMALY_MAP

if TYPE_CHECKING:
    from defectlens.models import Classifier

#: Validation images the CAM is compared with Grad-CAM on (each costs a backward pass in torch).
CAM_IMAGES = 8
#: Largest allowed difference of the two [0, 1] maps at any pixel of the input size.
CAM_TOLERANCE = 1e-3
#: The INT8 graph's map is judged by its correlation with Grad-CAM: its features are quantised, so its
#: map is close in shape, not to 1e-3. Below this the INT8 graph explains through torch.
INT8_CAM_TOLERANCE = 0.9
IDENTITY = "Grad-CAM at the last feature map = class activation map for a global-average-pool + linear head"
#: An anomaly model's explanation: its anomaly map, a graph output like the CAM's features.
ANOMALY_METHOD = "anomaly map (PatchCore nearest-neighbour patch distances, upsampled and smoothed)"


def cam_entry(model: Classifier) -> dict[str, Any] | None:
    """``spec.json``'s ``cam`` entry for ``model``, or None when its head breaks the identity (dense head)."""
    from defectlens.models.patchcore import AnomalyModel  # torch: only when exporting

    names = model.cam_head()
    if names is None:
        return None
    if isinstance(model, AnomalyModel):
        low, high = (float(v) for v in model.head.map_range)
        return {
            "output": CAM_OUTPUT, "weight": names[0], "bias": names[1], "method": ANOMALY_METHOD,
            "kind": ANOMALY_MAP, "range": [low, high],
        }  # fmt: skip
    return {"output": CAM_OUTPUT, "weight": names[0], "bias": names[1], "method": IDENTITY}


def anomaly_map_parity(model: Classifier, onnx_bytes: bytes, spec: ModelSpec, images: np.ndarray) -> dict[str, Any]:
    """The graph's anomaly map against torch's on ``images``, per installed runtime, both drawn as an overlay
    draws them (:func:`defectlens.inference.cam.anomaly_map_at`); ``ok`` as for :func:`cam_parity`."""
    import torch

    from defectlens.models.patchcore import AnomalyModel

    assert isinstance(model, AnomalyModel)
    images = images[:CAM_IMAGES]
    low, high = (float(v) for v in model.head.map_range)
    with torch.inference_mode():
        _, _, maps = model.eval().forward_outputs(torch.from_numpy(images.astype(np.float32) / np.float32(255.0)))
    reference = np.stack([cam.anomaly_map_at(m, (low, high)) for m in maps.numpy()])
    checked: dict[str, dict[str, Any]] = {}
    for runtime in installed_runtimes():
        try:
            _, features = _graph_features(runtime, onnx_bytes, images)
        except DefectlensError as exc:
            checked[runtime] = {"ok": False, "reason": str(exc)}
            continue
        ours = np.stack([cam.anomaly_map_at(f, (low, high)) for f in features])
        checked[runtime] = _compare(ours, reference, min_correlation=None)
    ref = checked.get("onnx", {"ok": False, "reason": "ONNX Runtime did not run"})
    return {
        "method": ANOMALY_METHOD, "images": len(images), "rule": f"max abs diff <= {CAM_TOLERANCE:g}",
        "max_abs_diff": ref.get("max_abs_diff"), "min_correlation": ref.get("min_correlation"),
        "ok": bool(ref.get("ok")), "backends": checked,
    }  # fmt: skip


def gradcam_maps(model: Classifier, images: np.ndarray, targets: Sequence[int] | np.ndarray) -> np.ndarray:
    """pytorch-grad-cam's GradCAM (N, H, W) at the input size, for uint8 images (N, C, H, W) and a class each."""
    import torch
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from defectlens.models.classifier import SingleView

    x = torch.from_numpy(images.astype(np.float32) / np.float32(255.0))
    with GradCAM(model=SingleView(model.eval()), target_layers=[model.target_layer]) as grad_cam:
        maps = grad_cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in targets])
    return np.nan_to_num(np.asarray(maps, dtype=np.float32))


def cam_parity(
    model: Classifier,
    onnx_bytes: bytes,
    spec: ModelSpec,
    images: np.ndarray,
    *,
    runtimes: Sequence[str] | None = None,
    tolerance: float | None = None,
) -> dict[str, Any]:
    """The graph's NumPy CAM against torch Grad-CAM on ``images`` (uint8 (N, C, H, W)), per installed runtime.

    The top-level figures and ``ok`` are ONNX Runtime's (every bundle runs on it). ``ok``: the largest
    difference within :data:`CAM_TOLERANCE`, or with ``tolerance`` (the INT8 graph's rule) the smallest
    correlation at least that.
    """
    images = images[:CAM_IMAGES]
    checked: dict[str, dict[str, Any]] = {}
    reference: np.ndarray | None = None
    names = model.cam_head()
    if names is None:
        raise DefectlensError(f"{model.head.__class__.__name__}: no class activation map for this head")
    weight = model.state_dict()[names[0]].detach().cpu().float().numpy()
    for runtime in runtimes or installed_runtimes():
        try:
            logits, features = _graph_features(runtime, onnx_bytes, images)
        except DefectlensError as exc:
            checked[runtime] = {"ok": False, "reason": str(exc)}
            continue
        targets = decide(
            softmax(logits, spec.temperature), positive_index=spec.positive_index, threshold=spec.threshold
        )
        if reference is None:
            reference = gradcam_maps(model, images, targets)
        ours = np.stack(
            [cam.cam_at(f, weight, int(t), input_size=spec.input_size) for f, t in zip(features, targets, strict=True)]
        )
        checked[runtime] = _compare(ours, reference, min_correlation=tolerance)
    ref = checked.get("onnx", {"ok": False, "reason": "ONNX Runtime did not run"})
    return {
        "method": IDENTITY,
        "images": len(images),
        "rule": f"max abs diff <= {CAM_TOLERANCE:g}" if tolerance is None else f"min correlation >= {tolerance:g}",
        "max_abs_diff": ref.get("max_abs_diff"),
        "min_correlation": ref.get("min_correlation"),
        "ok": bool(ref.get("ok")),
        "backends": checked,
    }


def _graph_features(runtime: str, onnx_bytes: bytes, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    build = {"onnx": onnx_runner, "openvino": openvino_runner}[runtime]
    _, graph = build(onnx_bytes, threads=1, name="cam check")
    run = cam.feature_runner(graph)
    if run is None:
        raise DefectlensError(f"the graph has no {CAM_OUTPUT!r} output")
    return run(images.astype(np.float32) / np.float32(255.0))


def _compare(ours: np.ndarray, torch_maps: np.ndarray, *, min_correlation: float | None) -> dict[str, Any]:
    diff = float(np.abs(ours - torch_maps).max())
    corr = min(_correlation(a, b) for a, b in zip(ours, torch_maps, strict=True))
    ok = diff <= CAM_TOLERANCE if min_correlation is None else corr >= min_correlation
    out: dict[str, Any] = {"ok": bool(ok), "max_abs_diff": diff, "min_correlation": corr}
    if not ok:
        out["reason"] = f"CAM differs from Grad-CAM: max abs diff {diff:.3g}, min correlation {corr:.3g}"
    return out


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two maps; 1 for two constant maps that are equal (an all-zero CAM)."""
    if a.std() == 0 or b.std() == 0:
        return 1.0 if np.allclose(a, b, atol=CAM_TOLERANCE) else 0.0
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])
