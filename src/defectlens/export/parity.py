"""Export checks: torch vs every installed ONNX runtime (parity), and what INT8 quantisation costs.

Both run on real images of the training dataset when it can be found, because a graph can agree on
random noise and still disagree on the textures a line camera produces: parity and the INT8 accuracy
on validation images, INT8 calibration on training images (never the images it is judged on). Only
when no dataset is available does parity fall back to synthetic inputs, and the report says so.

Decisions are compared as they are made in production: :func:`defectlens.core.decision.decide` at the
model's stored threshold (a binary model calls "defect" when its probability reaches the threshold,
not when it is the larger of two).

The INT8 rule (:func:`compare_int8`): static quantisation (QDQ, per-channel int8 weights, uint8
activations, MinMax ranges from training images). The INT8 graph becomes the bundle's default only
when it loses nothing on the validation split: every validation image the FP32 graph decides
correctly, the INT8 graph decides correctly too, on every runtime checked. Otherwise it ships as an
opt-in (``Predictor.load(..., precision="int8")``) with its measured cost in ``spec.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from defectlens.core.decision import decide, softmax
from defectlens.core.errors import DefectlensError, ImageError
from defectlens.core.spec import ModelSpec
from defectlens.data.images import preprocess
from defectlens.data.manifest import Manifest, Record
from defectlens.inference.backends import Runner, installed_runtimes, runtime_runner, torch_runner

if TYPE_CHECKING:
    from defectlens.models import Classifier

TOLERANCE = 1e-4
#: Training images the INT8 activation ranges are calibrated on.
CALIBRATION_IMAGES = 128
INT8_RULE = (
    "INT8 is the default graph only if every validation image FP32 decides correctly (stored threshold) "
    "is decided correctly by INT8 too, on every runtime checked; otherwise it is opt-in (--precision int8)"
)


class ParityError(DefectlensError):
    """Torch and ONNX Runtime disagree beyond the tolerance; the bundle is not written."""


@dataclass(frozen=True)
class CheckInputs:
    """uint8 images (N, C, H, W) for export checks, their label indices (-1 unknown) and origin."""

    images: np.ndarray
    labels: np.ndarray
    source: str  # "validation", "test", "train" or "synthetic"
    dataset: str | None = None


def check_inputs(spec: ModelSpec, data: str | Path | None, *, max_images: int = 64, seed: int = 0) -> CheckInputs:
    """Validation images of ``data`` (a Manifest folder) preprocessed with ``spec``; synthetic if None.

    Raises:
        DefectlensError: if ``data`` is given but holds no readable validation/test image.
    """
    if data is None:
        rng = np.random.default_rng(seed)
        shape = (16, spec.in_channels, spec.input_size, spec.input_size)
        return CheckInputs(rng.integers(0, 256, shape, dtype=np.uint8), np.full(16, -1), "synthetic")
    return _split_inputs(spec, data, ("val", "test"), max_images)


def calibration_inputs(spec: ModelSpec, data: str | Path, *, max_images: int = CALIBRATION_IMAGES) -> CheckInputs:
    """Training images of ``data`` to calibrate INT8 activation ranges on (evenly spaced over the split).

    Raises:
        DefectlensError: if the dataset has no readable training image.
    """
    return _split_inputs(spec, data, ("train",), max_images)


def _split_inputs(spec: ModelSpec, data: str | Path, splits: Sequence[str], max_images: int) -> CheckInputs:
    manifest = Manifest.read(data)
    for split in splits:
        records = manifest.split(split)
        if records:
            break
    else:
        raise DefectlensError(f"{data}: the dataset has no {' or '.join(splits)} split to check the export on")
    images, labels = _read(manifest, records, spec, max_images)
    if not images:
        raise DefectlensError(f"{data}: none of the {split} images could be read to check the export")
    source = {"val": "validation"}.get(split, split)
    return CheckInputs(np.stack(images), np.asarray(labels), source, str(data))


def _read(manifest: Manifest, records: list[Record], spec: ModelSpec, limit: int) -> tuple[list, list]:
    # an evenly spaced subset keeps every class (records are usually grouped by class)
    step = max(1, len(records) // max(1, limit))
    images, labels = [], []
    for r in records[::step][:limit]:
        try:
            images.append(preprocess(manifest.resolve(r), spec))
        except ImageError:
            continue
        labels.append(spec.class_names.index(r.label) if r.label in spec.class_names else -1)
    return images, labels


def _probs(run: Runner, images: np.ndarray, spec: ModelSpec, batch: int = 16) -> np.ndarray:
    x = images.astype(np.float32) / np.float32(255.0)
    logits = np.concatenate([np.asarray(run(x[i : i + batch]), dtype=np.float32) for i in range(0, len(x), batch)])
    return softmax(logits, spec.temperature)


def _decisions(probs: np.ndarray, spec: ModelSpec) -> np.ndarray:
    return decide(probs, positive_index=spec.positive_index, threshold=spec.threshold)


def _runtime_probs(runtime: str, onnx_bytes: bytes, inputs: CheckInputs, spec: ModelSpec) -> np.ndarray | str:
    """Probabilities of ``onnx_bytes`` on ``runtime``, or why it could not run it."""
    try:
        return _probs(runtime_runner(runtime, onnx_bytes, threads=1), inputs.images, spec)
    except DefectlensError as exc:
        return str(exc)


def check_parity(
    model: Classifier,
    onnx_bytes: bytes,
    spec: ModelSpec,
    inputs: CheckInputs,
    *,
    tol: float = TOLERANCE,
    runtimes: Sequence[str] | None = None,
) -> dict:
    """Max |p_torch - p_runtime| over ``inputs`` for ONNX Runtime and every other installed runtime.

    The top-level figures are ONNX Runtime's (every bundle runs on it); ``backends`` holds each runtime's,
    with ``ok`` False for one beyond ``tol`` (a Predictor then refuses that backend for this bundle).

    Raises:
        ParityError: when ONNX Runtime's probabilities differ from torch's by more than ``tol``.
    """
    p_torch = _probs(torch_runner(model), inputs.images, spec)
    d_torch = _decisions(p_torch, spec)
    checked: dict[str, dict[str, Any]] = {}
    for runtime in runtimes or installed_runtimes():
        probs = _runtime_probs(runtime, onnx_bytes, inputs, spec)
        if isinstance(probs, str):
            checked[runtime] = {"ok": False, "reason": probs}
            continue
        diff = float(np.abs(p_torch - probs).max())
        checked[runtime] = {
            "ok": bool(diff <= tol),  # also False for NaN
            "max_abs_prob_diff": diff,
            "decisions_agree": float(np.mean(_decisions(probs, spec) == d_torch)),
        }
        if not checked[runtime]["ok"]:
            checked[runtime]["reason"] = f"probabilities differ from torch by {diff:.3g} (tolerance {tol:g})"
    ref = checked.get("onnx", {})
    report = {
        "max_abs_prob_diff": ref.get("max_abs_prob_diff", float("nan")),
        "tolerance": tol,
        "images": len(inputs.images),
        "inputs": inputs.source,
        "dataset": Path(inputs.dataset).name if inputs.dataset else None,
        "decisions_agree": ref.get("decisions_agree", 0.0),
        "backends": checked,
    }
    if inputs.source == "synthetic":
        report["warning"] = (
            "SYNTHETIC INPUTS: no dataset was found (pass --data); parity was not checked on real images"
        )
    if not ref.get("ok"):
        raise ParityError(
            f"refused to write the bundle: torch and ONNX Runtime probabilities differ by "
            f"{ref.get('reason') or ref.get('max_abs_prob_diff')} on {len(inputs.images)} {inputs.source} images"
        )
    return report


def quantize_int8(onnx_bytes: bytes, calibration: CheckInputs) -> bytes:
    """Static INT8 quantisation (QDQ, per-channel int8 weights, uint8 activations, MinMax ranges).

    Args:
        onnx_bytes: the FP32 graph (input in [0, 1], as exported).
        calibration: images whose activation ranges set the quantisation scales (training images).
    """
    import tempfile

    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    x = calibration.images.astype(np.float32) / np.float32(255.0)

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"input": x[i : i + 8]} for i in range(0, len(x), 8)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    with tempfile.TemporaryDirectory() as tmp:
        src, pre, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(onnx_bytes)
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)  # shapes + folding, as the tool advises
        quantize_static(
            str(pre),
            str(dst),
            Batches(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        return dst.read_bytes()


def compare_int8(
    fp32: bytes,
    int8: bytes,
    spec: ModelSpec,
    inputs: CheckInputs,
    *,
    calibration: CheckInputs | None = None,
    runtimes: Sequence[str] | None = None,
) -> dict:
    """Decisions of the INT8 graph vs FP32 at the stored threshold on ``inputs`` (validation images), per runtime.

    ``accepted`` says whether INT8 may become the bundle's default graph (:data:`INT8_RULE`).
    """
    p32 = _probs(runtime_runner("onnx", fp32, threads=1), inputs.images, spec)
    d32 = _decisions(p32, spec)
    known = inputs.labels >= 0
    right32 = (d32 == inputs.labels) & known
    checked: dict[str, dict[str, Any]] = {}
    for runtime in runtimes or installed_runtimes():
        p8 = _runtime_probs(runtime, int8, inputs, spec)
        if isinstance(p8, str):
            checked[runtime] = {"ok": False, "reason": p8}
            continue
        d8 = _decisions(p8, spec)
        right8 = (d8 == inputs.labels) & known
        checked[runtime] = {
            "ok": True,
            "agreement": float(np.mean(d8 == d32)),
            "max_abs_prob_diff": float(np.abs(p32 - p8).max()),
            "accuracy_int8": float(right8[known].mean()) if known.any() else None,
            "newly_wrong": int(np.sum(right32 & ~right8)),
            "newly_right": int(np.sum(right8 & ~right32)),
        }
    ran = {r: c for r, c in checked.items() if c["ok"]}
    lossless = bool(known.any() and ran and all(c["newly_wrong"] == 0 for c in ran.values()))
    ref = checked.get("onnx") or next(iter(ran.values()), {})
    report: dict[str, Any] = {
        "inputs": inputs.source,
        "images": len(inputs.images),
        "labelled": int(known.sum()),
        "threshold": spec.threshold,
        "agreement": ref.get("agreement"),
        "max_abs_prob_diff": ref.get("max_abs_prob_diff"),
        "accuracy_fp32": float(right32[known].mean()) if known.any() else None,
        "accuracy_int8": ref.get("accuracy_int8"),
        "newly_wrong": ref.get("newly_wrong"),
        "backends": checked,
        "size_bytes": {"fp32": len(fp32), "int8": len(int8)},
        "accepted": lossless and inputs.source == "validation",
        "rule": INT8_RULE,
    }
    if calibration is not None:
        report["calibration"] = {"split": calibration.source, "images": len(calibration.images), "method": "MinMax"}
    return report
