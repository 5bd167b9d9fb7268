"""Inference benchmark of a bundle: latency and throughput on every installed backend, FP32 and INT8.

Rows: each installed ONNX runtime (ONNX Runtime, OpenVINO) on the FP32 graph and, when the bundle has
one, on the INT8 graph; and eager torch on the bundle's weights, the reference the speed-ups are
relative to. Per row:

* end-to-end latency of one image (p50/p95/p99): from an encoded file on disk to the decision, i.e.
  exactly :meth:`Predictor.predict` (reading, decoding, preprocessing, inference, decision);
* model-only latency of one preprocessed image;
* throughput in images per second at each batch size, model only (preprocessed batches) and end to end
  (:meth:`Predictor.predict_many` over files);
* decisions on the benchmark images: accuracy when the images sit in class-named folders, and agreement
  with the first row (ONNX Runtime FP32), at the model's stored threshold.

The images are those of a folder when one is given (real parts, decoded at their real size), else
synthetic JPEGs at the model's input size. On a shared machine, every measurement alternates between
the rows in rounds (interleaved A/B), so a burst of load from another process hits every row alike, and
the load average before and after is recorded with the machine.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from defectlens.core.anomaly import subfolder_classes
from defectlens.core.bundle import INT8_FILE, read_bundle
from defectlens.core.errors import DefectlensError
from defectlens.core.machine import describe_machine
from defectlens.core.progress import Progress
from defectlens.core.spec import ModelSpec
from defectlens.inference.backends import installed, installed_runtimes, resolve_threads
from defectlens.inference.predictor import BACKENDS, Predictor

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
#: Torch is the slow reference: it gets this fraction of the timed repetitions.
TORCH_SHARE = 4


@dataclass
class _Row:
    """One backend and precision under test, and what was measured on it."""

    runtime: str
    precision: str
    predictor: Predictor
    e2e_ms: list[float] = field(default_factory=list)
    model_ms: list[float] = field(default_factory=list)
    counts: dict[int, list[float]] = field(default_factory=dict)  # batch size -> [images, seconds]
    e2e_rate: dict[int, float] = field(default_factory=dict)
    decisions: list[str] = field(default_factory=list)

    @property
    def share(self) -> int:
        return TORCH_SHARE if self.runtime == "torch" else 1


def _percentiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {f"p{q}": round(float(np.percentile(a, q)), 3) for q in (50, 95, 99)} | {"mean": round(float(a.mean()), 3)}


def _images(folder: str | Path | None, spec: ModelSpec, tmp: Path, limit: int) -> list[Path]:
    if folder is not None:
        files = sorted(f for f in Path(folder).rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DefectlensError(f"{folder}: no image files to benchmark on")
        step = max(1, len(files) // limit)  # evenly spaced: every class folder is represented
        return files[::step][:limit]
    from PIL import Image

    rng = np.random.default_rng(0)
    files = []
    for i in range(8):  # smooth random textures at the model's input size, saved as JPEG like a line camera's
        base = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        img = Image.fromarray(base).resize((spec.input_size, spec.input_size), Image.Resampling.BICUBIC)
        files.append(tmp / f"bench_{i}.jpg")
        img.save(files[-1], quality=90)
    return files


def bench_rows(model: str | Path, backends: tuple[str, ...] | None = None) -> list[tuple[str, str]]:
    """The (runtime, precision) pairs a benchmark of ``model`` measures: every installed ONNX runtime on each
    graph the bundle holds, then torch; ``backends`` narrows it to those runtimes."""
    wanted = backends or (*installed_runtimes(), "torch")
    unknown = set(wanted) - set(BACKENDS[1:])
    if unknown:
        raise DefectlensError(f"unknown backend {sorted(unknown)[0]!r}; choose from {', '.join(BACKENDS[1:])}")
    precisions = ("fp32", "int8") if INT8_FILE in read_bundle(model).members else ("fp32",)
    rows = [(r, p) for p in precisions for r in wanted if r != "torch" and installed(r)]
    return rows + ([("torch", "fp32")] if "torch" in wanted and installed("torch") else [])


def _timed(fn: Callable[..., object], *args: Any, **kwargs: Any) -> float:
    """Milliseconds ``fn(*args, **kwargs)`` took (a generator is consumed)."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    if hasattr(out, "__next__"):
        for _ in out:  # type: ignore[attr-defined]
            pass
    return (time.perf_counter() - start) * 1000.0


def _latency(
    rows: list[_Row], files: list[Path], one: np.ndarray, repeats: int, rounds: int, progress: Progress
) -> None:
    """Single-image end-to-end and model-only latency, alternating between rows every round."""
    with progress.phase("one-image latency", total=2 * sum(repeats // r.share for r in rows), unit="images") as ph:
        for r in range(rounds):
            for row in rows:
                n = max(1, repeats // (rounds * row.share))
                for i in range(n):
                    f = str(files[(r * n + i) % len(files)])
                    row.e2e_ms.append(_timed(row.predictor.predict, f))
                    row.model_ms.append(_timed(row.predictor.logits, one))
                ph.advance(2 * n)


def _throughput(
    rows: list[_Row], batch: np.ndarray, sizes: tuple[int, ...], seconds: float, rounds: int, progress: Progress
) -> None:
    """Model-only images per second at each batch size, alternating between rows every round."""
    with progress.phase("batch throughput", total=len(sizes) * rounds * len(rows), unit="runs") as ph:
        for bs in sizes:
            x = np.repeat(batch, -(-bs // len(batch)), axis=0)[:bs]
            for row in rows:
                row.predictor.logits(x)  # warm-up: first call at a new shape
                row.counts[bs] = [0.0, 0.0]
            for _ in range(rounds):
                for row in rows:
                    start, n = time.perf_counter(), 0
                    while time.perf_counter() - start < seconds / rounds:
                        row.predictor.logits(x)
                        n += bs
                    row.counts[bs][0] += n
                    row.counts[bs][1] += time.perf_counter() - start
                    ph.advance()


def _end_to_end(rows: list[_Row], files: list[Path], sizes: tuple[int, ...], progress: Progress) -> None:
    """Decisions on every benchmark image (one pass per row) and end-to-end images per second per batch size."""
    paths = [str(f) for f in files]
    total = sum((len(paths) + sum(max(2 * bs, 32) for bs in sizes)) // row.share for row in rows)
    with progress.phase("end-to-end batches", total=total, unit="images") as ph:
        for row in rows:
            mine = paths[:: row.share]  # the slow reference decides every share-th image
            row.decisions = [p.prediction for p in row.predictor.predict_many(mine, batch_size=32)]
            ph.advance(len(mine))
            for bs in sizes:
                chunk = [paths[i % len(paths)] for i in range(max(2 * bs, 32) // row.share)]
                ms = _timed(row.predictor.predict_many, chunk, batch_size=bs)
                row.e2e_rate[bs] = round(len(chunk) / (ms / 1000.0), 1)
                ph.advance(len(chunk))


def _labels(files: list[Path], spec: ModelSpec) -> list[str | None]:
    """Each file's class when it sits in a folder named like one of the model's classes (or, for an anomaly
    model, like a defect kind beside its normal class's folder)."""
    classes = subfolder_classes(spec.class_names, {f.parent.name for f in files})
    return [classes.get(f.parent.name) for f in files]


def _row_report(row: _Row, reference: _Row, labels: list[str | None]) -> dict[str, Any]:
    mine = labels[:: row.share]
    known = [(d, y) for d, y in zip(row.decisions, mine, strict=True) if y is not None]
    ref = reference.decisions[:: row.share // reference.share]
    agree = np.mean([a == b for a, b in zip(row.decisions, ref, strict=True)])
    out: dict[str, Any] = {
        "backend": row.predictor.backend,
        "runtime": row.runtime,
        "precision": row.precision,
        "end_to_end_ms": _percentiles(row.e2e_ms),
        "model_only_ms": _percentiles(row.model_ms),
        "throughput": {
            str(bs): {"model_only_img_s": round(n / s, 1), "end_to_end_img_s": row.e2e_rate[bs]}
            for bs, (n, s) in row.counts.items()
        },
        "accuracy": round(float(np.mean([d == y for d, y in known])), 4) if known else None,
        "agreement_with_first_row": round(float(agree), 4),
    }
    return out


def run_benchmark(
    model: str | Path,
    *,
    images: str | Path | None = None,
    batch_sizes: tuple[int, ...] = (1, 8, 32),
    threads: int | None = None,
    repeats: int = 100,
    seconds: float = 1.0,
    backends: tuple[str, ...] | None = None,
    compare_torch: bool = True,
    max_images: int = 200,
    rounds: int = 5,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Benchmark a bundle on every installed backend (see the module docstring for what is measured).

    Args:
        model: a ``.dlens`` bundle.
        images: folder of encoded images, class-named subfolders for accuracy (default: synthetic JPEGs).
        batch_sizes: batch sizes for throughput.
        threads: cores a batch is spread over, for every backend (None: every usable core).
        repeats: timed single-image predictions per row (torch gets a quarter: it is the slow reference).
        seconds: time per row and batch size on model-only throughput.
        backends: runtimes to measure (default: every installed one, and torch).
        compare_torch: also time eager torch (when ``backends`` does not say).
        max_images: most images of the folder used (evenly spaced over it).
        rounds: how many times the measurements alternate between rows.
        progress: receives a phase per step (the CLI shows it).
    """
    progress = progress or Progress()
    chosen = backends or (*installed_runtimes(), *(("torch",) if compare_torch else ()))
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        pairs = bench_rows(model, chosen)
        with progress.phase("loading backends", total=len(pairs), unit="backends") as ph:
            rows = []
            for runtime, precision in pairs:
                p = Predictor.load(model, backend=runtime, threads=threads, precision=precision)
                rows.append(_Row(runtime, precision, p))
                ph.advance()
        spec = rows[0].predictor.spec
        files = _images(images, spec, Path(tmp), max_images)
        batch = np.stack([rows[0].predictor.preprocess(str(f)) for f in files[:32]])
        _end_to_end(rows, files, batch_sizes, progress)
        _latency(rows, files, batch[:1], repeats, rounds, progress)
        _throughput(rows, batch, batch_sizes, seconds, rounds, progress)
    labels = _labels(files, spec)
    described = f"{len(files)} images of {images}" if images else f"{len(files)} synthetic JPEGs at the input size"
    result = _report(model, rows, labels, described)
    result.update(
        threads=resolve_threads(threads),
        batch_sizes=list(batch_sizes),
        load_average={"before": [round(v, 2) for v in load_before], "after": [round(v, 2) for v in os.getloadavg()]},
    )
    return result


def _report(model: str | Path, rows: list[_Row], labels: list[str | None], images: str) -> dict[str, Any]:
    first = rows[0].predictor
    result: dict[str, Any] = {
        "model": str(model),
        "model_id": first.model_id,
        "arch": first.spec.arch,
        "input_size": first.spec.input_size,
        "in_channels": first.spec.in_channels,
        "machine": describe_machine(),
        "images": images,
        "labelled_images": sum(y is not None for y in labels),
        "rows": [_row_report(row, rows[0], labels) for row in rows],
    }
    if first.meta.get("int8"):
        q = first.meta["int8"]
        keep = ("accuracy_fp32", "accuracy_int8", "newly_wrong", "agreement", "images", "accepted", "rule")
        result["int8_validation"] = {k: q.get(k) for k in keep}
    torch_row = next((r for r in result["rows"] if r["runtime"] == "torch"), None)
    if torch_row:
        result["speedup_vs_torch"] = {
            f"{r['backend']}": {
                "end_to_end_p50": round(torch_row["end_to_end_ms"]["p50"] / r["end_to_end_ms"]["p50"], 2),
                "model_only_p50": round(torch_row["model_only_ms"]["p50"] / r["model_only_ms"]["p50"], 2),
            }
            for r in result["rows"]
            if r is not torch_row
        }
    return result
