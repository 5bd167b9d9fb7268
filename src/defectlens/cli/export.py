"""``defectlens export``: a run folder or checkpoint -> a verified ``.dlens`` bundle."""

from __future__ import annotations

import argparse
from pathlib import Path

from defectlens.core.profile import FALSE_FLAG_RANGE, FALSE_FLAG_RATE
from defectlens.export.parity import TOLERANCE


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("export", help="export a trained model to a deployable bundle", description=__doc__)
    p.add_argument("source", metavar="RUN_OR_CKPT", help="run folder (with best.pt) or checkpoint file")
    p.add_argument("--out", type=Path, default=None, help="bundle file to write (default: RUN/model.dlens)")
    p.add_argument("--force", action="store_true", help="replace the bundle if --out exists")
    p.add_argument("--data", type=Path, default=None, help="dataset folder for the parity check (default: the run's)")
    p.add_argument(
        "--int8",
        action="store_true",
        help="add an INT8 graph (static, calibrated on training images); it becomes the default graph only if it "
        "loses nothing on validation, else it is opt-in (--precision int8)",
    )
    p.add_argument("--tolerance", type=float, default=TOLERANCE, help="max |p_torch - p_onnx| allowed")
    gate = p.add_mutually_exclusive_group()
    gate.add_argument(
        "--gate-rate",
        dest="gate",
        type=float,
        default=FALSE_FLAG_RATE,
        metavar="R",
        help="the gate's out-of-distribution threshold flags this share of healthy validation images "
        f"(default {FALSE_FLAG_RATE:g}; {FALSE_FLAG_RANGE[0]:g}-{FALSE_FLAG_RANGE[1]:g})",
    )
    gate.add_argument(
        "--no-gate",
        dest="gate",
        action="store_const",
        const=None,
        help="do not fit the gate (reference profile and out-of-distribution score; fitted by default when the "
        "dataset is present): frames this bundle cannot judge are then not flagged",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from defectlens.cli.output import stdout
    from defectlens.core.errors import DefectlensError
    from defectlens.core.outputs import check_output
    from defectlens.export.exporter import default_bundle_path, export_bundle

    out = args.out or default_bundle_path(args.source)
    check_output(out, force=args.force, what="--out")
    if out.exists() and not args.force:
        raise DefectlensError(f"{out} exists; pass --force to replace it, or --out another file")
    result = export_bundle(args.source, out, data=args.data, int8=args.int8, tolerance=args.tolerance, gate=args.gate)
    parity = result.meta["parity"]
    console = stdout()
    console.print(f"wrote {result.path} (model_id {result.model_id[:16]})")
    console.print(
        f"parity: max |p_torch - p_onnx| = {parity['max_abs_prob_diff']:.2e} on {parity['images']} "
        f"{parity['inputs']} images (tolerance {parity['tolerance']:g})"
    )
    checks = parity.get("backends", {})
    console.print("parity on every installed backend: " + ", ".join(_check(r, c) for r, c in checks.items()))
    if "warning" in parity:
        console.print(f"WARNING: {parity['warning']}")
    if "int8" in result.meta:
        console.print(_int8_line(result.meta["int8"]))
    console.print(_gate_line(result.meta.get("gate"), parity.get("ood")))
    console.print(_cam_line(parity.get("cam"), (result.meta.get("int8") or {}).get("cam")))
    return 0


def _cam_line(check: dict | None, int8: dict | None) -> str:
    """How the bundle's decisions are explained, and the CAM's parity with torch Grad-CAM."""
    if check is None:
        return "explanations: Grad-CAM through torch (this head is not global pooling + linear: no CAM output)"
    figures = f"max |CAM - Grad-CAM| = {check['max_abs_diff']:.1e}, correlation >= {check['min_correlation']:.6f}"
    where = f"on {check['images']} images"
    if not check["ok"]:
        return f"explanations: Grad-CAM through torch (the graph's CAM differs: {figures} {where})"
    line = f"explanations: CAM from the graph, no torch needed; parity {figures} {where}"
    if int8 is not None:
        state = "" if int8["ok"] else " (below the rule: the INT8 graph explains through torch)"
        line += f"; INT8 correlation >= {int8['min_correlation']:.4f}{state}"
    return line


def _gate_line(gate: dict | None, parity: dict | None) -> str:
    """The gate the bundle carries: its reference images, OOD thresholds and score parity, or why it has none."""
    if gate is None:
        return "gate: none (no dataset to fit it on, or --no-gate): frames will not be checked before judging"
    ood = gate["ood"]
    head = f"gate: profile of {gate['images']} training and validation images"
    if ood is None:
        return f"{head}; image-quality rules only (too few images for the out-of-distribution score)"
    thresholds = ", ".join(f"{name} {t:.3g}" for name, t in ood["thresholds"].items())
    rule = "" if ood.get("rule", "conformal") == "conformal" else ", Gaussian tail: too few validation images"
    return (
        f"{head}; out-of-distribution threshold {thresholds} (at most {100 * ood['false_flag_rate']:g} % of "
        f"validation images flagged{rule}); score parity "
        f"{(parity or {}).get('max_rel_diff', float('nan')):.1e} relative to torch"
    )


def _check(runtime: str, check: dict) -> str:
    if check.get("ok"):
        return f"{runtime} {check['max_abs_prob_diff']:.2e} ok"
    return f"{runtime} REFUSED ({check.get('reason', 'see spec.json')})"


def _int8_line(q: dict) -> str:
    """INT8 against FP32 on validation, decided at the stored threshold, and whether it became the default."""
    state = "INT8 is the default graph" if q["accepted"] else "INT8 kept opt-in (--precision int8)"
    rule = "argmax" if q.get("threshold") is None else f"threshold {q['threshold']:.4g}"
    if q.get("accuracy_fp32") is None:
        return f"int8: no labelled validation images to judge it on; {state}"
    return (
        f"int8: validation accuracy {q['accuracy_fp32']:.4f} FP32 -> {q['accuracy_int8']:.4f} INT8 ({rule}), "
        f"{q['newly_wrong']} of {q['images']} images newly wrong, size "
        f"{q['size_bytes']['fp32'] / 1e6:.1f} -> {q['size_bytes']['int8'] / 1e6:.1f} MB: {state}"
    )
