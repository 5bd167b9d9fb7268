"""The decision rule, in one place: calibrated probabilities and the class each image is given.

Every consumer (the Predictor behind the CLI, the web service and the inspector; evaluation and its
report; threshold re-labelling in the user interfaces) decides with these two functions, so a
threshold means the same thing everywhere.
"""

from __future__ import annotations

import numpy as np

#: How a binary operating threshold is chosen on validation: best defect F1, the highest threshold
#: reaching a defect-recall target, or the lowest expected cost (see defectlens.evaluation.threshold).
THRESHOLD_METHODS = ("f1", "recall", "cost")


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Class probabilities of ``logits`` (N, K) scaled by the calibration ``temperature``."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def decide(probs: np.ndarray, *, positive_index: int | None, threshold: float | None) -> np.ndarray:
    """Class index per row.

    A binary task with a defect class and a threshold calls a part defective when the defect
    probability reaches the threshold (``p >= threshold``); otherwise the most probable class wins.
    """
    probs = np.asarray(probs)
    if positive_index is None or threshold is None or probs.ndim != 2 or probs.shape[1] != 2:
        return probs.argmax(axis=1)
    return np.where(probs[:, positive_index] >= threshold, positive_index, 1 - positive_index)
