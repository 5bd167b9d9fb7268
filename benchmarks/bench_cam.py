"""Explanations without torch: the CAM's parity with torch Grad-CAM, and what the feature output costs.

Exports a trained checkpoint to a bundle (FP32 and INT8, with its dataset) and reads the export's own CAM
check (``spec.json``: ``parity.cam``, ``int8.cam``); then times, on one core and one image of the
validation split, the plain graph's call (logits only) against the graph with the ``cam_features``
output when a prediction fetches only the logits (the cost plain predictions pay) and when it fetches
the map too (an explanation), and one whole explanation through each path (``Predictor.explain`` in
NumPy vs pytorch-grad-cam). Writes benchmarks/results/cam.json.

    .venv/bin/python benchmarks/bench_cam.py CHECKPOINT --data DATASET [--repeats N]

The README's figures: the casting run of ``benchmarks/run_real.py``
(``benchmarks/results/work/casting/runs/*/best.pt``, EfficientNet-Lite0, 1 channel, 192 px).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from machine import describe

ROOT = Path(__file__).resolve().parents[1]


def _timed(call, repeats: int) -> dict[str, float]:
    for _ in range(10):  # warm-up: allocations, the runtime's first-call work
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000.0)
    return {"p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95))}


def _graph_costs(model, spec, image: np.ndarray, repeats: int) -> dict[str, dict[str, float]]:
    """One image on one core: the plain graph, the CAM graph fetching the logits, and fetching both."""
    from defectlens.export.onnx_export import to_onnx
    from defectlens.inference.backends import onnx_runner
    from defectlens.inference.cam import feature_runner

    plain, _ = to_onnx(model, spec)
    with_cam, _ = to_onnx(model, spec, cam=True)
    run_plain, _ = onnx_runner(plain, threads=1)
    run_cam, session = onnx_runner(with_cam, threads=1)
    run_both = feature_runner(session)
    assert run_both is not None
    x = image[None].astype(np.float32) / np.float32(255.0)
    rounds: dict[str, list[dict[str, float]]] = {"plain graph": [], "CAM graph, logits only": [], "CAM graph, both": []}
    for _ in range(3):  # interleaved, so a load change on the machine hits every variant alike
        rounds["plain graph"].append(_timed(lambda: run_plain(x), repeats))
        rounds["CAM graph, logits only"].append(_timed(lambda: run_cam(x), repeats))
        rounds["CAM graph, both"].append(_timed(lambda: run_both(x), repeats))
    return {k: {m: float(np.median([r[m] for r in v])) for m in ("p50_ms", "p95_ms")} for k, v in rounds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "cam.json")
    args = parser.parse_args()

    import torch

    from defectlens.explain.gradcam import gradcam_map
    from defectlens.export import export_bundle
    from defectlens.export.parity import check_inputs
    from defectlens.inference.predictor import Predictor
    from defectlens.models import load_checkpoint

    torch.set_num_threads(1)
    machine = describe()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = export_bundle(args.checkpoint, Path(tmp) / "model.dlens", data=args.data, int8=True)
        model, spec, _ = load_checkpoint(args.checkpoint)
        inputs = check_inputs(spec, args.data, max_images=8)
        costs = _graph_costs(model, spec, inputs.images[0], args.repeats)
        predictor = Predictor.load(result.path, precision="fp32", threads=1)
        from PIL import Image

        image = Image.fromarray(inputs.images[0][0])
        explain = {
            predictor.cam_method or "none": _timed(lambda: predictor.explain(image), max(20, args.repeats // 10)),
            "Grad-CAM (torch)": _timed(lambda: gradcam_map(predictor, image), max(20, args.repeats // 10)),
        }
    report = {
        "checkpoint": args.checkpoint.name,
        "arch": spec.arch,
        "input_size": spec.input_size,
        "in_channels": spec.in_channels,
        "tta": spec.tta,
        "cam_parity": result.meta["parity"].get("cam"),
        "int8_cam_parity": (result.meta.get("int8") or {}).get("cam"),
        "one_image_one_core": costs,
        "explain_one_image": explain,
        "machine": machine,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("cam_parity", "one_image_one_core", "explain_one_image")}, indent=2))
    print("cpu:", machine.get("cpu"))


if __name__ == "__main__":
    main()
