"""Seed spread of a recipe: every run of ``run_real.py --seeds N`` and its statistics per CPU model.

A recipe's test accuracy moves with the training seed and with the CPU family (different float kernels
turn into different weights after a few epochs). ``<dataset>.json`` keeps every seeded run under
``seeds.runs`` (each with its CPU model, configuration and weight digest) and the statistics per CPU model
under ``seeds.by_cpu``; the README's seed table and ``defectlens demo``'s expected range are read from them.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from pathlib import Path
from typing import Any

#: Figures summarised over seeds (keys of a run's ``test`` metrics).
FIGURES = ("accuracy", "defect_recall", "macro_f1")
#: The packaged file ``defectlens demo`` reads its expected range from.
EXPECTED = Path(__file__).resolve().parents[1] / "src" / "defectlens" / "recipes" / "expected.json"


def weights_digest(checkpoint: Path) -> str:
    """SHA-256 over the checkpoint's model tensors in key order: equal digests mean bit-identical weights."""
    import torch

    from defectlens.core.checkpoint import read_checkpoint

    state = read_checkpoint(checkpoint)["state_dict"]
    h = hashlib.sha256()
    for key in sorted(state):
        h.update(key.encode())
        h.update(state[key].detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def stats(values: list[float]) -> dict[str, float | int]:
    """n, mean, sample standard deviation (0 for one value), min and max."""
    return {
        "n": len(values),
        "mean": statistics.fmean(values),
        "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
    }


def by_cpu(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The statistics of each figure over the runs of each CPU model (one run per seed: the newest)."""
    out: dict[str, dict[str, Any]] = {}
    for cpu in sorted({r["cpu"] for r in runs}):
        latest = {r["seed"]: r for r in runs if r["cpu"] == cpu}  # a re-run seed replaces the earlier one
        rows = [latest[s] for s in sorted(latest)]
        entry: dict[str, Any] = {"seeds": sorted(latest)}
        for key in FIGURES:
            values = [r["test"][key] for r in rows if r["test"].get(key) is not None]
            if values:
                entry[key] = stats(values)
        entry["train_seconds_mean"] = round(statistics.fmean(r["train_seconds"] for r in rows), 1)
        digests = [r.get("weights_sha256") for r in rows]
        entry["distinct_weights"] = len(set(digests))
        out[cpu] = entry
    return out


def done(
    runs: list[dict[str, Any]], *, cpu: str, seed: int, config: dict[str, Any], defaults: dict[str, Any] | None = None
) -> bool:
    """Whether ``seed`` of this recipe ``config`` already ran on this CPU model. A setting a run's record lacks
    counts as ``defaults`` gives it (a setting added since, at its default, is what that run did)."""
    base = defaults or {}
    return any(r["cpu"] == cpu and r["seed"] == seed and {**base, **r["config"]} == {**base, **config} for r in runs)


def spread_cell(entry: dict[str, Any], key: str) -> str:
    """``mean ± sd [min-max]`` of one figure, or ``–``."""
    s = entry.get(key)
    if not s:
        return "–"
    return f"{s['mean']:.4f} ± {s['sd']:.4f} [{s['min']:.4f}-{s['max']:.4f}]"


def seed_table(results: dict[str, dict[str, Any]]) -> str:
    """Markdown table: per dataset and CPU model, N seeds, test accuracy and defect recall mean ± sd [range]."""
    lines = [
        "| dataset | CPU | seeds | test accuracy mean ± sd [min-max] | defect recall mean ± sd [min-max] "
        "| train time (mean) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, res in results.items():
        for cpu, entry in (res.get("seeds") or {}).get("by_cpu", {}).items():
            lines.append(
                f"| {name} | {cpu} | {len(entry['seeds'])} ({min(entry['seeds'])}-{max(entry['seeds'])}) "
                f"| {spread_cell(entry, 'accuracy')} | {spread_cell(entry, 'defect_recall')} "
                f"| {entry['train_seconds_mean'] / 60:.1f} min |"
            )
    if len(lines) == 2:
        return "No seed runs recorded yet: `python benchmarks/run_real.py --datasets DATASET --seeds 5` records them."
    return "\n".join(lines)


def write_expected(recipe: str, spread: dict[str, dict[str, Any]], path: Path = EXPECTED) -> None:
    """Record the recipe's test-accuracy spread per CPU model where ``defectlens demo`` reads it."""
    data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    data[recipe] = {
        cpu: {"seeds": e["seeds"], **{k: round(v, 4) for k, v in e["accuracy"].items() if k != "n"}}
        for cpu, e in spread.items()
        if "accuracy" in e
    }
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
