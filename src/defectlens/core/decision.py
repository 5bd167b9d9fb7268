"""The decision rule, in one place: calibrated probabilities and the class each image is given.

Every consumer (the Predictor behind the CLI, the web service and the inspector; evaluation and its
report; threshold re-labelling in the user interfaces) decides with these two functions, so a
threshold means the same thing everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from defectlens.core.errors import DefectlensError

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


def check_threshold(threshold: float | None) -> float | None:
    """``threshold`` when it is None or a probability in [0, 1].

    Raises:
        DefectlensError: naming the value (NaN, infinite, outside [0, 1] or not a number); a NaN
            would otherwise call every part good, a threshold over 1 every part good, silently.
    """
    if threshold is None:
        return None
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.number)):
        raise DefectlensError(f"threshold must be a number in [0, 1], got {threshold!r}")
    if not 0.0 <= float(threshold) <= 1.0:  # also false for NaN
        raise DefectlensError(f"threshold must be in [0, 1], got {threshold!r}")
    return float(threshold)


def defect_probability(
    probabilities: Mapping[str, float], *, class_names: Sequence[str], positive_class: str | None
) -> float | None:
    """The one defect probability every surface shows (the CSV, the JSON, the service, the Inspector).

    A binary model with a defect class (``positive_class``): that class's calibrated probability, the
    number its threshold is compared with (equal to 1 - P(good)). Otherwise None: a multi-class spec
    names no good class (NEU's six classes are all defects; a spec's ``positive_class`` on a
    multi-class model names one defect among several), so no single number is "the probability of a
    defect". None also when the row has no probabilities (an error or a frame sent for review).
    """
    if positive_class is None or len(class_names) != 2 or positive_class not in probabilities:
        return None
    return float(probabilities[positive_class])
