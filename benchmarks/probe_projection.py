"""Would a projected memory bank buy casting a larger bank inside the latency goal (issue #29)?

PatchCore's cost per image is one matrix product against the bank: rows x numbers a patch. Casting's recipe
keeps 4,096 rows of 176 numbers; 8,192 rows ranked higher (round 4 of ``"selection_rule"``) but took about 1.4
times the recipe's latency. Projecting each patch onto the top principal components of the good patches (a
constant of the graph: subtract the mean, one 176 x d product) before the distance would let a bank of 8,192
or 16,384 rows of d = 64 numbers cost what the recipe's does (8,192 x 65 against 4,096 x 177 multiply-adds a
patch). This probe measures what the projection and the larger bank do to the ranking before any of it goes
into the library.

Features: the casting recipe's (EfficientNet-Lite0, stride-4/8/16, 256 px, grayscale, the library's
``create_patchcore``), extracted as ``probe_discriminator.py`` does (PIL bilinear resize). The pool: 1.2
million of the 2,601 good training images' patches (seeded), the recipe's count; the components from every
7th pool row; the coreset and the distance are the library's (``greedy_coreset``, ``nearest_squared``).
Scores are raw distances (no position normalisation, as the probe's PatchCore baseline), so the rows compare
with each other and with ``second_method_probe``'s baseline, not with the recipe's record. Each row gives the
selection set's figures (the 274 held-out good images against the 3,758 ``train/def_front`` defects), the
test split's, the defect recall at the good-only threshold (the conformal 1 % quantile of the 274 good
scores, the recipe's rule) and the operating point validated for 98 % recall on the selection's defects
(``run_anomaly.recall_operating_point``).

    python benchmarks/probe_projection.py --work W --configs 4096:176 4096:64 8192:64 16384:64 --cache F

``W`` is ``run_anomaly.py --dataset casting``'s work folder (its import). ``--cache F`` keeps the extracted
features (about 2.7 GB, float16) for a second run. Writes ``--key`` (``"projection_probe"``) into
``benchmarks/results/anomaly-casting.json``, the rest kept. Not a library feature unless it earns it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from defectlens.models.patchcore import create_patchcore, greedy_coreset  # noqa: E402
from machine import describe  # noqa: E402
from probe_discriminator import (  # noqa: E402
    FEATURES,
    SIZE,
    casting_sets,
    features,
    figures,
    good_only_figures,
    patchcore_scores,
    probe_record,
    write_entry,
)
from run_anomaly import recall_operating_point  # noqa: E402

#: Patches the bank is chosen from: the casting recipe's ``--max-patches``.
POOL = 1_200_000
#: The components are fitted on every this-many-th pool row (the covariance of 171,000 rows of 176 numbers).
COMPONENT_STRIDE = 7


def principal_components(pool: torch.Tensor, dims: int) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """The pool's mean (D,), its top ``dims`` principal directions (D, dims), and the share of the variance
    the first k of them keep, for k = 1..D."""
    mean = pool.mean(dim=0)
    centred = pool[::COMPONENT_STRIDE] - mean
    values, vectors = torch.linalg.eigh(centred.T @ centred / max(1, len(centred) - 1))
    order = values.argsort(descending=True)
    values, vectors = values[order].clamp_min(0), vectors[:, order]
    kept = (values.cumsum(0) / values.sum()).tolist()
    return mean, vectors[:, :dims].contiguous(), kept


def project(fmaps: torch.Tensor, mean: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """Feature maps (N, D, h, w) onto the directions: (N, d, h, w), centred by the pool's mean."""
    n, d, h, w = fmaps.shape
    z = (fmaps.permute(0, 2, 3, 1).reshape(-1, d).float() - mean) @ directions
    return z.reshape(n, h, w, -1).permute(0, 3, 1, 2)


def config(text: str) -> tuple[int, int]:
    """``"8192:64"`` -> (8192, 64): bank rows and numbers a patch (the full width: no projection)."""
    try:
        bank, dims = (int(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a config is BANK:DIMS, e.g. 8192:64; got {text!r}") from None
    if bank < 1 or dims < 1:
        raise argparse.ArgumentTypeError(f"bank rows and dims must be >= 1; got {text!r}")
    return bank, dims


def run_config(pool: torch.Tensor, fmaps: dict[str, torch.Tensor], y_test: np.ndarray, bank_rows: int, dims: int,
               kept: list[float], mean: torch.Tensor, directions: torch.Tensor) -> dict[str, Any]:  # fmt: skip
    """One bank: chosen from the (projected) pool, every split scored against it, the figures."""
    start = time.perf_counter()
    full = dims >= pool.shape[1]
    rows = pool if full else (pool - mean) @ directions[:, :dims]
    bank = rows[greedy_coreset(rows, bank_rows)].clone()
    del rows
    fit_s = time.perf_counter() - start

    def scored(maps: torch.Tensor) -> np.ndarray:
        parts = [maps[i : i + 256] for i in range(0, len(maps), 256)]
        return np.concatenate(
            [patchcore_scores(bank, p if full else project(p, mean, directions[:, :dims])) for p in parts]
        )

    scores = {k: scored(v) for k, v in fmaps.items()}
    y_sel = np.r_[np.zeros(len(scores["val"]), bool), np.ones(len(scores["defects"]), bool)]
    return {
        "bank": bank_rows,
        "dims": int(bank.shape[1]),
        "variance_kept": 1.0 if full else kept[dims - 1],
        **figures(scores, y_test),
        **good_only_figures(scores, y_test),
        "at_target_recall": recall_operating_point(
            y_sel, np.r_[scores["val"], scores["defects"]], y_test, scores["test"]
        ),
        "multiply_adds_per_patch": int(bank.shape[0] * (bank.shape[1] + 1) + (0 if full else pool.shape[1] * dims)),
        "fit_seconds": fit_s,
        "seconds": time.perf_counter() - start,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", required=True, help="run_anomaly.py --dataset casting's work folder")
    ap.add_argument("--configs", type=config, nargs="+", default=[(4096, 176), (4096, 64), (8192, 64), (16384, 64)])
    ap.add_argument("--cache", default=None, help="keep the extracted features in this file (read it if present)")
    ap.add_argument("--key", default="projection_probe", help="the entry of the JSON this run writes")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "anomaly-casting.json"))
    args = ap.parse_args()
    machine = describe()
    paths, y_test = casting_sets(Path(args.work))
    cache = Path(args.cache) if args.cache else None
    cached = cache is not None and cache.is_file()
    start = time.perf_counter()
    if cached:
        fmaps = torch.load(cache)
    else:
        model = create_patchcore("efficientnet_lite0", in_channels=1, input_size=SIZE, strides=(4, 8, 16))
        fmaps = {k: features(model, v) for k, v in paths.items()}
        if cache is not None:
            torch.save(fmaps, cache)
    extract_s = time.perf_counter() - start
    counts = {k: len(v) for k, v in fmaps.items()}
    train = fmaps.pop("train")
    flat = train.permute(0, 2, 3, 1).reshape(-1, train.shape[1])
    del train
    pool = flat[torch.randperm(len(flat), generator=torch.Generator().manual_seed(0))[:POOL]].float()
    del flat
    mean, directions, kept = principal_components(
        pool, max((d for _, d in args.configs if d < pool.shape[1]), default=1)
    )
    runs = {}
    for bank_rows, dims in args.configs:
        name = f"bank_{bank_rows}_dims_{min(dims, pool.shape[1])}"
        runs[name] = run_config(pool, fmaps, y_test, bank_rows, dims, kept, mean, directions)
        print(name, json.dumps(runs[name]), flush=True)
    record = probe_record(
        __doc__, "probe_projection.py", counts, FEATURES, runs, machine,
        scores="raw nearest-bank distances, no position normalisation", feature_seconds=extract_s,
        features_read_from_cache=cached,
        variance_kept_by_dims={str(k): kept[k - 1] for k in (32, 48, 64, 96, 128) if k <= len(kept)},
    )  # fmt: skip
    write_entry(Path(args.out), args.key, record)


if __name__ == "__main__":
    main()
