"""Model runners behind a :class:`~defectlens.inference.predictor.Predictor`.

Each builder returns a function mapping a float32 batch in [0, 1] (N, C, H, W) to logits (N, K).
ONNX Runtime's ``InferenceSession.run`` and a torch module in inference mode without hooks are both
safe to call from several threads at once, which is what a web service needs; Grad-CAM, which adds
hooks, gets its own copy of the network (see :meth:`Predictor.torch_model`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from defectlens.core.errors import DefectlensError
from defectlens.core.spec import ModelSpec

if TYPE_CHECKING:
    from torch import nn

Runner = Callable[[np.ndarray], np.ndarray]


def onnx_runner(data: bytes, *, threads: int | None = None, name: str = "model.onnx") -> tuple[Runner, Any]:
    """An ONNX Runtime CPU session for a serialised model; returns (runner, session).

    Args:
        data: the ONNX model bytes.
        threads: intra-op threads (None: ONNX Runtime's default, one per physical core).
        name: what to call the model in an error message.

    Raises:
        DefectlensError: when ONNX Runtime cannot load the bytes as a model.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.inter_op_num_threads = 1
    if threads:
        opts.intra_op_num_threads = int(threads)
    opts.log_severity_level = 3  # warnings about unused initialisers are noise for users
    try:
        session = ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own InvalidProtobuf, Fail, InvalidGraph... types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DefectlensError(f"{name}: ONNX Runtime cannot load this model ({first[:300]})") from None
    input_name = session.get_inputs()[0].name

    def run(batch: np.ndarray) -> np.ndarray:
        return session.run(None, {input_name: batch})[0]

    return run, session


def normalizing(run: Runner, *, mean: tuple[float, ...], std: tuple[float, ...]) -> Runner:
    """``run`` fed ``(x - mean) / std`` per channel, for a graph that does not normalise its input itself."""
    m = np.asarray(mean, dtype=np.float32).reshape(1, -1, 1, 1)
    s = np.asarray(std, dtype=np.float32).reshape(1, -1, 1, 1)

    def normalized(batch: np.ndarray) -> np.ndarray:
        return run((batch - m) / s)

    return normalized


def embedded_spec(session: Any) -> ModelSpec | None:
    """The ModelSpec an exported defectlens graph carries in its metadata (None when absent or unreadable)."""
    from defectlens.core.bundle import META_SPEC_KEY

    text = session.get_modelmeta().custom_metadata_map.get(META_SPEC_KEY)
    if not text:
        return None
    try:
        return ModelSpec.from_json(text)
    except (ValueError, TypeError, KeyError):
        return None


def torch_model_from_weights(data: bytes, spec: ModelSpec) -> Any:
    """Rebuild the network of ``spec`` from ``model.safetensors`` bytes (eval mode, CPU)."""
    from safetensors.torch import load

    from defectlens.models import model_from_state  # torch: only when torch weights are wanted

    return model_from_state(load(data), spec)


def torch_runner(model: nn.Module, *, threads: int | None = None) -> Runner:
    """Eager torch inference on the model's current device."""
    import torch

    if threads:
        torch.set_num_threads(int(threads))  # process-wide in torch; only set when asked
    model.eval()
    device = next(model.parameters()).device

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(batch).to(device)).float().cpu().numpy()

    return run
