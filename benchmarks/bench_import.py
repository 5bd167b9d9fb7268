"""Time ``import_dataset`` (decode + sha256 + phash) on the real casting train split and NEU-DET.

Also measures the near-duplicate structure behind ``dedup.DEFAULT_PHASH_THRESHOLD``: the
nearest-neighbour Hamming distance histogram and the duplicate-group size distribution for a range
of thresholds. Writes ``benchmarks/results/import.json`` with the machine description.

    .venv/bin/python benchmarks/bench_import.py [--workers 2] [--datasets /work/shared/datasets]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter, defaultdict
from pathlib import Path

from defectlens import __version__
from defectlens.data import dedup
from defectlens.data.importers import import_dataset
from defectlens.data.split import split_manifest
from machine import describe

HERE = Path(__file__).resolve().parent
THRESHOLDS = (0, 4, 8, 12, 16, 24, 32)


def _structure(m) -> dict[str, object]:
    hashes = dedup.hashes_to_uint64([r.meta["phash"] for r in m.records])
    t = time.perf_counter()
    nn = dedup.nearest_distances(hashes)
    pairwise_s = time.perf_counter() - t
    out: dict[str, object] = {
        "pairwise_nearest_s": round(pairwise_s, 3),
        "nearest_distance_histogram": {str(k): v for k, v in sorted(Counter(nn.tolist()).items())},
        "thresholds": {},
    }
    for th in THRESHOLDS:
        groups, pairs = dedup.group_duplicates(
            [r.path for r in m.records],
            sha256=[r.sha256 for r in m.records],
            phash=[r.meta["phash"] for r in m.records],
            threshold=th,
        )
        labels: dict[str, set[str]] = defaultdict(set)
        for g, r in zip(groups, m.records, strict=True):
            labels[g].add(r.label)
        hist = dedup.group_size_histogram(groups)
        out["thresholds"][str(th)] = {
            "images_in_groups": sum(int(k) * v for k, v in hist.items() if k != "1"),
            "largest_group": max(int(k) for k in hist),
            "group_size_histogram": hist,
            "mixed_label_groups": sum(1 for s in labels.values() if len(s) > 1),
            **pairs,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=str(HERE.parent.parent / "shared" / "datasets"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default=str(HERE / "results" / "import.json"))
    args = parser.parse_args()
    root = Path(args.datasets)
    results: dict[str, object] = {"machine": describe(), "defectlens_version": __version__, "workers": args.workers}
    for name, fmt in (("casting", "casting"), ("neu-det", "neu-det")):
        if not (root / name).is_dir():
            print(f"{name}: not found under {root}, skipped")
            continue
        t = time.perf_counter()
        m = import_dataset(root / name, fmt=fmt, workers=args.workers)
        import_s = time.perf_counter() - t
        t = time.perf_counter()
        split_manifest(m, seed=0)
        split_s = time.perf_counter() - t
        results[name] = {"images": len(m.records), "import_s": round(import_s, 2), "split_s": round(split_s, 2)}
        results[name].update(_structure(m))
        print(
            f"{name}: {len(m.records)} images, import {import_s:.1f} s, split {split_s:.2f} s ({args.workers} workers)"
        )
        for th, row in results[name]["thresholds"].items():
            print(
                f"  phash threshold {th:>2}: {row['images_in_groups']:>5} images in groups, "
                f"largest {row['largest_group']:>5}, mixed-label groups {row['mixed_label_groups']}"
            )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
