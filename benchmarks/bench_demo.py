"""Run ``defectlens demo`` and record its test metrics, wall time and machine in results/elpv.json.

Usage: ``python benchmarks/bench_demo.py [--fresh]`` from the repository root.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from machine import describe

RESULTS = Path(__file__).resolve().parent / "results" / "elpv.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fresh", action="store_true", help="re-import and re-split ELPV")
    parser.add_argument("--data", default="data/elpv")
    parser.add_argument("--out", default="runs")
    parser.add_argument(
        "--recipe", default="elpv", help="recipe name (see defectlens train --list-recipes) or a YAML path"
    )
    args = parser.parse_args()

    from defectlens.cli.output import progress_display, stdout
    from defectlens.cli.summary import print_run
    from defectlens.workflows.demo import run_demo
    from defectlens.workflows.recipes import recipe_path

    info = describe()
    start = time.perf_counter()
    with progress_display() as progress:
        result = run_demo(data=args.data, out=args.out, recipe=args.recipe, fresh=args.fresh, progress=progress)
    wall = time.perf_counter() - start
    print_run(stdout(), result, title="bench_demo")
    payload = {
        "benchmark": "defectlens demo: ELPV binary, Deitsch split (seed 0), recipes/elpv.yaml",
        "command": " ".join([sys.executable, *sys.argv]),
        "recipe": recipe_path(args.recipe).read_text(encoding="utf-8"),
        "wall_time_s": round(wall, 1),
        "run_dir": str(result.run_dir),
        "best_epoch": result.best_epoch,
        "best_val_macro_f1": result.best_val_macro_f1,
        "epochs": [
            {k: r[k] for k in ("epoch", "train_loss", "val_macro_f1", "data_s", "compute_s", "epoch_s")}
            for r in result.history
        ],
        "threshold": result.spec.threshold,
        "temperature": result.spec.temperature,
        "machine": info,
        **{split: metrics for split, metrics in result.metrics.items()},
        # test errors counted by image attribute (ELPV: cell type, the experts' defect probability)
        "test_slices": json.loads((result.run_dir / "eval" / "metrics.json").read_text(encoding="utf-8"))
        .get("slices", {})
        .get("test", {}),
    }
    # The demo's bundle and its single-image latency, as run_real.py records for every recipe.
    from defectlens.data.manifest import Manifest
    from defectlens.export.exporter import export_bundle
    from run_real import latency_ms

    bundle = RESULTS.with_suffix(".dlens")
    payload["model_id"] = export_bundle(result.run_dir, bundle).model_id
    manifest = Manifest.read(args.data)
    payload["latency_ms_p50"] = latency_ms(bundle, [manifest.resolve(r) for r in manifest.split("test")])
    if RESULTS.is_file():  # keep the baselines (and their split) that run_real.py wrote for ELPV
        payload = {**json.loads(RESULTS.read_text(encoding="utf-8")), **payload}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS} (wall time {wall:.0f}s, test accuracy {_acc(result.metrics.get('test', {}))})")
    return 0


def _acc(m: dict) -> str:
    value = m.get("accuracy")
    if isinstance(value, dict):
        value = value.get("value")
    return f"{value:.4f}" if isinstance(value, (int, float)) else "n/a"


if __name__ == "__main__":
    raise SystemExit(main())
