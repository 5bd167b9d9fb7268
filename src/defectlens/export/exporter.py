"""``export_bundle``: checkpoint or run folder -> a verified ``.dlens`` bundle.

Steps: load the checkpoint, export ONNX (spec in its metadata), check torch vs ONNX Runtime
parity on validation images (refusing the bundle above the tolerance), optionally quantise to
INT8 and measure what that costs, then write the zip with ``spec.json``. Nothing is written unless
every check passed.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from defectlens.core.bundle import INT8_FILE, ONNX_FILE, SUFFIX, WEIGHTS_FILE, without_paths, write_bundle
from defectlens.core.machine import versions
from defectlens.export.parity import TOLERANCE, check_inputs, check_parity, compare_int8, quantize_int8

if TYPE_CHECKING:
    pass


@dataclass(frozen=True)
class ExportResult:
    """Where the bundle went, its id and its ``spec.json``."""

    path: Path
    model_id: str
    meta: dict[str, Any]


def _dataset_from_config(payload: dict[str, Any]) -> str | None:
    data = (payload.get("config") or {}).get("data")
    if isinstance(data, dict):  # a nested data config: take its folder
        data = data.get("dataset") or data.get("path") or data.get("folder")
    return str(data) if data else None


def validation_metrics(payload: dict[str, Any]) -> dict[str, Any] | None:
    """The evaluated validation figures a checkpoint carries (after the training workflow's evaluation),
    else the last training-loop row for an unevaluated checkpoint."""
    evaluated = (payload.get("evaluation") or {}).get("val")
    if evaluated:
        keep = ("n", "accuracy", "balanced_accuracy", "macro_f1", "defect_recall", "false_alarm_rate", "roc_auc", "ece")
        return {"split": "val", "evaluated": True, **{k: evaluated.get(k) for k in keep if k in evaluated}}
    return {"split": "val", "evaluated": False, **payload["metrics"]} if payload.get("metrics") else None


def default_bundle_path(source: str | Path) -> Path:
    """Where ``defectlens export`` writes without ``--out``: ``RUN/model.dlens``, or ``<checkpoint>.dlens``."""
    source = Path(source)
    return source / "model.dlens" if source.is_dir() else source.with_suffix(SUFFIX)


def export_bundle(
    source: str | Path,
    out: str | Path,
    *,
    data: str | Path | None = None,
    int8: bool = False,
    tolerance: float = TOLERANCE,
    max_images: int = 64,
) -> ExportResult:
    """Export a run folder or checkpoint to a verified bundle.

    Args:
        source: run folder (with ``best.pt``) or checkpoint file.
        out: bundle path (``.dlens`` is appended when it has no suffix).
        data: dataset folder for the parity check; default: the one the run trained on.
        int8: also quantise to INT8; shipped as the default graph only if it keeps accuracy.
        tolerance: largest allowed |p_torch - p_onnx|.
        max_images: validation images used by the checks.

    Raises:
        DefectlensError: bad checkpoint or dataset; ParityError when the ONNX graph disagrees.
    """
    from safetensors.torch import save

    from defectlens.export.onnx_export import to_onnx
    from defectlens.models import load_checkpoint

    out = Path(out)
    if not out.suffix:
        out = out.with_suffix(SUFFIX)
    model, spec, payload = load_checkpoint(source)
    data_note = None
    if data is None:
        data = _dataset_from_config(payload)
        if data is not None and not Path(data).is_dir():
            data_note = f"training dataset {data} recorded in the checkpoint is not present here"
            data = None
    inputs = check_inputs(spec, data, max_images=max_images)
    if inputs.source == "synthetic":
        warnings.warn(
            f"export parity checked on SYNTHETIC inputs only ({data_note or 'no dataset given'}); pass --data DIR",
            stacklevel=2,
        )
    onnx_bytes, exporter = to_onnx(model, spec)
    parity = check_parity(model, onnx_bytes, spec, inputs, tol=tolerance)
    if data_note:
        parity["note"] = data_note
    members = {ONNX_FILE: onnx_bytes, WEIGHTS_FILE: save({k: v.contiguous() for k, v in model.state_dict().items()})}
    meta: dict[str, Any] = {
        "spec": spec.to_dict(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": Path(source).name,  # a name, not the training machine's folder layout
        "exporter": exporter,
        "parity": parity,
        "versions": versions(),
        "metrics": validation_metrics(payload),
        "data_fingerprint": payload.get("data_fingerprint") or payload.get("config", {}).get("train_fingerprint"),
        "training_config": payload.get("config") or {},
        "default_onnx": ONNX_FILE,
    }
    if int8:
        q = quantize_int8(onnx_bytes)
        meta["int8"] = compare_int8(onnx_bytes, q, spec, inputs)
        if meta["int8"]["accepted"]:
            members[INT8_FILE] = q
            meta["default_onnx"] = INT8_FILE
        else:
            warnings.warn(f"INT8 rejected, bundle keeps FP32 only: {meta['int8']}", stacklevel=2)
    model_id = write_bundle(out, members=members, meta=meta)
    # what spec.json holds: absolute paths cut to names (the bundle leaves this machine)
    return ExportResult(path=out, model_id=model_id, meta={**without_paths(meta), "model_id": model_id})
