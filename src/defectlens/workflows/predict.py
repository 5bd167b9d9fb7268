"""Predicting a file, folder or glob: inputs, ground truth from class subfolders, the CSV, metrics.

This is the library behind ``defectlens predict``; the CLI only parses arguments and prints.
Every input gets a row, written to ``predictions.csv`` as soon as it is decided: an unreadable file
(whatever the reason: corrupt, an odd pixel mode, a dangling symlink, a FIFO, a folder that cannot
be listed) becomes an error row (``status="error"``, ``reason``) and the run goes on, so one bad file
from a line camera never hides the verdicts on the rest, and a crash never loses the rows already
written. A frame the model's gate will not let it judge (a black or unfocused frame, another product)
is a ``needs_review`` row: no class, the gate's reason and its out-of-distribution score; with
``--gate warn`` it keeps its class with ``needs_review=true``. Hidden files and folders (names
starting with ``.``) are not inputs.

The columns of ``predictions.csv`` (:data:`CSV_COLUMNS` documents each): ``confidence`` is the
probability of the predicted class, so at a low threshold a "defect" call can have a confidence
under 0.5; ``defect_probability`` (binary models) is the calibrated probability of the defect class,
the number the threshold is compared with.

Output never overwrites: without ``--out`` each run gets a new folder (``predictions``,
``predictions-2``, ...); a folder that already holds a ``predictions.csv`` is refused unless forced.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import io
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from defectlens.core.anomaly import subfolder_classes
from defectlens.core.errors import DefectlensError
from defectlens.core.outputs import check_output, open_output, output_error, write_all
from defectlens.core.progress import Progress
from defectlens.core.text import csv_cell, short_name
from defectlens.data.walk import IMAGE_SUFFIXES, inspect, walk
from defectlens.evaluation.metrics import compute_metrics
from defectlens.inference.predictor import Prediction, Predictor

CSV_FILE = "predictions.csv"
DEFAULT_OUT = "predictions"
GRADCAM_DIR = "gradcam"

F = TypeVar("F", Path, str)

#: The columns of predictions.csv and what each holds (``p_<class>``: one per class).
CSV_COLUMNS = {
    "file": "the input file",
    "status": "ok; needs_review when the gate would not let the model judge the frame (no class); error when the "
    "file could not be used (see reason)",
    "prediction": "the decided class (empty on needs_review and error rows)",
    "confidence": "probability of the predicted class (can be under 0.5 for a defect call at a low threshold)",
    "defect_probability": "binary models: calibrated probability of the defect class, compared with the threshold",
    "p_<class>": "calibrated probability of each class",
    "threshold": "the decision threshold on defect_probability (binary models)",
    "needs_review": "true when the gate flagged the frame (with --gate warn the class is still given), false when "
    "it passed; empty without a gate (--gate off, a model without a reference profile, error rows)",
    "ood_score": "the gate's out-of-distribution score (higher: less like the training images); empty when the "
    "model computes none",
    "latency_ms": "decoding plus this file's share of its batch",
    "truth": "the class named by the file's class subfolder, when there is one",
    "match": "MATCH or MISMATCH against truth (empty on needs_review and error rows: no decision to compare)",
    "reason": "why the file could not be used (error rows) or judged (needs_review rows)",
    "gate_reason": "why the gate flagged the frame (also on --gate warn rows, which keep their class)",
    "warning": "a problem that did not stop decoding (corrupt JPEG data, bad EXIF): check the image",
    "overlay": "the explanation overlay PNG (--explain): the CAM from the graph, or Grad-CAM through torch",
}


@dataclass
class Inputs:
    """Files to predict, their ground truth (class subfolder name) where known, and the input kind."""

    files: list[Path]
    truth: dict[Path, str] = field(default_factory=dict)
    kind: str = "file"  # "file", "folder" or "glob"
    problems: dict[Path, str] = field(default_factory=dict)  # entries that cannot be read, and why


def collect_inputs(target: str | Path, class_names: Iterable[str] = (), *, output: str | Path | None = None) -> Inputs:
    """Resolve IMAGE, DIR or GLOB to files; in a folder whose subfolders are named after classes,
    each file below such a subfolder gets that class as ground truth (for an anomaly model, a defect kind's
    subfolder beside the normal one gives ``anomalous``: :func:`~defectlens.core.anomaly.subfolder_classes`).

    ``output`` (the ``predictions.csv`` this run writes) is never an input of a folder; any other file,
    whatever its name, gets its row.

    Raises:
        DefectlensError: when nothing matches.
    """
    p = Path(target)
    if p.is_dir():
        skip = _resolved(output)
        entries = [e for e in walk(p, skip_hidden=True) if skip is None or _resolved(e.path) != skip]
        files = [e.path for e in entries]
        problems = {e.path: e.problem for e in entries if e.problem is not None}
        tops = {f: f.relative_to(p).parts for f in files}
        classes = subfolder_classes(tuple(class_names), {parts[0] for parts in tops.values() if len(parts) > 1})
        truth = {}
        for f, parts in tops.items():
            if parts[0] in classes and len(parts) > 1 and f not in problems:
                truth[f] = classes[parts[0]]
        if not files:
            raise DefectlensError(f"{p}: folder has no files to predict")
        return Inputs(files, truth, "folder", problems)
    if p.exists() or p.is_symlink():  # a file, or a FIFO, device or dangling link: its row says which
        return Inputs([p], kind="file")
    if glob.has_magic(str(target)):
        # absolute or relative patterns alike; Path.glob cannot take an absolute pattern
        matches = sorted(Path(f) for f in glob.glob(str(target), recursive=True))  # noqa: PTH207
        files, problems = [], {}
        for f in matches:
            kind, problem = inspect(f)
            if kind == "dir" and f.suffix.lower() not in IMAGE_SUFFIXES:
                continue  # the pattern named a folder, not an input
            files.append(f)
            if kind != "file":
                problems[f] = problem or "a folder named like an image file"
        if not files:
            raise DefectlensError(f"{target}: the pattern matches no files")
        return Inputs(files, kind="glob", problems=problems)
    raise DefectlensError(f"{target}: no such file or folder (give an image, a folder or a glob pattern)")


def _resolved(path: str | Path | None) -> Path | None:
    if path is None:
        return None
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError):  # a symlink loop: not the output file
        return Path(path).absolute()


def output_folder(out: str | Path | None, *, force: bool = False, base: str | Path = DEFAULT_OUT) -> Path:
    """Where a prediction run writes, created here; never a folder holding earlier predictions.

    Args:
        out: the folder asked for; None: ``base``, or ``base-2``, ``base-3``... the first that does not exist.
        force: reuse an ``out`` that already holds a ``predictions.csv`` (its Grad-CAM PNGs are removed).
        base: the default folder name.

    Raises:
        DefectlensError: when ``out`` holds earlier predictions and ``force`` is off.
    """
    if out is None:
        for i in range(1, 10_000):
            folder = Path(f"{base}-{i}" if i > 1 else base)
            try:
                folder.mkdir(parents=True)  # claims the name atomically, even against a parallel run
                return folder
            except FileExistsError:
                continue
            except OSError as exc:
                raise output_error(folder, exc) from None
        raise DefectlensError(f"{base}: 9999 numbered output folders exist already; pass --out")
    folder = Path(out)
    check_output(folder, force=force, what="--out")
    csv_path = folder / CSV_FILE
    if csv_path.exists() or csv_path.is_symlink():
        if not force:
            raise DefectlensError(
                f"{folder} already holds {CSV_FILE} from an earlier run; pass --force to replace it, or another --out"
            )
        for png in (folder / GRADCAM_DIR).glob("[0-9][0-9][0-9][0-9][0-9]_*.png"):
            png.unlink()  # overlays of the replaced run would otherwise sit beside the new ones
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(folder, exc) from None
    return folder


def row_of(
    pred: Prediction, class_names: Iterable[str], truth: str | None, positive_class: str | None = None
) -> dict[str, Any]:
    """A flat CSV row (see :data:`CSV_COLUMNS`): status, prediction, confidence, the defect probability
    (the column is there for binary models, ``positive_class`` given; its value is the prediction's
    own :attr:`~Prediction.defect_probability`), one probability column per class, truth."""
    check = pred.gate
    row: dict[str, Any] = {
        "file": pred.file,
        "status": pred.status,
        "prediction": pred.prediction,
        "confidence": round(pred.confidence, 6) if pred.ok else "",
    }
    if positive_class is not None:
        dp = pred.defect_probability
        row["defect_probability"] = round(dp, 6) if pred.ok and dp is not None else ""
    for c in class_names:
        row[f"p_{c}"] = round(pred.probabilities[c], 6) if pred.ok else ""
    row["threshold"] = "" if pred.threshold is None else pred.threshold
    row["needs_review"] = "" if check is None else str(pred.needs_review).lower()
    row["ood_score"] = "" if pred.ood_score is None else round(pred.ood_score, 6)
    row["latency_ms"] = round(pred.latency_ms, 3)
    row["truth"] = truth or ""
    row["match"] = ("MATCH" if pred.prediction == truth else "MISMATCH") if truth and pred.ok else ""
    row["reason"] = pred.reason
    row["gate_reason"] = check.reason if check is not None else ""
    row["warning"] = pred.warning
    row["overlay"] = pred.extra.get("overlay", "")
    return row


@dataclass
class FolderResult:
    """What predicting many files produced: counts per decided class (``counts``) and per row status
    (``statuses``: ``ok``, ``needs_review``, ``error``; kept apart so a class named ``ERROR`` never merges
    with the failed files), error rows, rows the gate flagged (``review``: refused, or classed under
    ``--gate warn``), the gate in force (its ``describe()``), and metrics on labelled files."""

    csv_path: Path | None
    files: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    review: list[dict[str, Any]] = field(default_factory=list)
    gate: dict[str, Any] = field(default_factory=dict)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    explain_method: str | None = None  # how the overlays were made (--explain): "CAM (onnxruntime)", ...
    mismatches: int = 0
    metrics: dict[str, Any] | None = None


def _metrics(
    predictor: Predictor, labelled: list[tuple[str, Prediction]], threshold: float | None
) -> dict[str, Any] | None:
    """Accuracy, per-class recall and confusion over files with ground truth (the evaluation's metrics)."""
    if not labelled:
        return None
    names = list(predictor.spec.class_names)
    y = np.array([names.index(t) for t, _ in labelled])
    probs = np.array([[p.probabilities[c] for c in names] for _, p in labelled])
    t = predictor.spec.threshold if threshold is None else threshold
    return compute_metrics(
        y, probs, class_names=names, positive_index=predictor.spec.positive_index, threshold=t, bootstrap=0
    )


def predict_files(
    predictor: Predictor,
    inputs: Inputs,
    *,
    out: str | Path | None = None,
    threshold: float | None = None,
    explain: bool = False,
    batch_size: int = 16,
    progress: Progress | None = None,
) -> FolderResult:
    """Predict every input, writing each row of ``predictions.csv`` (and Grad-CAM PNGs) into ``out`` as it comes.

    Entries of ``inputs.problems`` (a FIFO, a dangling symlink...) get their error row without being opened.
    """
    names = list(predictor.spec.class_names)
    positive = predictor.spec.positive_class if len(names) == 2 else None
    out_dir = Path(out) if out is not None else None
    result = FolderResult(csv_path=out_dir / CSV_FILE if out_dir is not None else None, gate=predictor.gate.describe())
    labelled: list[tuple[str, Prediction]] = []
    counts: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    if explain and out_dir is not None:
        result.explain_method = explain_method(predictor)
    preds = predictions(predictor, inputs.files, inputs.problems, threshold=threshold, batch_size=batch_size)
    with (
        _CsvSink(result.csv_path) as sink,
        (progress or Progress()).phase("predicting", total=len(inputs.files), unit="img") as phase,
    ):
        for i, (f, pred) in enumerate(zip(inputs.files, preds, strict=True)):
            if explain and pred.ok and out_dir is not None:
                pred = _with_overlay(predictor, f, pred, out_dir / GRADCAM_DIR / overlay_name(f, prefix=f"{i:05d}_"))
            truth = inputs.truth.get(f)
            row = row_of(pred, names, truth, positive)
            sink.write(row)
            statuses[pred.status] += 1
            if pred.ok:
                counts[pred.prediction] += 1
            if pred.warning:
                result.warnings.append(row)
            if pred.needs_review:
                result.review.append(row)
            if pred.status == "error":
                result.errors.append(row)
            if pred.ok and truth:  # a needs_review row has no class to compare: neither MATCH nor MISMATCH
                labelled.append((truth, pred))
                result.mismatches += row["match"] == "MISMATCH"
            phase.advance()
    result.files, result.counts, result.statuses = len(inputs.files), dict(counts), dict(statuses)
    result.metrics = _metrics(predictor, labelled, threshold)
    return result


def overlay_name(file: Path, *, prefix: str = "") -> str:
    """The Grad-CAM overlay's file name for ``file``: ``PREFIX<stem>_gradcam.png``, its stem shortened
    (with a short hash, so names stay distinct) where the whole would pass the file system's 255 bytes."""
    return short_name(file.stem, "_gradcam.png", prefix=prefix)


def explain_method(predictor: Predictor) -> str:
    """How ``--explain`` explains with ``predictor`` (the CAM from the graph, or Grad-CAM through torch).

    Raises:
        DefectlensError: saying why it cannot (no feature output, and torch missing or no weights).
    """
    from defectlens.explain.maps import method, unavailable

    found = method(predictor)
    if found is None:
        raise DefectlensError(f"--explain: {unavailable(predictor)}")
    return found


def _with_overlay(predictor: Predictor, file: Path, pred: Prediction, path: Path) -> Prediction:
    from defectlens.explain.maps import save_overlay

    try:
        save_overlay(predictor, file, path, target=pred.prediction)
    except OSError as exc:
        raise output_error(path, exc) from None
    return Prediction(**{**pred.__dict__, "extra": {**pred.extra, "overlay": str(path)}})


class _CsvSink:
    """Writes CSV rows one at a time, each flushed whole, so a crash keeps every row already decided.

    Every text cell goes through :func:`~defectlens.core.text.csv_cell` (no spreadsheet formula; the
    bytes of a name that is not UTF-8 shown as ``\\xNN``). When a write fails (a full disk, a file-size
    limit, an I/O error) the file is cut back to the end of the last complete row, so a half row can
    never be read as a row, and the error names the file and the reason.
    """

    def __init__(self, path: Path | None):
        self.path = path
        self._fh: Any = None
        self._columns: list[str] | None = None
        self._good = 0  # bytes of the file that hold complete rows
        self._rows = 0

    def __enter__(self) -> _CsvSink:
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fh = open_output(self.path)
            except OSError as exc:
                raise output_error(self.path, exc) from None
        return self

    def write(self, row: dict[str, Any]) -> None:
        if self._fh is None:
            return
        text = io.StringIO()
        writer = csv.writer(text)
        if self._columns is None:
            self._columns = list(row)
            writer.writerow(self._columns)
        writer.writerow([csv_cell(row.get(c, "")) for c in self._columns])
        data = text.getvalue().encode("utf-8")
        try:
            write_all(self._fh, data)
        except OSError as exc:
            self._cut_back()
            raise output_error(self.path, exc, after=f"its {self._rows} complete rows are kept") from None
        self._rows += 1
        self._good += len(data)

    def _cut_back(self) -> None:
        with contextlib.suppress(OSError):
            self._fh.truncate(self._good)

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):  # every byte was flushed (or cut back) row by row already
                self._fh.close()


def predictions(
    predictor: Predictor,
    files: Sequence[F],
    problems: Mapping[F, str],
    *,
    read: Callable[[F], Any] = str,
    threshold: float | None = None,
    batch_size: int = 16,
) -> Iterator[Prediction]:
    """One prediction per file, in order, under the per-file error rules of ``predict DIR`` (the Ray
    engine of :mod:`defectlens.workflows.archive` decides through this too).

    A file in ``problems`` (a FIFO, a dangling symlink...) gets its error row without being opened; the
    others go through :meth:`Predictor.predict_many`, named ``str(file)`` and decoded from ``read(file)``
    (the path; or the file's bytes, read elsewhere), so an unreadable file is an error row with its
    reason and the rest go on. The threshold is checked here, when called, not at the first row.
    """
    t = predictor.spec.threshold if threshold is None else threshold
    readable = ((str(f), read(f)) for f in files if f not in problems)
    results = iter(predictor.predict_many(readable, batch_size=batch_size, threshold=threshold))
    return (Prediction.error(str(f), problems[f], threshold=t) if f in problems else next(results) for f in files)
