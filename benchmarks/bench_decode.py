"""Decoding one frame: this tree's ``decode_image`` against an earlier revision's, and the luma-only shortcut.

Issue #32 asks for a cheaper *exact* decode: the same pixels, in less time. Three things on the casting test
JPEGs (300x300, gray content stored as RGB), each timed in turn in one process so a burst of load hits all alike:

1. ``decode_image`` of this tree;
2. ``decode_image`` of ``--against REV`` (its ``src/defectlens/data/images.py`` loaded from git), with a check that
   both give identical pixels on every image;
3. Pillow's luma-only decode (``Image.draft("L")``, no chroma, no colour conversion) and whether it gives the
   pixels of the decode rule's ``convert("L")`` on every image (it can only where the chroma is neutral).

    python benchmarks/bench_decode.py --against c8495d1

Writes ``benchmarks/results/decode.json`` and prints the medians.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from machine import describe

ROOT = Path(__file__).resolve().parents[1]
CASTING_TEST = ROOT.parent / "shared" / "datasets" / "casting" / "test"
OUT = ROOT / "benchmarks" / "results" / "decode.json"


def module_at(rev: str, folder: Path) -> ModuleType:
    """``defectlens.data.images`` as it was at git revision ``rev``."""
    source = subprocess.run(
        ["git", "show", f"{rev}:src/defectlens/data/images.py"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    path = folder / "images_at_rev.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("images_at_rev", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["images_at_rev"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def luma_only(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        im.draft("L", im.size)
        return np.asarray(im.convert("L"))


def timed(steps: dict[str, Callable[[Path], Any]], files: list[Path], rounds: int) -> dict[str, dict[str, float]]:
    """Median and best of ``rounds`` per-image means, the steps taking turns each round."""
    laps: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            for f in files:
                step(f)
            laps[name].append((time.perf_counter() - start) / len(files) * 1000.0)
    return {k: {"median_ms": round(statistics.median(v), 4), "best_ms": round(min(v), 4)} for k, v in laps.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--against", default="c8495d1", help="git revision whose decode_image is the baseline")
    p.add_argument("--images", type=Path, default=CASTING_TEST)
    p.add_argument("--max-images", type=int, default=200)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    if not args.images.is_dir():
        sys.exit(f"skipped: {args.images} is not here (the casting test split of ../shared/datasets)")
    sys.path.insert(0, str(ROOT / "src"))
    from defectlens.data import images

    files = sorted(args.images.rglob("*.jpeg"))
    with tempfile.TemporaryDirectory() as tmp:
        old = module_at(args.against, Path(tmp))
        same_as_rev = sum(
            np.array_equal(np.asarray(images.decode_image(f).image), np.asarray(old.decode_image(f).image))
            for f in files
        )
        same_luma = sum(
            np.array_equal(luma_only(f), np.asarray(images.decode_image(f).image.convert("L"))) for f in files
        )
        steps = {
            "decode_image (this tree)": images.decode_image,
            f"decode_image ({args.against})": old.decode_image,
            "luma only (Image.draft L)": luma_only,
        }
        figures = timed(steps, files[: args.max_images], args.rounds)
    result = {
        "command": "python benchmarks/bench_decode.py " + " ".join(sys.argv[1:]),
        "machine": describe(),
        "images": {"folder": str(args.images), "checked": len(files), "timed": min(len(files), args.max_images)},
        "identical_pixels": {f"this tree vs {args.against}": same_as_rev, "luma only vs convert('L')": same_luma},
        "per_image": figures,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"identical_pixels": result["identical_pixels"], "per_image": figures}, indent=2))


if __name__ == "__main__":
    main()
