"""Two models on the same images: the paired table, the exact McNemar test and each model's figures.

Owns :func:`mcnemar_exact` (the two-sided exact binomial test on the discordant pairs, in integers with
:func:`math.comb`: no SciPy), :func:`paired_table`, :func:`model_figures` (accuracy, defect recall,
false-alarm rate with Clopper-Pearson intervals from :func:`~defectlens.evaluation.metrics.exact_interval`,
and the expected cost per part with a percentile-bootstrap interval) and :func:`verdict`, the
champion-vs-challenger rule. Numbers in, numbers out: ``defectlens compare``
(:mod:`defectlens.workflows.compare`) scores the images and decides which are defects.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from defectlens.evaluation.metrics import exact_interval

#: The significance level of the paired test in the promotion rule.
ALPHA = 0.05
#: The promotion rule, as the output and the README state it.
RULE = (
    "promote only if the challenger's defect recall on the paired images is not lower than the champion's "
    f"AND the exact McNemar test does not show the challenger worse (p < {ALPHA:g} with the challenger "
    "making more errors than the champion on the paired images)"
)
PROMOTE, KEEP = "promote", "keep champion"


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: the binomial test of ``b`` successes in ``b + c`` trials at 1/2.

    ``b`` and ``c`` are the discordant pairs (one model right, the other wrong, either way round). The
    distribution is symmetric, so the p-value is twice the smaller tail, capped at 1 (what
    ``scipy.stats.binomtest(b, b + c, 0.5)`` gives); no discordant pair gives 1.
    """
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1))
    return float(min(Fraction(1), Fraction(2 * tail, 2**n)))


@dataclass(frozen=True)
class PairedTable:
    """Correct/incorrect of two models on the same images (those both decided).

    ``champion_only``: the champion right, the challenger wrong (McNemar's b); ``challenger_only`` the
    reverse (c). ``p_value``: :func:`mcnemar_exact` of the two.
    """

    n: int
    both_right: int
    champion_only: int
    challenger_only: int
    both_wrong: int
    p_value: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def paired_table(champion_right: Any, challenger_right: Any) -> PairedTable:
    """The 2x2 table of two boolean arrays (one entry per image, the same images in the same order)."""
    a = np.asarray(champion_right, dtype=bool)
    c = np.asarray(challenger_right, dtype=bool)
    if a.shape != c.shape:
        raise ValueError(f"the two models' decisions cover different images: {a.shape} vs {c.shape}")
    b_only, c_only = int((a & ~c).sum()), int((~a & c).sum())
    return PairedTable(
        n=int(a.size), both_right=int((a & c).sum()), champion_only=b_only, challenger_only=c_only,
        both_wrong=int((~a & ~c).sum()), p_value=mcnemar_exact(b_only, c_only),
    )  # fmt: skip


def proportion(k: int, n: int) -> dict[str, Any]:
    """``k`` of ``n`` as ``{"k", "n", "value", "ci"}``; value and interval None when ``n`` is 0."""
    if n == 0:
        return {"k": 0, "n": 0, "value": None, "ci": None}
    return {"k": int(k), "n": int(n), "value": k / n, "ci": exact_interval(int(k), int(n))}


def model_figures(
    truth_defect: Any,
    called_defect: Any,
    right: Any,
    *,
    cost_fn: float,
    cost_fp: float,
    bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """One model's figures on the images it decided, each with its 95 % interval.

    Args:
        truth_defect: per image, whether its label is a defect (None: the task names no good class, so
            defect recall, false alarms and cost are undefined).
        called_defect: per image, whether the model called it a defect (None with ``truth_defect``).
        right: per image, whether the decided class is the label.
        cost_fn: cost of a missed defect; cost_fp: cost of a false alarm (per part).
        bootstrap: resamples of the cost's percentile interval (0: no interval).
    """
    ok = np.asarray(right, dtype=bool)
    out: dict[str, Any] = {"images": int(ok.size), "accuracy": proportion(int(ok.sum()), int(ok.size))}
    if truth_defect is None or called_defect is None:
        out.update(defect_recall=proportion(0, 0), false_alarm_rate=proportion(0, 0), expected_cost=None)
        return out
    t, d = np.asarray(truth_defect, dtype=bool), np.asarray(called_defect, dtype=bool)
    out["defect_recall"] = proportion(int((t & d).sum()), int(t.sum()))
    out["false_alarm_rate"] = proportion(int((~t & d).sum()), int((~t).sum()))
    per_part = np.where(t & ~d, cost_fn, 0.0) + np.where(~t & d, cost_fp, 0.0)
    cost: dict[str, Any] = {"value": float(per_part.mean()) if per_part.size else None, "ci": None}
    if bootstrap and per_part.size:
        idx = np.random.default_rng(seed).integers(0, per_part.size, size=(bootstrap, per_part.size))
        cost["ci"] = [float(x) for x in np.percentile(per_part[idx].mean(axis=1), [2.5, 97.5])]
    out["expected_cost"] = {**cost, "cost_fn": float(cost_fn), "cost_fp": float(cost_fp)}
    return out


def verdict(table: PairedTable, champion_recall: float | None, challenger_recall: float | None) -> dict[str, Any]:
    """The decision under :data:`RULE` and the reasons, from the paired table and both defect recalls
    on the paired images (None: no defect among them, or no good class; recall then cannot block)."""
    reasons: list[str] = []
    if table.n == 0:
        reasons.append(
            "no image was decided by both models (every one needs review by one of them): nothing shows the "
            "challenger is not worse"
        )
        return {"decision": KEEP, "reasons": reasons, "rule": RULE, "alpha": ALPHA}
    recall_ok = True
    if champion_recall is None or challenger_recall is None:
        reasons.append("defect recall is undefined on the paired images (no defect among them, or no good class)")
    elif challenger_recall < champion_recall:
        recall_ok = False
        reasons.append(f"challenger's defect recall {challenger_recall:.4f} < champion's {champion_recall:.4f}")
    else:
        reasons.append(f"challenger's defect recall {challenger_recall:.4f} >= champion's {champion_recall:.4f}")
    b, c = table.champion_only, table.challenger_only
    worse = table.p_value < ALPHA and b > c
    errors = f"challenger {b} errors the champion avoided, champion {c} the challenger avoided"
    if worse:
        reasons.append(f"the paired test shows the challenger worse: {errors}, exact McNemar p = {table.p_value:.4g}")
    else:
        reasons.append(f"the paired test does not show the challenger worse: {errors}, p = {table.p_value:.4g}")
    decision = PROMOTE if recall_ok and not worse else KEEP
    return {"decision": decision, "reasons": reasons, "rule": RULE, "alpha": ALPHA}
