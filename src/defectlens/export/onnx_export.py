"""Torch model -> ONNX bytes with a dynamic batch axis and the ModelSpec in ``metadata_props``.

torch 2.14's recommended exporter is ``torch.onnx.export(..., dynamo=True)`` (torch.export +
onnxscript); the TorchScript-based exporter is kept only as a fallback for a graph the new one
cannot capture. The parity check in :mod:`defectlens.export.parity` bounds every export's
probabilities against eager torch on every installed runtime.

What a profile of the casting bundle (EfficientNet-Lite0, 192 px, 1 channel) under ONNX Runtime
(``SessionOptions.enable_profiling``) showed, and why the graph is exported as it is:

* The dynamo exporter with ``optimize=True`` already folds every BatchNorm into its convolution, and
  ONNX Runtime fuses each Conv with its ReLU6 (``Clip``) into one blocked (NCHWc) kernel: 98.8% of the
  time is in those 49 convolutions, 5.8 of 7.2 ms in the 1x1 ones: 249 M multiply-adds at 43 G/s, about
  the FP32 peak of one Zen 4 core at its 2.6 GHz nominal clock (16 FMA per cycle). Nothing else in the
  graph costs more than 0.3%.
* The exporter and opset change nothing measurable (TorchScript opset 13/18, dynamo opset 17/18/21:
  within 3% of each other at 1 thread, under load noise); opset 18 is kept.
* The in-graph input normalisation costs 0.03 ms (Sub, Div); the optional illumination standardisation
  0.12 ms. Folding the mean/std into the stem convolution exactly needs a Pad with the mean (zero
  padding of the raw input is not zero padding of the normalised one: folding without it moved casting
  probabilities by up to 0.32), and the Pad costs what the fold saves, so the graph keeps them.
* Layout transposes: global average pooling exported as ``ReduceMean`` over (H, W) is not a blocked
  (NCHWc) operator in ONNX Runtime, so every squeeze-and-excitation block (MobileNetV3, EfficientNet-B0)
  pays a reorder out of and back into the blocked layout. :func:`_pool_as_gap` rewrites those as
  ``GlobalAveragePool`` (the same mean): MobileNetV3-Small goes from 18 to 10 input reorders and
  EfficientNet-B0 from 32 to 16, 1-2% faster; EfficientNet-Lite0 (no SE blocks) is unchanged.

The FP32 graph is therefore already at what the CPU can do; the large speed-ups left are lower
precisions (:mod:`defectlens.export.parity`: INT8, opt-in; bfloat16 fails parity).
"""

from __future__ import annotations

import io
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from defectlens.core.bundle import CAM_OUTPUT, FORMAT, META_FORMAT_KEY, META_SPEC_KEY
from defectlens.core.errors import DefectlensError
from defectlens.core.spec import ModelSpec

if TYPE_CHECKING:
    import onnx
    import torch

    from defectlens.models import Classifier
    from defectlens.models.density import LayeredDensity

OPSET = 18
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def to_onnx(
    model: Classifier,
    spec: ModelSpec,
    *,
    opset: int = OPSET,
    density: LayeredDensity | None = None,
    cam: bool = False,
) -> tuple[bytes, str]:
    """Export ``model`` (a Classifier taking float input in [0, 1]) to ONNX.

    With ``density`` the graph has a second output, ``ood`` (N,): the gate's out-of-distribution score
    of each image, from the same pass (:class:`~defectlens.models.density.GatedNetwork`). With ``cam``
    its last output is ``cam_features`` (N, F, h, w): the last feature map of the untransformed image,
    from which :mod:`defectlens.inference.cam` computes the class activation map. A runtime computes
    it anyway (the head pools it); a caller that does not ask for it does not receive it.

    Returns:
        The serialised ONNX model and the name of the exporter that produced it.
    """
    import onnx
    import torch

    from defectlens.models.density import OOD_OUTPUT, GatedNetwork

    model = model.eval().cpu()
    plain = density is None and not cam
    gated = None if density is None else density.eval().cpu()
    module: torch.nn.Module = model if plain else GatedNetwork(model, gated, cam=cam).eval()
    outputs = [OUTPUT_NAME, *([OOD_OUTPUT] if density is not None else []), *([CAM_OUTPUT] if cam else [])]
    # batch 2, not 1: a size-1 example dimension can be specialised away by torch.export
    example = torch.rand(2, spec.in_channels, spec.input_size, spec.input_size)
    try:
        data, exporter = _dynamo(module, example, opset, outputs), "torch.onnx.export(dynamo=True)"
    except Exception as exc:  # capture failures surface as many exception types
        warnings.warn(f"dynamo ONNX export failed ({exc!s:.200}); using the TorchScript exporter", stacklevel=2)
        data, exporter = _legacy(module, example, opset, outputs), "torch.onnx.export(dynamo=False)"
    proto = onnx.load_from_string(data)
    _pool_as_gap(proto)
    strip_provenance(proto)
    onnx.checker.check_model(proto)
    del proto.metadata_props[:]
    for key, value in ((META_FORMAT_KEY, FORMAT), (META_SPEC_KEY, spec.to_json())):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "defectlens"
    return proto.SerializeToString(), exporter


def _dynamo(model: torch.nn.Module, example: torch.Tensor, opset: int, outputs: list[str]) -> bytes:
    import torch

    program = torch.onnx.export(
        model,
        (example,),
        dynamo=True,
        opset_version=opset,
        input_names=[INPUT_NAME],
        output_names=outputs,
        dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},),
        verbose=False,
        optimize=True,
    )
    if program is None:
        raise DefectlensError("ONNX export returned no program")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        program.save(str(path), external_data=False)
        return path.read_bytes()


def _legacy(model: torch.nn.Module, example: torch.Tensor, opset: int, outputs: list[str]) -> bytes:
    import torch

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (example,),
            buf,  # type: ignore[arg-type]  # the legacy exporter accepts a file object
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=outputs,
            dynamic_axes={INPUT_NAME: {0: "batch"}, **{name: {0: "batch"} for name in outputs}},
        )
    return buf.getvalue()


def strip_provenance(proto: onnx.ModelProto) -> None:
    """Remove what the exporter records about the exporting machine from every node, value and graph:
    ``doc_string`` and ``metadata_props`` (torch's stack traces, module paths and FX nodes, which hold
    this machine's source and virtualenv paths). A shipped graph keeps only what runs it; the model's
    own metadata (the spec) is set on the model afterwards."""
    proto.doc_string = ""
    for graph in _graphs(proto):
        graph.doc_string = ""
        del graph.metadata_props[:]
        for item in (*graph.node, *graph.input, *graph.output, *graph.value_info, *graph.initializer):
            item.doc_string = ""
            if hasattr(item, "metadata_props"):
                del item.metadata_props[:]
    for function in proto.functions:
        function.doc_string = ""
        del function.metadata_props[:]
        for node in function.node:
            node.doc_string = ""
            del node.metadata_props[:]


def _graphs(proto: onnx.ModelProto) -> list[onnx.GraphProto]:
    """The main graph and every subgraph held in a node attribute (If, Loop, Scan bodies)."""
    out, todo = [], [proto.graph]
    while todo:
        graph = todo.pop()
        out.append(graph)
        for node in graph.node:
            for attr in node.attribute:
                todo += [attr.g] if attr.HasField("g") else []
                todo += list(attr.graphs)
    return out


def _pool_as_gap(proto: onnx.ModelProto) -> int:
    """Rewrite each ``ReduceMean`` over the two spatial axes of a 4-D tensor as ``GlobalAveragePool`` (with a
    ``Flatten`` when the reduced axes are dropped), in place; returns how many were rewritten.

    The two compute the same mean; ``GlobalAveragePool`` stays in ONNX Runtime's blocked layout (see the
    module docstring). Anything not recognisably that pattern is left as exported.
    """
    from onnx import helper, numpy_helper, shape_inference

    graph = proto.graph
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in shape_inference.infer_shapes(proto).graph.value_info}
    ranks.update({v.name: len(v.type.tensor_type.shape.dim) for v in graph.input})
    consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    rewritten, axes_inputs = 0, set()
    for node in list(graph.node):
        if node.op_type != "ReduceMean" or node.domain not in ("", "ai.onnx") or ranks.get(node.input[0]) != 4:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        axes = attrs.get("axes")
        if axes is None and len(node.input) > 1:
            axes = consts.get(node.input[1])
        if axes is None or sorted(int(a) % 4 for a in np.asarray(axes).ravel()) != [2, 3]:
            continue
        out = node.output[0]
        keep = bool(attrs.get("keepdims", 1))
        pooled = out if keep else f"{out}__gap"
        new = [helper.make_node("GlobalAveragePool", [node.input[0]], [pooled], name=f"{node.name}_gap")]
        if not keep:
            new.append(helper.make_node("Flatten", [pooled], [out], name=f"{node.name}_flatten", axis=1))
        at = list(graph.node).index(node)
        graph.node.remove(node)
        for k, made in enumerate(new):
            graph.node.insert(at + k, made)
        rewritten += 1
        axes_inputs.update(node.input[1:])
    used = {name for n in graph.node for name in n.input} | {o.name for o in graph.output}
    for dead in [i for i in graph.initializer if i.name in axes_inputs and i.name not in used]:
        graph.initializer.remove(dead)  # a rewritten ReduceMean's axes
    return rewritten


def read_onnx_spec(data: bytes) -> ModelSpec | None:
    """The ModelSpec embedded in an ONNX file's ``metadata_props`` (None when absent)."""
    import onnx

    proto = onnx.load_from_string(data)
    for entry in proto.metadata_props:
        if entry.key == META_SPEC_KEY:
            return ModelSpec.from_json(entry.value)
    return None
