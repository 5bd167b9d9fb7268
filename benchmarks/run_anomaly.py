"""Anomaly mode on real data (issue #29): fit on good parts only, then image and pixel figures of the bundle.

Each dataset runs ``defectlens train --task anomaly`` (the library call behind it), exports the bundle,
and scores the test split through the bundle's ``Predictor`` (the one inference path): image AUROC,
AUPR, F1 / recall / false-alarm rate at the validated threshold, recall at 1 % false alarms; with masks
(MVTec AD) pixel AUROC and PRO at the input size (masks resized nearest, as anomalib does); the fit's
time and the process's peak memory; the bundle's latency per image (median and p99 of single-image
``predict`` calls, after a warm-up) at the recipe's input size. Results go to
``benchmarks/results/anomaly-<dataset>.json``.

    python benchmarks/run_anomaly.py --dataset bottle --source /path/to/mvtec/bottle
    python benchmarks/run_anomaly.py --dataset casting   # ../shared/datasets/casting, good parts only

Datasets (never committed): MVTec AD "bottle" (CC BY-NC-SA 4.0), the official split with masks, from
github.com/doanthai161/Bottle-Anomaly-Detection at ff4e8f31ed4d, folder ``data/bottle/bottle``; the Kaggle
casting set in ``../shared/datasets/casting``, fitted on ``train/ok_front`` only (its validation split is
carved from those good images, so no defect image is seen before the test) and tested on the official
test split.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from machine import describe  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
SHARED = ROOT.parent / "shared" / "datasets"


def good_only_casting(source: Path, work: Path) -> Path:
    """A casting source without its training defects: ``train/ok_front`` and the official ``test/`` (links)."""
    folder = work / "casting-good-only"
    if not folder.is_dir():
        (folder / "train").mkdir(parents=True)
        (folder / "train" / "ok_front").symlink_to(source / "train" / "ok_front")
        (folder / "test").symlink_to(source / "test")
    return folder


def pixel_arrays(predictor: Any, manifest: Any, records: list[Any], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Masks and raw anomaly maps (N, S, S) of the test images; images without a mask count as all good."""
    masks, maps = [], []
    for r in records:
        ref = r.meta.get("mask")
        if ref:
            mask = Image.open(manifest.root / ref).convert("L").resize((size, size), Image.Resampling.NEAREST)
            masks.append(np.asarray(mask) > 127)
        else:
            masks.append(np.zeros((size, size), bool))
        maps.append(predictor.anomaly_map(manifest.resolve(r)))
    return np.stack(masks), np.stack(maps)


def latency(predictor: Any, files: list[Path], runs: int = 100) -> dict[str, float]:
    """Single-image ``predict`` wall times (ms) after 5 warm-up calls: from the file (decoding included), and
    from the image already at the model's input size (the bundle's own cost: gate, model, decision)."""
    size = predictor.spec.input_size
    mode = "L" if predictor.spec.in_channels == 1 else "RGB"
    small = [Image.open(f).convert(mode).resize((size, size), Image.Resampling.BILINEAR) for f in files[:20]]
    out: dict[str, float] = {"runs": runs}
    for key, inputs in (("file", files), ("input_size", small)):
        for x in inputs[:5]:
            predictor.predict(x)
        times = []
        for i in range(runs):
            start = time.perf_counter()
            predictor.predict(inputs[i % len(inputs)])
            times.append((time.perf_counter() - start) * 1000)
        times.sort()
        out[f"{key}_p50_ms"] = statistics.median(times)
        out[f"{key}_p99_ms"] = times[int(0.99 * (len(times) - 1))]
    return out


def image_figures(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

    from defectlens.evaluation.anomaly import recall_at_false_alarms

    called = p >= threshold
    return {
        "image_auroc": float(roc_auc_score(y, p)),
        "image_aupr": float(average_precision_score(y, p)),
        "f1_at_threshold": float(f1_score(y, called)),
        "recall_at_threshold": float(called[y].mean()),
        "false_alarm_rate_at_threshold": float(called[~y].mean()),
        "recall_at_1pct_false_alarms": recall_at_false_alarms(y, p, 0.01),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from defectlens.data.manifest import Manifest
    from defectlens.evaluation.anomaly import pixel_metrics
    from defectlens.export import export_bundle
    from defectlens.inference.predictor import Predictor
    from defectlens.training.config import TrainConfig
    from defectlens.workflows.prepare import prepare_training_data
    from defectlens.workflows.train import train_and_evaluate

    machine = describe()
    work = Path(args.work)
    source = Path(args.source) if args.source else SHARED / "casting"
    if not source.is_dir():
        raise SystemExit(f"skipped: {source} is not here (see the module docstring for where the data comes from)")
    if args.dataset == "casting":
        source = good_only_casting(source, work)
    prepared = prepare_training_data(source, out=work, force=True)
    config = TrainConfig(
        task="anomaly", data=str(prepared.folder), channels=args.channels, input_size=args.input_size,
        bank_size=args.bank, max_patches=args.max_patches, out=str(work), name=f"{args.dataset}-anomaly",
        normal=args.normal,
    )  # fmt: skip
    start = time.perf_counter()
    result = train_and_evaluate(config)
    fit_seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert result.run_dir is not None
    bundle = export_bundle(result.run_dir, work / f"{args.dataset}-anomaly.dlens")
    predictor = Predictor.load(bundle.path)
    manifest = Manifest.read(prepared.folder)
    test = manifest.split("test")
    normal = result.spec.class_names[0]
    files = [manifest.resolve(r) for r in test]
    preds = list(predictor.predict_many(files, batch_size=8))
    y = np.array([r.label != normal for r in test])
    p = np.array([pr.defect_probability if pr.defect_probability is not None else np.nan for pr in preds])
    refused = int(np.isnan(p).sum())
    out: dict[str, Any] = {
        "dataset": args.dataset,
        "source": str(args.source or "../shared/datasets/casting"),
        "method": "PatchCore on EfficientNet-Lite0 stride-8/16 features, greedy coreset",
        "settings": {k: getattr(config, k) for k in ("channels", "input_size", "bank_size", "max_patches", "model")},
        "counts": manifest.counts(),
        "threshold": result.spec.threshold,
        "refused_by_gate": refused,
        "image": image_figures(y[~np.isnan(p)], p[~np.isnan(p)], float(result.spec.threshold or 0.5)),
        "evaluation": {s: {k: m.get(k) for k in ("roc_auc", "pr_auc", "accuracy")} for s, m in result.metrics.items()},
        "train_and_evaluate_seconds": fit_seconds,
        "peak_rss_mb": peak_mb,
        "bundle_mb": bundle.path.stat().st_size / 1e6,
        "parity_max_abs_prob_diff": bundle.meta["parity"]["max_abs_prob_diff"],
        "map_parity": {k: bundle.meta["parity"]["cam"].get(k) for k in ("ok", "max_abs_diff")},
        "latency": latency(predictor, files),
        "machine": machine,
        "load_average_at_end": os.getloadavg(),
    }
    if any(r.meta.get("mask") for r in test):
        masks, maps = pixel_arrays(predictor, manifest, test, predictor.spec.input_size)
        out["pixel"] = pixel_metrics(masks, maps)
    (Path(args.out) if args.out else RESULTS / f"anomaly-{args.dataset}.json").write_text(json.dumps(out, indent=1))
    return out


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", choices=("bottle", "casting"), required=True)
    p.add_argument("--source", help="the dataset folder (casting default: ../shared/datasets/casting)")
    p.add_argument("--work", default=str(ROOT / "build" / "anomaly"), help="imports, runs and bundles go here")
    p.add_argument("--input-size", type=int, default=256)
    p.add_argument("--channels", type=int, default=None, help="default: 3 for bottle, 1 for casting")
    p.add_argument("--bank", type=int, default=2048)
    p.add_argument("--max-patches", type=int, default=100_000)
    p.add_argument("--normal", default=None)
    p.add_argument("--out", default=None)
    p.add_argument(
        "--latency-only",
        action="store_true",
        help="time the bundle of an earlier run again (its JSON's latency, machine and load are replaced)",
    )
    return p


def latency_again(args: argparse.Namespace) -> dict[str, Any]:
    """Re-time the bundle an earlier run exported, on this machine as it is now (the rest is kept)."""
    from defectlens.data.manifest import Manifest
    from defectlens.inference.predictor import Predictor

    path = Path(args.out) if args.out else RESULTS / f"anomaly-{args.dataset}.json"
    out = json.loads(path.read_text())
    work = Path(args.work)
    predictor = Predictor.load(work / f"{args.dataset}-anomaly.dlens")
    data = work / ("data-casting-good-only" if args.dataset == "casting" else f"data-{Path(args.source).name}")
    manifest = Manifest.read(data)
    files = [manifest.resolve(r) for r in manifest.split("test")]
    out["latency"] = {**latency(predictor, files), "backend": predictor.backend}
    out["latency_machine"] = {**describe(), "load_average_at_end": os.getloadavg()}
    path.write_text(json.dumps(out, indent=1))
    return out["latency"]


if __name__ == "__main__":
    ns = get_args_parser().parse_args()
    if ns.channels is None:
        ns.channels = 3 if ns.dataset == "bottle" else 1
    print(json.dumps(latency_again(ns) if ns.latency_only else run(ns), indent=1))
