"""Is an ensemble of the recipe's seeds worth shipping? Judged on validation by a rule fixed beforehand.

Issue #32 lists "an ensemble of seeds exported as one graph" among the levers for ELPV. The seed runs of
``run_real.py --seeds N`` already hold what is needed to judge it without training anything: each run's
``eval/predictions.csv`` has the calibrated defect probability of every validation and test image. The
ensemble's score is the mean of the N models' defect probabilities; its threshold is chosen on
validation by the recipe's own rule (max defect F1, ``choose_threshold``).

The rule, written before any ensemble figure was seen (test is computed only after it):
    adopt the N-seed ensemble as a recipe candidate only if its validation macro-F1 is at least
    ``BAR`` (0.01) above the mean validation macro-F1 of the single seeds at their own thresholds.
A candidate would then cost N times the latency of one model (one graph holding N networks), so the
bar asks for a gain larger than the seed spread's own noise on 264 validation images (one image is
0.4 points).

    python benchmarks/seed_ensemble.py --dataset elpv            # all recorded seeds on this CPU
    python benchmarks/seed_ensemble.py --dataset elpv --sizes 3,5

Writes ``ensemble`` into ``benchmarks/results/<dataset>.json`` (per CPU model) and prints a table.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from machine import describe
from seed_spread import weights_digest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
WORK = RESULTS / "work"
#: Validation macro-F1 gain over the seeds' mean that an ensemble must show to be adopted.
BAR = 0.01


def run_folder(dataset: str, run: dict[str, Any]) -> Path:
    """The run folder of one recorded seed run, found by its weight digest (the record keeps no path)."""
    pattern = f"ours-seed{run['seed']}-*"
    for folder in sorted((WORK / dataset / "seeds" / dataset / "runs").glob(pattern), reverse=True):
        best = folder / "best.pt"
        has_eval = best.is_file() and (folder / "eval" / "predictions.csv").is_file()
        if has_eval and weights_digest(best) == run["weights_sha256"]:
            return folder
    raise SystemExit(f"seed {run['seed']}: no run folder under {WORK / dataset} with weights {run['weights_sha256']}")


def predictions(folder: Path) -> dict[str, dict[str, tuple[int, float]]]:
    """split -> path -> (1 if the label is the defect class, the model's defect probability)."""
    out: dict[str, dict[str, tuple[int, float]]] = {}
    with (folder / "eval" / "predictions.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    positive = _positive(folder)
    for row in rows:
        out.setdefault(row["split"], {})[row["path"]] = (int(row["label"] == positive), float(row[f"p_{positive}"]))
    return out


def _positive(folder: Path) -> str:
    metrics = json.loads((folder / "eval" / "metrics.json").read_text())
    name = metrics.get("positive_class") or (metrics.get("spec") or {}).get("positive_class")
    return str(name or "defective")


def figures(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    """Accuracy, macro-F1 and defect recall of the decisions ``p >= threshold``."""
    from sklearn.metrics import accuracy_score, f1_score, recall_score

    d = (p >= threshold).astype(int)
    return {
        "accuracy": float(accuracy_score(y, d)),
        "macro_f1": float(f1_score(y, d, average="macro")),
        "defect_recall": float(recall_score(y, d)),
    }


def judge(members: list[dict[str, dict[str, tuple[int, float]]]]) -> dict[str, Any]:
    """Single seeds and their ensemble on validation (threshold by max F1 there), then on test."""
    from defectlens.evaluation.threshold import choose_threshold

    def arrays(split: str, which: list[int]) -> tuple[np.ndarray, np.ndarray]:
        paths = sorted(members[0][split])
        y = np.array([members[0][split][k][0] for k in paths])
        p = np.mean([[members[i][split][k][1] for k in paths] for i in which], axis=0)
        return y, p

    singles, chosen = [], {}
    for i in range(len(members)):
        yv, pv = arrays("val", [i])
        chosen[i] = choose_threshold(yv, pv, method="f1").threshold
        singles.append(figures(yv, pv, chosen[i]))
    yv, pv = arrays("val", list(range(len(members))))
    t = choose_threshold(yv, pv, method="f1").threshold
    val = figures(yv, pv, t)
    mean_single = float(np.mean([s["macro_f1"] for s in singles]))
    adopt = val["macro_f1"] >= mean_single + BAR
    yt, pt = arrays("test", list(range(len(members))))  # computed after the decision above
    single_test = [figures(*arrays("test", [i]), chosen[i]) for i in range(len(members))]
    return {
        "members": len(members),
        "threshold": t,
        "val": val,
        "val_single_macro_f1_mean": mean_single,
        "rule": f"adopt iff ensemble val macro-F1 >= mean single val macro-F1 + {BAR}",
        "adopted": bool(adopt),
        "test": figures(yt, pt, t),
        "test_single_accuracy_mean": float(np.mean([s["accuracy"] for s in single_test])),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="elpv")
    p.add_argument("--sizes", default="", help="ensemble sizes (first k seeds); default: all recorded seeds")
    args = p.parse_args()
    path = RESULTS / f"{args.dataset}.json"
    result = json.loads(path.read_text())
    cpu = describe()["cpu"]
    runs = {r["seed"]: r for r in result.get("seeds", {}).get("runs", []) if r["cpu"] == cpu}
    if len(runs) < 2:
        sys.exit(f"{path}: fewer than 2 seed runs on {cpu}; run run_real.py --datasets {args.dataset} --seeds N first")
    seeds = sorted(runs)
    members = [predictions(run_folder(args.dataset, runs[s])) for s in seeds]
    sizes = [int(k) for k in args.sizes.split(",") if k] or [len(seeds)]
    out = {str(k): judge(members[:k]) | {"seeds": seeds[:k]} for k in sizes if 2 <= k <= len(seeds)}
    result.setdefault("ensemble", {})[cpu] = {"command": " ".join(["python", *sys.argv]), "by_size": out}
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print("| members | val macro-F1 (ensemble / mean single) | adopted | test accuracy (ensemble / mean single) |")
    print("| --- | --- | --- | --- |")
    for k, r in out.items():
        print(
            f"| {k} | {r['val']['macro_f1']:.4f} / {r['val_single_macro_f1_mean']:.4f} | {r['adopted']} "
            f"| {r['test']['accuracy']:.4f} / {r['test_single_accuracy_mean']:.4f} |"
        )


if __name__ == "__main__":
    main()
