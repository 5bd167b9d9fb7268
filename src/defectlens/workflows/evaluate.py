"""Evaluating a model on a dataset: score its splits through the Predictor, compute, write the files.

Owns :func:`score_splits`, :func:`evaluate_model` (what ``defectlens evaluate`` and the training
workflow run) and :func:`evaluate_run` (a run folder, checkpoint or bundle, with the dataset and the
output folder defaulted from the run). Everything goes through the
:class:`~defectlens.inference.predictor.Predictor`: one inference path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from defectlens.core.anomaly import is_anomaly, model_label
from defectlens.core.decision import softmax
from defectlens.core.errors import DefectlensError
from defectlens.core.machine import versions
from defectlens.core.progress import Progress
from defectlens.core.runtime import tune_cpu_allocator
from defectlens.data.manifest import SPLITS, Manifest, Record
from defectlens.evaluation.evaluate import EvalSettings, EvaluationResult, SplitScores, evaluate
from defectlens.inference.predictor import Predictor
from defectlens.reporting.results import write_evaluation

#: The test images with no byte-identical copy in train or val, reported beside the whole test split
#: when the source's own splits leak (64 of the Kaggle casting test images are copies of train images).
UNSEEN = "test_unseen"


def unseen_subset(manifest: Manifest, test: SplitScores) -> SplitScores | None:
    """``test`` without its images whose exact copy (sha256) is in train or val; None when nothing leaks."""
    seen = {r.sha256 for r in manifest.records if r.split in ("train", "val") and r.sha256}
    keep = [i for i, r in enumerate(test.records) if r.sha256 not in seen]
    if len(keep) == len(test.records) or not keep:
        return None
    return SplitScores(
        logits=test.logits[keep], y=test.y[keep], paths=[test.paths[i] for i in keep],
        records=[test.records[i] for i in keep],
        gate_kinds=None if test.gate_kinds is None else [test.gate_kinds[i] for i in keep],
    )  # fmt: skip


@dataclass(frozen=True)
class EvaluationRun:
    """An evaluation and where its files went."""

    result: EvaluationResult
    out_dir: Path
    report_path: Path


def score_records(
    predictor: Predictor, manifest: Manifest, records: list[Record], *, batch_size: int, progress: Progress, label: str
) -> SplitScores:
    """Logits of ``records`` through ``predictor``, labels in the model's class order, and, while its gate
    is active, the kinds of the reasons it flags each image for.

    Raises:
        DefectlensError: when a label is not a class of the model.
    """
    names = list(predictor.spec.class_names)
    labels = [model_label(predictor.spec, r.label) for r in records]  # anomaly models: defect kinds -> anomalous
    unknown = sorted(set(labels) - set(names))
    if unknown:
        raise DefectlensError(
            f"dataset labels {unknown} are not classes of the model ({names}); "
            "evaluate with the dataset the model was trained for"
        )
    paths = [manifest.resolve(r) for r in records]
    y = np.array([names.index(label) for label in labels], dtype=np.int64)
    with progress.phase(f"scoring {label}", total=len(paths), unit="img") as phase:
        logits, checks = predictor.score_and_check(paths, batch_size=batch_size, on_batch=phase.advance)
    kinds = [c.kinds if c is not None else () for c in checks] if predictor.gate.active else None
    return SplitScores(logits=logits, y=y, paths=paths, records=list(records), gate_kinds=kinds)


def score_splits(
    predictor: Predictor,
    manifest: Manifest,
    splits: Sequence[str],
    *,
    batch_size: int = 32,
    progress: Progress | None = None,
) -> dict[str, SplitScores]:
    """Scores of each split in ``splits`` that has images."""
    progress = progress or Progress()
    return {
        s: score_records(predictor, manifest, manifest.split(s), batch_size=batch_size, progress=progress, label=s)
        for s in splits
        if manifest.split(s)
    }


def evaluate_model(
    predictor: Predictor,
    manifest: Manifest,
    *,
    out_dir: str | Path,
    splits: Sequence[str] = ("train", "val", "test"),
    settings: EvalSettings | None = None,
    run_info: dict[str, Any] | None = None,
    history: Path | None = None,
    batch_size: int = 32,
    progress: Progress | None = None,
) -> EvaluationRun:
    """Evaluate ``predictor`` on ``manifest`` and write metrics.json, predictions.csv, plots and report.html.

    Temperature and threshold are fitted on the val split (scored for that even when not reported);
    ``settings.refit=False`` evaluates the model as deployed, with its stored values.

    Raises:
        DefectlensError: for an unknown split, no images in the requested splits, or labels the model lacks.
    """
    tune_cpu_allocator()
    settings = settings or EvalSettings()
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise DefectlensError(f"unknown split(s) {unknown}; choose from {', '.join(SPLITS)}")
    report = [s for s in SPLITS if s in splits and manifest.split(s)]
    if not report:
        raise DefectlensError(f"no images in split(s) {list(splits)} of the dataset; check its split column")
    needed = [s for s in SPLITS if s in report or (s == "val" and settings.refit)]
    scores = score_splits(predictor, manifest, needed, batch_size=batch_size, progress=progress)
    if "test" in scores and (unseen := unseen_subset(manifest, scores["test"])) is not None:
        scores[UNSEEN], report = unseen, [*report, UNSEEN]
    result = evaluate(
        scores,
        spec=predictor.spec,
        report=report,
        dataset_positive=manifest.info.get("positive_class"),
        settings=settings,
        gate=predictor.gate.describe(),
    )
    if is_anomaly(predictor.spec):
        _anomaly_figures(result, scores, predictor, manifest)
    provenance = {
        "dataset": {**manifest.info, "counts": manifest.counts()},
        "model": {"spec": predictor.spec.to_dict(), "backend": predictor.backend, "model_id": predictor.model_id},
        "run": run_info or {},
        "versions": versions(),
    }
    with (progress or Progress()).phase("writing the report"):
        report_path = write_evaluation(
            result,
            scores,
            predictor=predictor,
            out_dir=out_dir,
            provenance=provenance,
            root=manifest.root,
            history=history,
        )
    return EvaluationRun(result, Path(out_dir), report_path)


def _anomaly_figures(
    result: EvaluationResult, scores: dict[str, SplitScores], predictor: Predictor, manifest: Manifest
) -> None:
    """An anomaly model's own figures into ``result.metrics``: recall at 1 % false alarms per split, and
    pixel AUROC and PRO on the images of a split that carry masks (MVTec AD ``ground_truth/``), from the
    raw anomaly maps at the input size (one more pass over those images)."""
    from defectlens.evaluation.anomaly import pixel_metrics, recall_at_false_alarms

    pos = predictor.spec.positive_index
    for split, metrics in result.metrics.items():
        sc = scores[split]
        p = softmax(sc.logits, result.temperature)[:, pos]
        metrics["recall_at_1pct_false_alarms"] = recall_at_false_alarms(sc.y == pos, p, 0.01)
        masked = [r for r in sc.records if r.meta.get("mask")]
        if masked and predictor.cam_method is not None and split != UNSEEN:
            size = predictor.spec.input_size
            # an image without a mask is all normal pixels
            masks = [
                prepare_mask(manifest.root / r.meta["mask"], size, image=(r.width, r.height))
                if r.meta.get("mask")
                else np.zeros((size, size), bool)  # an image without a mask: every pixel normal
                for r in sc.records
            ]
            maps = [predictor.anomaly_map(manifest.resolve(r)) for r in sc.records]
            metrics["pixel"] = pixel_metrics(np.stack(masks), np.stack(maps))


def prepare_mask(path: Path, size: int, *, image: tuple[int, int] = (0, 0)) -> np.ndarray:
    """A mask file as booleans at the model's input size (nearest resize).

    Raises:
        DefectlensError: naming a mask that is missing or unreadable, or whose size is not its image's
            (``image``: width and height as imported; (0, 0) when unknown).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(path)
    except (OSError, UnidentifiedImageError) as exc:
        raise DefectlensError(f"{path}: the mask of a test image cannot be read ({exc})") from None
    with img:
        if all(image) and img.size != image:
            raise DefectlensError(
                f"{path}: the mask is {img.size[0]}x{img.size[1]} but its image is {image[0]}x{image[1]}; "
                "a mask must match its image pixel for pixel"
            )
        return np.asarray(img.convert("L").resize((size, size), Image.Resampling.NEAREST)) > 127


def evaluate_run(
    source: str | Path,
    *,
    data: str | Path | None = None,
    out_dir: str | Path | None = None,
    splits: Sequence[str] = ("train", "val", "test"),
    settings: EvalSettings | None = None,
    force: bool = False,
    progress: Progress | None = None,
    gate: str = "refuse",
) -> EvaluationRun:
    """Evaluate a run folder, checkpoint or bundle; ``data`` defaults to the dataset the run trained on.

    With ``gate`` ``refuse`` or ``warn`` (a bundle with a reference profile) the evaluation reports, beside
    the plain figures on every image, the gate's coverage and the accuracy on the images it lets through;
    ``off`` evaluates without the gate.

    Earlier output is never replaced silently: without ``out_dir`` the results go to ``RUN/eval``, or
    ``RUN/eval-2``, ``eval-3``... when that exists; an ``out_dir`` holding an evaluation needs ``force``.

    Raises:
        DefectlensError: when no dataset is given and the model records none that exists here, or
            ``out_dir`` holds an earlier evaluation and ``force`` is not set.
    """
    source = Path(source)
    predictor = Predictor.load(source, gate=gate)
    data = data or recorded_dataset(source, predictor)
    manifest = Manifest.read(data)
    run_info: dict[str, Any] = {"model": source.name, "data": str(Path(data).resolve())}
    history = None
    if source.is_dir():
        run_info["run_dir"] = str(source.resolve())
        history = source / "history.csv"
    out = _output_folder(source, out_dir, force=force)
    return evaluate_model(
        predictor, manifest, out_dir=out, splits=splits, settings=settings, run_info=run_info, history=history,
        progress=progress,
    )  # fmt: skip


def next_free(base: Path) -> Path:
    """``base`` when it does not exist, else ``base-2``, ``base-3``... (as Ultralytics numbers its runs)."""
    if not base.exists():
        return base
    k = 2
    while base.with_name(f"{base.name}-{k}").exists():
        k += 1
    return base.with_name(f"{base.name}-{k}")


def _output_folder(source: Path, out_dir: str | Path | None, *, force: bool) -> Path:
    if out_dir is None:
        return next_free(source / "eval" if source.is_dir() else source.with_name(f"{source.stem}-eval"))
    out = Path(out_dir)
    if (out / "metrics.json").exists() and not force:
        raise DefectlensError(f"{out} holds an earlier evaluation; pass --force to replace it, or another --out")
    return out


def recorded_dataset(source: str | Path, predictor: Predictor) -> str:
    """The dataset folder a model was trained on, when it exists here.

    Raises:
        DefectlensError: when the model records none, or it is not present.
    """
    recorded = (predictor.meta.get("config") or predictor.meta.get("training_config") or {}).get("data")
    if recorded and Path(recorded).is_dir():
        return str(recorded)
    where = f" ({recorded} is not present here)" if recorded else ""
    raise DefectlensError(f"{source}: pass --data DIR: the model records no dataset folder that exists here{where}")
