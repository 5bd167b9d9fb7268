"""Recipe search for ELPV on the validation split only (the test split is never evaluated).

Trains variants of ``configs/elpv.yaml`` on the demo's split (``data/elpv``, from ``make demo`` or
``bench_demo.py``) and records each run's best validation macro-F1 and accuracy, and its curve, in
``results/elpv-search.json``. Meant for a GPU (it picks CUDA when there is one): on an H200 each
variant took 21 to 211 s; on the 2-core CPU the default recipe alone trains for about 5 minutes and
the whole-network variants far longer. Three seeds of the default recipe are in the list so that a
variant's gain can be read against seed-to-seed noise.

Usage: ``python benchmarks/search_elpv.py [NAME ...]`` from the repository root (no names: all).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from machine import describe

RESULTS = Path(__file__).resolve().parent / "results" / "elpv-search.json"

# Fine-tune everything (no frozen, cached stages): what the CPU budget rules out in the demo.
_FULL: dict[str, Any] = {"freeze_stages": 0, "cache_frozen": False}
VARIANTS: dict[str, dict[str, Any]] = {
    "base": {},
    "full_300_flips_20ep": {**_FULL, "input_size": 300, "epochs": 20},
    "full_300_standard_30ep": {**_FULL, "input_size": 300, "epochs": 30, "augment": "standard"},
    "freeze2_cache": {"freeze_stages": 2},
    "full_192_flips_15ep": {**_FULL, "epochs": 15},
    "base_seed1": {"seed": 1},
    "base_seed2": {"seed": 2},
    "base_20ep": {"epochs": 20},
    "full_300_light_30ep_lr5e-4": {**_FULL, "input_size": 300, "epochs": 30, "augment": "light", "lr": 5e-4},
}


def run_variant(name: str, overrides: dict[str, Any], data: str, out: str) -> dict[str, Any]:
    """Train one variant without the final evaluation; its validation figures at the best epoch."""
    from defectlens.config import TrainConfig, config_path
    from defectlens.training.trainer import train

    config = TrainConfig.from_yaml(config_path("elpv")).replace(data=data, out=out, evaluate=False, name=name)
    start = time.perf_counter()
    result = train(config.replace(**overrides))
    best = next(row for row in result.history if row["epoch"] == result.best_epoch)
    return {
        "name": name,
        "overrides": overrides,
        "best_epoch": result.best_epoch,
        "val_macro_f1": round(result.best_val_macro_f1, 4),
        "val_accuracy_at_best": round(best["val_accuracy"], 4),
        "seconds": round(time.perf_counter() - start, 1),
        "curve": [(r["epoch"], round(r["val_accuracy"], 4), round(r["val_macro_f1"], 4)) for r in result.history],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help=f"variants to run (default all): {', '.join(VARIANTS)}")
    parser.add_argument("--data", default="data/elpv", help="the demo's imported, split ELPV folder")
    parser.add_argument("--out", default="runs/elpv-search")
    args = parser.parse_args()
    unknown = sorted(set(args.names) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")

    payload: dict[str, Any] = {
        "benchmark": "ELPV recipe search on the validation split (Deitsch split, seed 0); test never evaluated",
        "command": " ".join([sys.executable, *sys.argv]),
        "machine": describe(),
        "runs": [],
    }
    for name in args.names or list(VARIANTS):
        payload["runs"].append(run_variant(name, VARIANTS[name], args.data, args.out))
        print(json.dumps(payload["runs"][-1]), flush=True)
        # rewritten after every variant, so an interrupted search keeps what it finished
        RESULTS.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
