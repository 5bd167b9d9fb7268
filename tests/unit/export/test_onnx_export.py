"""The export-graph pass: spatial ReduceMean becomes GlobalAveragePool (same values), nothing else is touched."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from defectlens.export.onnx_export import _pool_as_gap


def _graph() -> onnx.ModelProto:
    """x (N, 4, 5, 6) -> squeeze-excitation-like gate (ReduceMean keepdims) -> head mean (no keepdims);
    plus a per-image mean over (C, H, W) like the illumination step, which must stay a ReduceMean."""
    axes_hw = numpy_helper.from_array(np.array([2, 3], np.int64), "axes_hw")
    axes_neg = numpy_helper.from_array(np.array([-1, -2], np.int64), "axes_neg")
    axes_chw = numpy_helper.from_array(np.array([1, 2, 3], np.int64), "axes_chw")
    nodes = [
        helper.make_node("ReduceMean", ["x", "axes_hw"], ["gate"], keepdims=1, name="se"),
        helper.make_node("Mul", ["x", "gate"], ["scaled"]),
        helper.make_node("ReduceMean", ["scaled", "axes_neg"], ["pooled"], keepdims=0, name="head"),
        helper.make_node("ReduceMean", ["x", "axes_chw"], ["image_mean"], keepdims=1, name="illumination"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4, 5, 6])],
        [
            helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["n", 4]),
            helper.make_tensor_value_info("image_mean", TensorProto.FLOAT, ["n", 1, 1, 1]),
        ],
        initializer=[axes_hw, axes_neg, axes_chw],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _run(proto: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})


def test_spatial_means_become_global_average_pool_with_the_same_values():
    before = _graph()
    after = _graph()
    assert _pool_as_gap(after) == 2
    onnx.checker.check_model(after)
    ops = [n.op_type for n in after.graph.node]
    assert ops.count("GlobalAveragePool") == 2 and ops.count("ReduceMean") == 1  # the (C, H, W) mean stays
    assert "Flatten" in ops  # the head's keepdims=0 shape is kept
    assert {i.name for i in after.graph.initializer} == {"axes_chw"}  # the rewritten axes are gone
    x = np.random.default_rng(0).random((3, 4, 5, 6), dtype=np.float32)
    for a, b in zip(_run(before, x), _run(after, x), strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_nothing_to_rewrite_leaves_the_graph_alone():
    proto = _graph()
    del proto.graph.node[:3]
    proto.graph.output.pop(0)
    text = proto.SerializeToString()
    assert _pool_as_gap(proto) == 0 and proto.SerializeToString() == text
