"""Export checks: torch vs ONNX Runtime parity, and the accuracy cost of INT8 quantisation.

Both run on real validation images of the training dataset when it can be found, because a
graph can agree on random noise and still disagree on the textures a line camera produces. Only
when no dataset is available do they fall back to synthetic inputs, and the report says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from defectlens.core.decision import softmax
from defectlens.core.errors import DefectlensError, ImageError
from defectlens.core.spec import ModelSpec
from defectlens.data.images import preprocess
from defectlens.data.manifest import Manifest
from defectlens.inference.backends import Runner, onnx_runner, torch_runner

if TYPE_CHECKING:
    from defectlens.models import Classifier

TOLERANCE = 1e-4


class ParityError(DefectlensError):
    """Torch and ONNX Runtime disagree beyond the tolerance; the bundle is not written."""


@dataclass(frozen=True)
class CheckInputs:
    """uint8 images (N, C, H, W) for export checks, their label indices (-1 unknown) and origin."""

    images: np.ndarray
    labels: np.ndarray
    source: str  # "validation", "test" or "synthetic"
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
    manifest = Manifest.read(data)
    for split in ("val", "test"):
        records = manifest.split(split)
        if records:
            break
    else:
        raise DefectlensError(f"{data}: the dataset has no val or test split to check the export on")
    # an evenly spaced subset keeps every class (records are usually grouped by class)
    step = max(1, len(records) // max_images)
    images, labels = [], []
    for r in records[::step][:max_images]:
        try:
            images.append(preprocess(manifest.resolve(r), spec))
        except ImageError:
            continue
        labels.append(spec.class_names.index(r.label) if r.label in spec.class_names else -1)
    if not images:
        raise DefectlensError(f"{data}: none of the {split} images could be read to check the export")
    return CheckInputs(np.stack(images), np.asarray(labels), split if split != "val" else "validation", str(data))


def _probs(run: Runner, images: np.ndarray, spec: ModelSpec, batch: int = 16) -> np.ndarray:
    x = images.astype(np.float32) / np.float32(255.0)
    logits = np.concatenate([np.asarray(run(x[i : i + batch]), dtype=np.float32) for i in range(0, len(x), batch)])
    return softmax(logits, spec.temperature)


def check_parity(
    model: Classifier, onnx_bytes: bytes, spec: ModelSpec, inputs: CheckInputs, *, tol: float = TOLERANCE
) -> dict:
    """Max |p_torch - p_onnx| over ``inputs``; raises :class:`ParityError` above ``tol``."""
    p_torch = _probs(torch_runner(model), inputs.images, spec)
    p_onnx = _probs(onnx_runner(onnx_bytes)[0], inputs.images, spec)
    diff = float(np.abs(p_torch - p_onnx).max())
    report = {
        "max_abs_prob_diff": diff,
        "tolerance": tol,
        "images": len(inputs.images),
        "inputs": inputs.source,
        "dataset": Path(inputs.dataset).name if inputs.dataset else None,
        "decisions_agree": float(np.mean(p_torch.argmax(1) == p_onnx.argmax(1))),
    }
    if inputs.source == "synthetic":
        report["warning"] = (
            "SYNTHETIC INPUTS: no dataset was found (pass --data); parity was not checked on real images"
        )
    if not diff <= tol:  # also catches NaN
        raise ParityError(
            f"refused to write the bundle: torch and ONNX Runtime probabilities differ by {diff:.3g} "
            f"(tolerance {tol:g}) on {len(inputs.images)} {inputs.source} images"
        )
    return report


def quantize_int8(onnx_bytes: bytes) -> bytes:
    """Dynamic INT8 quantisation of weights (onnxruntime.quantization.quantize_dynamic)."""
    import tempfile

    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(onnx_bytes)
        quantize_dynamic(src, dst, weight_type=QuantType.QInt8)
        return dst.read_bytes()


def compare_int8(
    fp32: bytes, int8: bytes, spec: ModelSpec, inputs: CheckInputs, *, max_drop: float = 0.01, min_agree: float = 0.98
) -> dict:
    """Agreement and accuracy change of the INT8 graph vs FP32; ``accepted`` says if it may ship."""
    p32 = _probs(onnx_runner(fp32)[0], inputs.images, spec)
    p8 = _probs(onnx_runner(int8)[0], inputs.images, spec)
    agree = float(np.mean(p32.argmax(1) == p8.argmax(1)))
    known = inputs.labels >= 0
    report: dict[str, Any] = {
        "inputs": inputs.source,
        "images": len(inputs.images),
        "agreement": agree,
        "max_abs_prob_diff": float(np.abs(p32 - p8).max()),
        "size_bytes": {"fp32": len(fp32), "int8": len(int8)},
    }
    accepted = agree >= min_agree
    if known.any():
        acc32 = float(np.mean(p32.argmax(1)[known] == inputs.labels[known]))
        acc8 = float(np.mean(p8.argmax(1)[known] == inputs.labels[known]))
        report.update(accuracy_fp32=acc32, accuracy_int8=acc8, accuracy_change=acc8 - acc32)
        accepted = accepted and acc32 - acc8 <= max_drop
    report["accepted"] = bool(accepted)
    report["rule"] = f"agreement >= {min_agree:g} and accuracy drop <= {max_drop:g} (when labels are known)"
    return report
