"""Models trained elsewhere: wrap a classifier a user already has (ONNX, or TorchScript through torch) into a
``.dlens`` bundle, so ``predict``, ``evaluate``, ``serve``, ``line`` and the Inspector run it like one of ours.

A bundle's graph takes images in [0, 1] and normalises inside itself, and carries its
:class:`~defectlens.core.spec.ModelSpec` in its metadata. A foreign graph expects normalised input, so the
wrapper puts ``(x - mean) / std`` in front of it and embeds the spec; the result is loaded once through
:class:`~defectlens.inference.predictor.Predictor` (the graph must agree with the spec's channels, size and
classes: one probe forward). With a labelled folder (class subfolders) the temperature and, for a binary
model with a positive class, the threshold are fitted on it with the same rules as after training.

The bundle has no torch weights (``model.safetensors`` holds no tensor), so Grad-CAM is not offered for it.
Editing the graph needs the ``onnx`` package (the ``[train]`` extra); running the bundle does not.
"""

from __future__ import annotations

import hashlib
import json
import struct
import tempfile
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from defectlens.core.bundle import FORMAT, META_FORMAT_KEY, META_SPEC_KEY, ONNX_FILE, SUFFIX, WEIGHTS_FILE, write_bundle
from defectlens.core.decision import decide, softmax
from defectlens.core.errors import DefectlensError
from defectlens.core.machine import versions
from defectlens.core.spec import IMAGENET_MEAN, IMAGENET_STD, ModelSpec
from defectlens.evaluation.calibration import calibration_summary, choose_temperature
from defectlens.evaluation.threshold import choose_threshold
from defectlens.inference.predictor import Predictor
from defectlens.workflows.predict import collect_inputs

#: The ``arch`` of a wrapped model: not one of the registry's, so nothing tries to rebuild it in torch.
EXTERNAL_ARCH = "external"
#: Names of the nodes and tensors the wrapper adds in front of the foreign graph.
_INPUT, _MEAN, _STD, _CENTRED = "defectlens_image", "defectlens_mean", "defectlens_std", "defectlens_centred"


def wrapped_spec(
    *,
    classes: str | list[str],
    input_size: int,
    channels: int = 3,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    positive_class: str | None = None,
) -> ModelSpec:
    """The spec of a model trained elsewhere, checked against the schema (ImageNet's mean/std by default;
    one value is repeated for every channel).

    Raises:
        SpecError: naming every field that is wrong.
    """
    names = [c.strip() for c in classes.split(",")] if isinstance(classes, str) else list(classes)

    def per_channel(values: tuple[float, ...] | None, default: tuple[float, ...]) -> tuple[float, ...]:
        values = values or (default if channels == 3 else (float(np.mean(default)),))
        return values * channels if len(values) == 1 else values

    return ModelSpec(
        arch=EXTERNAL_ARCH,
        input_size=input_size,
        in_channels=channels,
        mean=per_channel(mean, IMAGENET_MEAN),
        std=per_channel(std, IMAGENET_STD),
        class_names=tuple(names),
        positive_class=positive_class,
    ).check()


@dataclass(frozen=True)
class WrapResult:
    """Where the bundle went, its id and its ``spec.json``."""

    path: Path
    model_id: str
    meta: dict[str, Any]


def wrap_model(
    source: str | Path,
    out: str | Path,
    *,
    spec: ModelSpec,
    torchscript: bool = False,
    calibrate: str | Path | None = None,
    force: bool = False,
) -> WrapResult:
    """Wrap the ONNX or TorchScript classifier ``source`` (logits out, normalised NCHW float in) into a bundle.

    Args:
        source: an ONNX file, or with ``torchscript`` a TorchScript file (converted through torch).
        out: bundle path (``.dlens`` is appended when it has no suffix).
        spec: what the model expects and answers (``arch`` is replaced by :data:`EXTERNAL_ARCH`).
        torchscript: ``source`` is TorchScript (``torch.jit.save``), converted to ONNX here; needs torch.
        calibrate: folder of class subfolders named after ``spec.class_names`` to fit temperature and threshold on.
        force: replace an existing ``out``.

    Raises:
        DefectlensError: a missing or unreadable model, a graph that disagrees with the spec, a calibration
            folder without labelled images, or an existing ``out`` without ``force``.
    """
    src, out = Path(source), Path(out)
    out = out if out.suffix else out.with_suffix(SUFFIX)
    if out.exists() and not force:
        raise DefectlensError(f"{out} already exists; pass --force to replace it")
    if not src.is_file():
        raise DefectlensError(f"{src}: model file not found")
    spec = spec.replace(arch=EXTERNAL_ARCH, threshold=None, temperature=1.0).check()
    raw = torchscript_to_onnx(src, spec) if torchscript else src.read_bytes()
    graph = normalising_graph(raw, spec, name=src.name)
    predictor = Predictor.from_onnx(with_spec(graph, spec), threads=1, name=src.name)  # 1: whole batches, unsliced
    _check_batches(predictor, src.name)
    calibration: dict[str, Any] | None = None
    if calibrate is not None:
        spec, calibration = fit_on_folder(predictor, spec, Path(calibrate))
    members = {ONNX_FILE: with_spec(graph, spec), WEIGHTS_FILE: empty_safetensors()}
    meta: dict[str, Any] = {
        "spec": spec.to_dict(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": src.name,
        "exporter": "defectlens bundle (wrapped " + ("TorchScript" if torchscript else "ONNX") + ")",
        "wrapped": {"file": src.name, "sha256": hashlib.sha256(src.read_bytes()).hexdigest()},
        "parity": {"note": "a model trained elsewhere: no torch weights to compare the graph with", "backends": {}},
        "versions": versions(),
        "metrics": calibration.get("metrics") if calibration else None,
        "calibration": calibration,
        "training_config": {},
        "default_onnx": ONNX_FILE,
        "gate": None,
    }
    model_id = write_bundle(out, members=members, meta=meta)
    Predictor.load(out, threads=1)  # what was written loads (a refusal names the file and the reason)
    return WrapResult(path=out, model_id=model_id, meta={**meta, "model_id": model_id})


def _check_batches(predictor: Predictor, name: str) -> None:
    """Refuse a graph that takes one image at a time: every surface scores images in batches."""
    s = predictor.spec
    try:
        predictor.logits(np.zeros((2, s.in_channels, s.input_size, s.input_size), np.uint8))
    except Exception as exc:  # the runtime's own error type for a fixed batch axis
        raise DefectlensError(
            f"{name}: refused: the graph does not take a batch of 2 images ({type(exc).__name__}: "
            f"{str(exc).strip()[:200]}); export it with a dynamic batch axis"
        ) from None


def torchscript_to_onnx(path: Path, spec: ModelSpec) -> bytes:
    """The TorchScript module at ``path`` exported to ONNX bytes (dynamic batch), through torch."""
    try:
        import torch
    except ImportError:
        raise DefectlensError(
            f"{path}: a TorchScript model is converted through torch: pip install 'defectlens[train]', "
            "or export it to ONNX yourself and pass --onnx"
        ) from None
    example = torch.zeros(1, spec.in_channels, spec.input_size, spec.input_size)
    # torch deprecates TorchScript and its exporter; it is the user's format here, not a choice
    with tempfile.TemporaryDirectory() as scratch, warnings.catch_warnings():
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message="no signature found", category=UserWarning)  # scripted: no signature
        try:
            module = torch.jit.load(str(path), map_location="cpu").eval()
        except Exception as exc:  # torch raises RuntimeError and others for a file it cannot read
            raise DefectlensError(f"{path}: not a TorchScript model torch can load ({exc})") from None
        graph = Path(scratch) / "model.onnx"
        torch.onnx.export(
            module, (example,), str(graph), input_names=["input"], output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False,
        )  # fmt: skip
        return graph.read_bytes()


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise DefectlensError(
            "wrapping a model edits its ONNX graph with the onnx package: pip install onnx "
            "(or 'defectlens[train]'); running the bundle needs neither"
        ) from None
    return onnx


def normalising_graph(data: bytes, spec: ModelSpec, *, name: str) -> bytes:
    """``data`` with ``(x - mean) / std`` in front of its input, so it takes images in [0, 1] as ours do."""
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper

    try:
        model = onnx.load_from_string(data)
    except Exception as exc:  # protobuf's DecodeError and others: not an ONNX file
        raise DefectlensError(f"{name}: not an ONNX model ({type(exc).__name__}: {exc})") from None
    graph = model.graph
    initialisers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initialisers]
    if len(inputs) != 1 or inputs[0].type.tensor_type.elem_type != TensorProto.FLOAT:
        raise DefectlensError(f"{name}: refused: a classifier here takes one float32 image batch (N, C, H, W)")
    original = inputs[0]
    batch = original.type.tensor_type.shape.dim[0] if original.type.tensor_type.shape.dim else None
    dims = [batch.dim_param or batch.dim_value if batch is not None else "batch"]
    dims += [spec.in_channels, spec.input_size, spec.input_size]
    shape = (1, spec.in_channels, 1, 1)
    graph.initializer.extend([
        numpy_helper.from_array(np.asarray(spec.mean, np.float32).reshape(shape), _MEAN),
        numpy_helper.from_array(np.asarray(spec.std, np.float32).reshape(shape), _STD),
    ])  # fmt: skip
    nodes = [
        helper.make_node("Sub", [_INPUT, _MEAN], [_CENTRED], name="defectlens_sub_mean"),
        helper.make_node("Div", [_CENTRED, _STD], [original.name], name="defectlens_div_std"),
    ]
    for i, node in enumerate(nodes):
        graph.node.insert(i, node)
    position = list(graph.input).index(original)
    graph.input.remove(original)
    graph.input.insert(position, helper.make_tensor_value_info(_INPUT, TensorProto.FLOAT, dims))
    return bytes(model.SerializeToString())


def with_spec(data: bytes, spec: ModelSpec) -> bytes:
    """``data`` with ``spec`` (and the bundle format) in its ``metadata_props``, as an exported graph has."""
    onnx = _onnx()
    model = onnx.load_from_string(data)
    keep = [(p.key, p.value) for p in model.metadata_props if p.key not in (META_FORMAT_KEY, META_SPEC_KEY)]
    del model.metadata_props[:]
    for key, value in [*keep, (META_FORMAT_KEY, FORMAT), (META_SPEC_KEY, spec.to_json())]:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return bytes(model.SerializeToString())


def empty_safetensors() -> bytes:
    """A safetensors file without tensors: the bundle's weights member of a model with no torch weights."""
    header = json.dumps({"__metadata__": {"defectlens": "no torch weights: a model trained elsewhere"}}).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header


def fit_on_folder(predictor: Predictor, spec: ModelSpec, folder: Path) -> tuple[ModelSpec, dict[str, Any]]:
    """Temperature (and threshold, binary with a positive class) fitted on ``folder``'s labelled images."""
    inputs = collect_inputs(folder, spec.class_names)
    files = [f for f in inputs.files if f in inputs.truth]
    if not files:
        raise DefectlensError(
            f"{folder}: no labelled images to calibrate on: give class subfolders named {', '.join(spec.class_names)}"
        )
    y = np.array([spec.class_names.index(inputs.truth[f]) for f in files])
    logits = predictor.score_files(files)
    temperature, method = choose_temperature(logits, y)
    positive = spec.positive_index
    summary = calibration_summary(
        logits, y, before=1.0, after=temperature, positive_index=positive, fitted_on=str(folder.name)
    )
    per_class = {c: int((y == k).sum()) for k, c in enumerate(spec.class_names)}
    summary.update(method=method, images=len(files), per_class=per_class)
    probs, threshold = softmax(logits, temperature), None
    if positive is not None and spec.num_classes == 2 and (y == positive).any():
        choice = choose_threshold((y == positive).astype(int), probs[:, positive])
        threshold = choice.threshold
        summary["threshold"] = {"value": threshold, "method": choice.method, "reason": choice.reason}
    accuracy = float((decide(probs, positive_index=positive, threshold=threshold) == y).mean())
    summary["metrics"] = {"split": summary["fitted_on"], "evaluated": True, "n": len(files), "accuracy": accuracy}
    return spec.replace(temperature=temperature, threshold=threshold), summary
