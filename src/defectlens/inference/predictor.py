"""Predictor: the one inference path used by evaluation, the CLI, the web service and the GUI.

A Predictor owns a model (ONNX Runtime session or torch module) and its :class:`ModelSpec`; it
preprocesses with :mod:`defectlens.data.images`, applies the calibration temperature and the
decision threshold recorded in the spec, and returns a :class:`Prediction`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from defectlens.data.images import preprocess
from defectlens.models.spec import ModelSpec


@dataclass(frozen=True)
class Prediction:
    """Result for one image."""

    file: str
    prediction: str
    confidence: float
    probabilities: dict[str, float]
    threshold: float | None
    latency_ms: float
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "prediction": self.prediction,
            "confidence": self.confidence,
            "probabilities": self.probabilities,
            "threshold": self.threshold,
            "latency_ms": self.latency_ms,
            **self.extra,
        }


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class Predictor:
    """Run a trained model on images exactly as it was trained.

    Build one with :meth:`load` (bundle, run folder or checkpoint) or :meth:`from_model`.

    Args:
        run_logits: function mapping a float32 batch in [0, 1], shape (N, C, H, W), to logits (N, K).
        spec: the model's spec (preprocessing, classes, threshold, temperature).
        backend: a short name for reports ("onnxruntime" or "torch").
    """

    def __init__(self, run_logits: Callable[[np.ndarray], np.ndarray], spec: ModelSpec, *, backend: str):
        self._run = run_logits
        self.spec = spec
        self.backend = backend

    @classmethod
    def from_model(cls, model: Any, spec: ModelSpec) -> Predictor:
        """Wrap an in-memory torch Classifier (eval mode, CPU or its current device)."""
        import torch

        model.eval()
        device = next(model.parameters()).device

        def run(batch: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return model(torch.from_numpy(batch).to(device)).float().cpu().numpy()

        return cls(run, spec, backend="torch")

    @classmethod
    def load(cls, path: str | Path, *, backend: str = "auto", threads: int | None = None) -> Predictor:
        """Load from a run folder or ``.pt`` checkpoint (torch backend)."""
        from defectlens.training.checkpoint import load_checkpoint

        model, spec, _ = load_checkpoint(path)
        return cls.from_model(model, spec)

    # -- the pipeline ---------------------------------------------------------------------------

    def preprocess(self, source: Any) -> np.ndarray:
        """One image (path, bytes or PIL image) to a uint8 array (C, H, W)."""
        return preprocess(source, self.spec)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Raw logits (before temperature) for a uint8 batch (N, C, H, W)."""
        x = np.ascontiguousarray(batch, dtype=np.float32) / np.float32(255.0)
        return np.asarray(self._run(x), dtype=np.float32)

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities (softmax of logits / temperature)."""
        return softmax(logits, self.spec.temperature)

    def decide(self, probs: np.ndarray, threshold: float | None = None) -> np.ndarray:
        """Class index per row: binary tasks compare the positive-class probability with the
        threshold; otherwise (or with no threshold) the most probable class wins."""
        t = self.spec.threshold if threshold is None else threshold
        pos = self.spec.positive_index
        if pos is None or t is None or probs.shape[1] != 2:
            return probs.argmax(axis=1)
        return np.where(probs[:, pos] >= t, pos, 1 - pos)

    def predict(self, source: Any, *, threshold: float | None = None, name: str | None = None) -> Prediction:
        """Classify one image (path, bytes or PIL image)."""
        start = time.perf_counter()
        arr = self.preprocess(source)
        probs = self.probabilities(self.logits(arr[None]))
        idx = int(self.decide(probs, threshold)[0])
        latency = (time.perf_counter() - start) * 1000.0
        names = self.spec.class_names
        return Prediction(
            file=name or (str(source) if isinstance(source, (str, Path)) else "<image>"),
            prediction=names[idx],
            confidence=float(probs[0, idx]),
            probabilities={n: float(p) for n, p in zip(names, probs[0], strict=True)},
            threshold=self.spec.threshold if threshold is None else threshold,
            latency_ms=latency,
        )
