"""Inference benchmark: end-to-end single-image latency and batch throughput, ONNX Runtime vs torch.

"End to end" starts from an encoded image file on disk and includes reading, decoding,
preprocessing, inference and the decision, i.e. exactly :meth:`Predictor.predict`. Throughput is
measured both for the model alone (preprocessed batches) and end to end (:meth:`predict_many`).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from defectlens.core.errors import DefectlensError
from defectlens.core.machine import describe_machine
from defectlens.core.spec import ModelSpec
from defectlens.inference.predictor import Predictor

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def _percentiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {f"p{q}": round(float(np.percentile(a, q)), 3) for q in (50, 95, 99)} | {"mean": round(float(a.mean()), 3)}


def _images(folder: str | Path | None, spec: ModelSpec, tmp: Path, limit: int = 64) -> list[Path]:
    if folder is not None:
        files = sorted(f for f in Path(folder).rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)[:limit]
        if not files:
            raise DefectlensError(f"{folder}: no image files to benchmark on")
        return files
    from PIL import Image

    rng = np.random.default_rng(0)
    files = []
    for i in range(8):  # smooth random textures at the model's input size, saved as JPEG like a line camera's
        base = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        img = Image.fromarray(base).resize((spec.input_size, spec.input_size), Image.Resampling.BICUBIC)
        files.append(tmp / f"bench_{i}.jpg")
        img.save(files[-1], quality=90)
    return files


def _latency(predictor: Predictor, files: list[Path], repeats: int, warmup: int) -> list[float]:
    for i in range(warmup):
        predictor.predict(str(files[i % len(files)]))
    out = []
    for i in range(repeats):
        start = time.perf_counter()
        predictor.predict(str(files[i % len(files)]))
        out.append((time.perf_counter() - start) * 1000.0)
    return out


def _throughput(
    predictor: Predictor, files: list[Path], batch: np.ndarray, bs: int, seconds: float
) -> dict[str, float]:
    x = np.repeat(batch, -(-bs // len(batch)), axis=0)[:bs]
    predictor.logits(x)  # warm-up
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        predictor.logits(x)
        n += bs
    model_only = n / (time.perf_counter() - start)
    paths = [str(files[i % len(files)]) for i in range(max(bs * 4, 32))]
    start = time.perf_counter()
    for _ in predictor.predict_many(paths, batch_size=bs):
        pass
    e2e = len(paths) / (time.perf_counter() - start)
    return {"model_only_img_s": round(model_only, 1), "end_to_end_img_s": round(e2e, 1)}


def run_benchmark(
    model: str | Path,
    *,
    images: str | Path | None = None,
    batch_sizes: tuple[int, ...] = (1, 8, 32),
    threads: int | None = None,
    repeats: int = 300,
    seconds: float = 2.0,
    compare_torch: bool = True,
) -> dict[str, Any]:
    """Benchmark a bundle with ONNX Runtime (and eager torch from its weights).

    Args:
        model: a ``.dlens`` bundle.
        images: folder of encoded images (default: synthetic JPEGs at the input size).
        batch_sizes: batch sizes for throughput.
        threads: intra-op threads for both runtimes (None: their defaults).
        repeats: timed single-image predictions (torch gets a quarter, it is the slow reference).
        seconds: time spent per batch size on model-only throughput.
        compare_torch: also time eager torch.
    """
    backends = ["onnx", "torch"] if compare_torch else ["onnx"]
    result: dict[str, Any] = {
        "model": str(model),
        "machine": describe_machine(),
        "threads": threads,
        "batch_sizes": list(batch_sizes),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name in backends:
            predictor = Predictor.load(model, backend=name, threads=threads)
            files = _images(images, predictor.spec, Path(tmp))
            batch = np.stack([predictor.preprocess(str(f)) for f in files[:32]])
            n = repeats if name == "onnx" else max(30, repeats // 4)
            entry: dict[str, Any] = {
                "backend": predictor.backend,
                "single_image_end_to_end_ms": _percentiles(_latency(predictor, files, n, warmup=10)),
                "single_image_model_only_ms": _percentiles(_model_latency(predictor, batch[:1], n)),
                "throughput": {str(bs): _throughput(predictor, files, batch, bs, seconds) for bs in batch_sizes},
            }
            result[name] = entry
        result["images"] = str(images) if images else f"{len(files)} synthetic JPEGs at the input size"
        result["model_id"] = predictor.model_id
        result["arch"] = predictor.spec.arch
        result["input_size"] = predictor.spec.input_size
    if compare_torch:
        on, to = result["onnx"], result["torch"]
        result["speedup_vs_torch"] = {
            "end_to_end_p50": round(
                to["single_image_end_to_end_ms"]["p50"] / on["single_image_end_to_end_ms"]["p50"], 2
            ),
            "model_only_p50": round(
                to["single_image_model_only_ms"]["p50"] / on["single_image_model_only_ms"]["p50"], 2
            ),
        }
    return result


def _model_latency(predictor: Predictor, one: np.ndarray, repeats: int) -> list[float]:
    predictor.logits(one)
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        predictor.logits(one)
        out.append((time.perf_counter() - start) * 1000.0)
    return out
