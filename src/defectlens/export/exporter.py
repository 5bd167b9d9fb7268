"""``export_bundle``: checkpoint or run folder -> a verified ``.dlens`` bundle.

Steps: load the checkpoint, fit the gate's reference profile on the training data
(:mod:`defectlens.export.profile`; its out-of-distribution score becomes a second graph output),
export ONNX (spec in its metadata), check torch vs ONNX Runtime (and
every other installed runtime) parity on validation images (refusing the bundle when ONNX Runtime is
above the tolerance), optionally quantise to INT8 (calibrated on training images) and measure what
that costs on the validation split, then write the zip with ``spec.json``. Nothing is written unless
every check passed.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from defectlens.core.anomaly import is_anomaly
from defectlens.core.bundle import INT8_FILE, ONNX_FILE, SUFFIX, WEIGHTS_FILE, shipped_meta, write_bundle
from defectlens.core.errors import DefectlensError
from defectlens.core.machine import versions
from defectlens.core.profile import FALSE_FLAG_RATE, check_false_flag_rate
from defectlens.core.spec import ModelSpec
from defectlens.export.parity import (
    TOLERANCE,
    CheckInputs,
    ParityError,
    calibration_inputs,
    check_inputs,
    check_parity,
    compare_int8,
    quantize_int8,
)

if TYPE_CHECKING:
    from defectlens.export.profile import GateFit
    from defectlens.models import Classifier

#: Most validation images the INT8 graph is judged on (the whole split of the datasets at hand).
INT8_VALIDATION_IMAGES = 2000


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
    gate: float | None = FALSE_FLAG_RATE,
) -> ExportResult:
    """Export a run folder or checkpoint to a verified bundle.

    Args:
        source: run folder (with ``best.pt``) or checkpoint file.
        out: bundle path (``.dlens`` is appended when it has no suffix).
        data: dataset folder for the parity check; default: the one the run trained on.
        int8: also quantise to INT8 (static, calibrated on training images): shipped as an opt-in graph,
            and as the default one only if it loses nothing on validation (see :mod:`defectlens.export.parity`).
        tolerance: largest allowed |p_torch - p_onnx|.
        max_images: validation images used by the checks.
        gate: the gate's false-flag rate on validation (:mod:`~defectlens.export.profile`), or None for no gate.

    Raises:
        DefectlensError: bad checkpoint or dataset, or ``int8`` without a dataset to calibrate on;
            ParityError when the ONNX graph disagrees.
    """
    from safetensors.torch import save

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
    if int8:
        _check_int8(spec, data, data_note)
    inputs = check_inputs(spec, data, max_images=max_images)
    if inputs.source == "synthetic":
        warnings.warn(
            f"export parity checked on SYNTHETIC inputs only ({data_note or 'no dataset given'}); pass --data DIR",
            stacklevel=2,
        )
    fit_on = _gate_source(data, None if gate is None else check_false_flag_rate(gate), payload)
    onnx_bytes, exporter, parity, fit = _checked_graph(model, spec, inputs, fit_on, tolerance)
    refused = {r: c.get("reason") for r, c in parity["backends"].items() if not c.get("ok")}
    if refused:
        warnings.warn(f"these backends disagree with torch and will refuse this bundle: {refused}", stacklevel=2)
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
    meta["cam"] = _cam_meta(model, parity)
    if int8:
        _add_int8(members, meta, spec, data, cam=(model, inputs) if meta["cam"] else None)
    meta["gate"] = _gate_profile(fit, members, gate) if fit is not None and gate is not None else None
    model_id = write_bundle(out, members=members, meta=meta)
    # what spec.json holds: absolute paths of the provenance cut to names (the bundle leaves this machine)
    return ExportResult(path=out, model_id=model_id, meta={**shipped_meta(meta), "model_id": model_id})


def _check_int8(spec: ModelSpec, data: str | Path | None, data_note: str | None) -> None:
    """Refuse ``--int8`` for an anomaly model, or without a dataset to calibrate on."""
    if is_anomaly(spec):
        raise DefectlensError(
            "--int8 is not offered for anomaly bundles in this release: export without it (the FP32 graph)"
        )
    if data is None:
        raise DefectlensError(
            f"--int8 needs the training dataset to calibrate on and to judge INT8 on ({data_note or 'none given'}); "
            "pass --data DIR"
        )


def _gate_source(
    data: str | Path | None, rate: float | None, payload: dict[str, Any]
) -> tuple[str | Path, bool] | None:
    """What the gate is fitted on: the dataset, and whether the run trained on the line's drift
    (``augment: line``), which the gate must then accept too; None for no gate."""
    if data is None or rate is None:
        return None
    return data, (payload.get("config") or {}).get("augment") == "line"


def _checked_graph(
    model: Classifier, spec: ModelSpec, inputs: CheckInputs, source: tuple[str | Path, bool] | None, tolerance: float
) -> tuple[bytes, str, dict[str, Any], GateFit | None]:
    """The ONNX graph (gated when ``source`` is given: the gate is fitted on it), its exporter, its parity
    report against torch, and the gate's fit.

    Raises:
        ParityError: when ONNX Runtime's probabilities or OOD scores disagree with torch's.
    """
    from defectlens.export.cam import anomaly_map_parity, cam_entry, cam_parity
    from defectlens.export.onnx_export import to_onnx
    from defectlens.export.profile import fit_gate, ood_parity  # torch: only when exporting

    anomaly = is_anomaly(spec)
    fit = fit_gate(model, spec, source[0], drift=source[1], ood=not anomaly) if source is not None else None
    with_cam = cam_entry(model) is not None
    onnx_bytes, exporter = to_onnx(model, spec, density=fit.density if fit else None, cam=with_cam)
    parity = check_parity(model, onnx_bytes, spec, inputs, tol=tolerance)
    if with_cam:
        check = anomaly_map_parity if anomaly else cam_parity
        parity["cam"] = check(model, onnx_bytes, spec, inputs.images)
    if fit is not None and fit.density is not None:
        parity["ood"] = ood_parity(model, fit.density, onnx_bytes, inputs.images)
        if not parity["ood"]["ok"]:
            raise ParityError(
                f"refused to write the bundle: the graph's OOD score differs from torch's: {parity['ood']}"
            )
    return onnx_bytes, exporter, parity, fit


def _cam_meta(model: Classifier, parity: dict[str, Any]) -> dict[str, Any] | None:
    """``spec.json``'s ``cam`` entry when the graph's CAM equals torch Grad-CAM (else None: surfaces explain
    through torch, and ``parity["cam"]`` says why)."""
    from defectlens.export.cam import cam_entry

    check = parity.get("cam")
    if check is None:
        return None
    if not check["ok"]:
        warnings.warn(f"the graph's CAM differs from torch Grad-CAM; explanations need torch: {check}", stacklevel=3)
        return None
    return cam_entry(model)


def _gate_profile(fit: GateFit, members: dict[str, bytes], rate: float) -> dict[str, Any]:
    """The profile for ``spec.json``: each graph's OOD threshold set on its own validation scores."""
    from defectlens.export.profile import build_profile, graph_scores, ood_threshold

    if fit.density is None:  # too few images for the OOD score: image-quality rules only
        return build_profile(fit, {}, None, rate).to_dict()
    graphs = [name for name in (ONNX_FILE, INT8_FILE) if name in members]
    scores = {name: graph_scores(members[name], fit.validation.images) for name in graphs}
    thresholds = {name: ood_threshold(s, rate) for name, s in scores.items()}
    return build_profile(fit, thresholds, scores[ONNX_FILE], rate).to_dict()


def _add_int8(
    members: dict[str, bytes],
    meta: dict[str, Any],
    spec: ModelSpec,
    data: str | Path | None,
    *,
    cam: tuple[Classifier, CheckInputs] | None,
) -> None:
    """The INT8 graph into ``members`` and its report into ``meta``; the default graph when it lost nothing."""
    assert data is not None  # export_bundle refuses --int8 without a dataset
    members[INT8_FILE], meta["int8"] = _int8(members[ONNX_FILE], spec, data, cam=cam)
    if meta["int8"]["accepted"]:
        meta["default_onnx"] = INT8_FILE


def _int8(
    onnx_bytes: bytes, spec: ModelSpec, data: str | Path, *, cam: tuple[Classifier, CheckInputs] | None = None
) -> tuple[bytes, dict[str, Any]]:
    """The INT8 graph (calibrated on training images) and its comparison with FP32 on the validation split;
    with ``cam`` (the model and the check images) also its own CAM against torch Grad-CAM, judged by
    :data:`~defectlens.export.cam.INT8_CAM_TOLERANCE` (its features are quantised)."""
    calibration = calibration_inputs(spec, data)
    graph = quantize_int8(onnx_bytes, calibration)
    validation = check_inputs(spec, data, max_images=INT8_VALIDATION_IMAGES)
    report = compare_int8(onnx_bytes, graph, spec, validation, calibration=calibration)
    if cam is not None:
        from defectlens.export.cam import INT8_CAM_TOLERANCE, cam_parity

        report["cam"] = cam_parity(cam[0], graph, spec, cam[1].images, tolerance=INT8_CAM_TOLERANCE)
    return graph, report
