"""The evaluation run: logits per split, calibration and threshold fitted on val, metrics everywhere.

Owns :func:`run_evaluation`, called by ``defectlens evaluate`` and at the end of every training
run. Everything goes through the :class:`Predictor` (one inference path). Test data is only ever
scored: the temperature and the threshold are fitted on the validation split, so changing test
labels cannot change them. Writes ``metrics.json``, ``plots/*.png`` and ``report.html``.
"""

from __future__ import annotations

import json
import platform
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from defectlens.data.manifest import SPLITS, Manifest, Record
from defectlens.errors import DefectlensError
from defectlens.evaluation.threshold import ThresholdChoice, choose_threshold, threshold_sweep


@dataclass(frozen=True)
class EvaluationResult:
    """What an evaluation decided and measured; ``metrics`` is ``{split: compute_metrics dict}``."""

    temperature: float
    threshold: ThresholdChoice | None
    positive_class: str | None
    metrics: dict[str, dict[str, Any]]
    calibration: dict[str, Any]
    out_dir: Path
    report_path: Path
    notes: list[str] = field(default_factory=list)


@dataclass
class SplitScores:
    """Raw logits, labels and image paths of one split."""

    logits: np.ndarray
    y: np.ndarray
    paths: list[Path]


def score_records(
    predictor: Any,
    manifest: Manifest,
    records: list[Record],
    *,
    batch_size: int = 32,
    progress: Any = None,
    label: str = "",
) -> SplitScores:
    """Preprocess and run ``records`` through ``predictor`` in batches; labels in spec class order."""
    names = list(predictor.spec.class_names)
    unknown = sorted({r.label for r in records} - set(names))
    if unknown:
        raise DefectlensError(
            f"dataset labels {unknown} are not classes of the model ({names}); "
            "evaluate with the dataset the model was trained for"
        )
    paths = [manifest.resolve(r) for r in records]
    y = np.array([names.index(r.label) for r in records], dtype=np.int64)
    chunks = []
    task = progress.add_task(f"scoring {label}", total=len(paths)) if progress is not None else None
    for start in range(0, len(paths), batch_size):
        batch = np.stack([predictor.preprocess(p) for p in paths[start : start + batch_size]])
        chunks.append(predictor.logits(batch))
        if progress is not None:
            progress.advance(task, len(batch))
    logits = np.concatenate(chunks) if chunks else np.zeros((0, len(names)), np.float32)
    return SplitScores(logits=logits, y=y, paths=paths)


def _positive_class(predictor: Any, manifest: Manifest) -> str | None:
    names = list(predictor.spec.class_names)
    pos = predictor.spec.positive_class or manifest.info.get("positive_class")
    return pos if len(names) == 2 and pos in names else None


def _choose(
    scores: dict[str, SplitScores],
    probs_val: np.ndarray | None,
    *,
    pos_idx: int,
    spec: Any,
    refit: bool,
    method: str,
    target_recall: float,
    cost_fn: float,
    cost_fp: float,
) -> ThresholdChoice:
    """The operating threshold: fitted on val when refitting, else the spec's (or 0.5), said why."""
    stored = spec.threshold if spec.threshold is not None else 0.5
    origin = "stored in the model spec" if spec.threshold is not None else "default 0.5 (the spec stores none)"
    sweep: list[dict[str, float]] = []
    if probs_val is not None:
        y_pos = scores["val"].y == pos_idx
        sweep = threshold_sweep(y_pos, probs_val[:, pos_idx], cost_fn=cost_fn, cost_fp=cost_fp)
        if refit:
            try:
                return choose_threshold(
                    y_pos,
                    probs_val[:, pos_idx],
                    method=method,
                    target_recall=target_recall,
                    cost_fn=cost_fn,
                    cost_fp=cost_fp,
                )
            except DefectlensError as exc:
                return ThresholdChoice(stored, "fixed", f"{origin}; could not fit on validation: {exc}", sweep)
    if not refit:
        return ThresholdChoice(stored, "stored", f"{origin}; not refitted (evaluating the model as deployed)", sweep)
    return ThresholdChoice(stored, "fixed", f"{origin}; no validation split to fit a threshold on", sweep)


def _versions() -> dict[str, str]:
    import sklearn
    import torch

    from defectlens import __version__

    return {
        "defectlens": __version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "torch": torch.__version__,
        "scikit-learn": sklearn.__version__,
        "platform": platform.platform(),
    }


def run_evaluation(
    predictor: Any,
    manifest: Manifest,
    *,
    out_dir: str | Path,
    splits: tuple[str, ...] | list[str] = ("train", "val", "test"),
    threshold_method: str = "f1",
    target_recall: float = 0.99,
    cost_fn: float = 10.0,
    cost_fp: float = 1.0,
    calibrate: bool = True,
    refit: bool = True,
    run_info: dict[str, Any] | None = None,
    batch_size: int = 32,
    bootstrap: int = 1000,
    quiet: bool = False,
) -> EvaluationResult:
    """Evaluate ``predictor`` on the manifest's splits and write metrics.json, plots and report.html.

    Args:
        predictor: the :class:`Predictor` to evaluate (its spec is not modified).
        manifest: dataset with ``split`` assigned.
        out_dir: folder for the outputs (created).
        splits: splits to report; those absent from the manifest are skipped.
        threshold_method: ``f1``, ``recall`` or ``cost`` (binary tasks with a defect class).
        target_recall: defect recall the ``recall`` method must reach on validation.
        cost_fn, cost_fp: cost of a missed defect and of a false alarm, per part.
        calibrate: fit a temperature on validation (else keep the spec's).
        refit: fit temperature and threshold on validation; ``False`` uses the spec's stored values.
        run_info: provenance from the caller (run folder, config, history path), copied into the report.
        batch_size: images per forward pass.
        bootstrap: resamples for the confidence intervals.
        quiet: no progress bar or table on the console.

    Raises:
        DefectlensError: if no requested split has images, or labels do not match the model.
    """
    from rich.console import Console
    from rich.progress import Progress

    from defectlens.evaluation.calibration import calibration_summary, choose_temperature
    from defectlens.evaluation.metrics import compute_metrics
    from defectlens.inference.predictor import softmax
    from defectlens.runtime import tune_cpu_allocator

    tune_cpu_allocator()
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise DefectlensError(f"unknown split(s) {unknown}; choose from {', '.join(SPLITS)}")
    spec = predictor.spec
    report = [s for s in SPLITS if s in splits and manifest.split(s)]
    if not report:
        raise DefectlensError(f"no images in split(s) {list(splits)} of the dataset; check its split column")
    has_val = bool(manifest.split("val"))
    needed = [s for s in SPLITS if s in report or (s == "val" and has_val and refit)]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    console = Console(stderr=True, quiet=quiet)
    with Progress(console=console, transient=True, disable=quiet) as progress:
        scores = {
            s: score_records(predictor, manifest, manifest.split(s), batch_size=batch_size, progress=progress, label=s)
            for s in needed
        }
    notes: list[str] = []

    # 1. temperature, on val only
    temperature = float(spec.temperature)
    fitted = refit and calibrate and has_val
    method = ""
    if fitted:
        temperature, method = choose_temperature(scores["val"].logits, scores["val"].y)
        if method == "rule_of_succession":
            n_val = len(scores["val"].y)
            notes.append(
                f"validation classified without error ({n_val} images): no temperature minimises its NLL, so "
                f"T = {temperature:.3g} gives a mean validation confidence of (n+1)/(n+2) = "
                f"{(n_val + 1) / (n_val + 2):.4f}"
            )
    elif refit and calibrate:
        notes.append(f"no validation split: temperature kept at the spec's {temperature:g}")
    elif not refit:
        notes.append(f"not refitted: temperature {temperature:g} and threshold as stored in the model spec")
    pos = _positive_class(predictor, manifest)
    pos_idx = list(spec.class_names).index(pos) if pos is not None else None
    cal_split = "val" if "val" in scores else report[0]
    calibration = calibration_summary(
        scores[cal_split].logits,
        scores[cal_split].y,
        before=float(spec.temperature),
        after=temperature,
        positive_index=pos_idx,
        fitted_on="val" if fitted else "",
    )
    calibration["method"] = method

    # 2. threshold, on val only (calibrated probabilities)
    choice: ThresholdChoice | None = None
    if pos_idx is not None:
        probs_val = softmax(scores["val"].logits, temperature) if "val" in scores else None
        choice = _choose(
            scores,
            probs_val,
            pos_idx=pos_idx,
            spec=spec,
            refit=refit,
            method=threshold_method,
            target_recall=target_recall,
            cost_fn=cost_fn,
            cost_fp=cost_fp,
        )
    elif len(spec.class_names) == 2:
        notes.append("binary model without a defect class (positive_class): decisions use argmax")
    threshold = choice.threshold if choice else None

    # 3. metrics on every reported split with that temperature and threshold
    metrics = {
        s: compute_metrics(
            scores[s].y,
            softmax(scores[s].logits, temperature),
            class_names=spec.class_names,
            positive_index=pos_idx,
            threshold=threshold,
            cost_fn=cost_fn,
            cost_fp=cost_fp,
            bootstrap=bootstrap,
        )
        for s in report
    }

    # 4. the same decisions counted by image attribute (cell type, camera...), where the data has any
    from defectlens.evaluation.metrics import decide
    from defectlens.evaluation.slices import slice_keys, slice_table

    keys = slice_keys([r for s in report for r in manifest.split(s)])
    slices = (
        {
            s: slice_table(
                manifest.split(s),
                scores[s].y,
                decide(softmax(scores[s].logits, temperature), positive_index=pos_idx, threshold=threshold),
                class_names=spec.class_names,
                positive_index=pos_idx,
                keys=keys,
            )
            for s in report
        }
        if keys
        else {}
    )

    payload = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "splits": report,
        "temperature": temperature,
        "positive_class": pos,
        "threshold": choice.to_dict() if choice else None,
        "settings": {
            "threshold_method": threshold_method,
            "target_recall": target_recall,
            "cost_fn": cost_fn,
            "cost_fp": cost_fp,
            "calibrate": calibrate,
            "refit": refit,
            "bootstrap": bootstrap,
        },
        "calibration": calibration,
        "metrics": metrics,
        "slices": slices,
        "notes": notes,
        "provenance": {
            "dataset": {**manifest.info, "counts": manifest.counts()},
            "model": {"spec": spec.to_dict(), "backend": getattr(predictor, "backend", "")},
            "run": _jsonable(run_info or {}),
            "versions": _versions(),
        },
    }
    (out / "metrics.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    write_predictions(
        out / "predictions.csv",
        {s: scores[s] for s in report},
        class_names=list(spec.class_names),
        temperature=temperature,
        positive_index=pos_idx,
        threshold=threshold,
        root=manifest.root,
    )

    from defectlens.evaluation.figures import render_figures
    from defectlens.evaluation.report import write_report

    figures = render_figures(
        predictor,
        payload,
        scores,
        out_dir=out,
        temperature=temperature,
        threshold=threshold,
        pos_idx=pos_idx,
        run_info=run_info or {},
    )
    report_path = write_report(payload, figures, out / "report.html")
    if not quiet:
        print_table(payload, console=Console())
    return EvaluationResult(
        temperature=temperature,
        threshold=choice,
        positive_class=pos,
        metrics=metrics,
        calibration=calibration,
        out_dir=out,
        report_path=report_path,
        notes=notes,
    )


def write_predictions(
    path: Path,
    scores: dict[str, SplitScores],
    *,
    class_names: list[str],
    temperature: float,
    positive_index: int | None,
    threshold: float | None,
    root: Path | None = None,
) -> None:
    """One row per evaluated image: split, path, label, decision, correct, calibrated probabilities.

    Decisions use the same temperature and threshold as the metrics, so the wrong rows are exactly
    the errors the metrics count; paths are relative to the dataset folder when they lie inside it.
    """
    import csv

    from defectlens.evaluation.metrics import decide
    from defectlens.inference.predictor import softmax

    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["split", "path", "label", "prediction", "correct", *(f"p_{c}" for c in class_names)])
        for split, sc in scores.items():
            probs = softmax(sc.logits, temperature)
            binary = positive_index is not None and len(class_names) == 2
            pred = decide(probs, positive_index=positive_index if binary else None, threshold=threshold)
            for p, y, k, row in zip(sc.paths, sc.y, pred, probs, strict=True):
                shown = p.relative_to(root) if root is not None and p.is_relative_to(root) else p
                writer.writerow(
                    [split, shown.as_posix(), class_names[y], class_names[k], int(y == k), *(f"{v:.6g}" for v in row)]
                )


def _jsonable(obj: Any) -> Any:
    """Round-trip through JSON so paths and odd types in caller-supplied provenance become strings."""
    return json.loads(json.dumps(obj, default=str))


TABLE_ROWS = (
    "accuracy",
    "balanced_accuracy",
    "macro_f1",
    "mcc",
    "roc_auc",
    "pr_auc",
    "defect_recall",
    "defect_precision",
    "false_alarm_rate",
    "expected_cost",
    "ece",
    "brier",
    "nll",
)


def print_table(payload: dict[str, Any], *, console: Any) -> None:
    """The headline metrics as a rich table with one column per split."""
    from rich.table import Table

    table = Table(title="defectlens evaluation")
    table.add_column("metric")
    splits = payload["splits"]
    for s in splits:
        table.add_column(s.capitalize(), justify="right")
    for key in TABLE_ROWS:
        vals = [payload["metrics"][s].get(key) for s in splits]
        if all(v is None for v in vals):
            continue
        table.add_row(key, *("-" if v is None else f"{v:.4f}" for v in vals))
    console.print(table)
    thr = payload.get("threshold")
    if thr:
        console.print(f"threshold {thr['threshold']:.4f} ({thr['method']}): {thr['reason']}")
    console.print(f"temperature {payload['temperature']:.4f}")
    main = "test" if "test" in splits else splits[-1]
    for key, rows in (payload.get("slices") or {}).get(main, {}).items():
        console.print(f"{main} errors by {key}: " + "; ".join(f"{r['value']} {r['errors']}/{r['n']}" for r in rows))
