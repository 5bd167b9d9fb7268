"""Where does anomalib's lead on casting come from, at equal features (issue #29)?

anomalib's PatchCore ranked casting's test split at image AUROC 0.979 (``peers.anomalib_patchcore``) where ours,
on the same EfficientNet-Lite0 weights, the same stride-8/16 taps, the same 256 px input and a bank of the same
4,096 rows, ranked 0.953 (variant ``recipe-amd-epyc``). The casting images are grey (R = G = B in every pixel
of the ten checked by hand), so anomalib's RGB input and our folded one-channel stem see the same numbers, and
both normalise with the weights' own mean and standard deviation. What is left differs in four places:

1. **Pooling at the border**: anomalib averages each tap over 3x3 with the zero padding counted
   (``AvgPool2d(3, 1, 1)``); ours leaves the padding out (``count_include_pad=False``).
2. **The image score**: anomalib re-weights the largest patch distance ``s*`` by how isolated its nearest bank
   row ``m*`` is (the paper's eq. 7 as anomalib writes it, ``num_neighbors=9``): ``w = 1 - softmax(d)[0]``, ``d``
   the distances of the patch to ``m*`` and to the 8 bank rows nearest ``m*``; ours takes ``s*`` as it is.
3. **Position normalisation**: ours divides each patch distance by what good parts score at its place
   (leave-one-out statistics, floor 1); anomalib has none.
4. **The coreset**: anomalib chooses from every training patch (2.66 million) after a 365-dimension sparse
   random projection; ours from 1.2 million after a 64-dimension Gaussian one. Not probed here: anomalib's
   selection at that size takes about 1.5 hours on 2 cores (``peers.anomalib_coreset_cost``); round 2 of
   ``selection_rule`` already chose ours from every patch (no gain on selection).

This probe crosses 1-3 on one bank per feature set, chosen as the library chooses it (the same share of 1.2
million patches from each of the 2,601 good training images, ``greedy_coreset``, 4,096 rows), and reports each
score's figures on the selection set (the 274 held-out good images against the 3,758 ``train/def_front``
defects) and the test split. Feature sets: ``peer`` (stride 8/16, padding counted: anomalib's), ``ours_8_16``
(stride 8/16, padding left out: the round-2 baseline's), ``recipe`` (stride 4/8/16, padding left out) and
``recipe_padded`` (stride 4/8/16, padding counted).

    python benchmarks/probe_peer_gap.py --work W [--sets peer ours_8_16 recipe]

``W`` is ``run_anomaly.py --dataset casting``'s work folder (its import is made there when missing). Writes
``--key`` (``"peer_gap_probe"``) into ``benchmarks/results/anomaly-casting.json``, the rest kept. A probe, not a
library feature: a score that earns its place goes through a selection round first.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from defectlens.models.patchcore import create_patchcore, greedy_coreset  # noqa: E402
from defectlens.training.anomaly import leave_one_out_distances, location_statistics, pool_patches  # noqa: E402
from machine import describe  # noqa: E402
from probe_discriminator import (  # noqa: E402
    SIZE,
    casting_sets,
    features,
    figures,
    good_only_figures,
    probe_record,
    write_entry,
)
from run_anomaly import data_path, import_dataset  # noqa: E402

#: Patches the bank is chosen from (the recipe's ``--max-patches``), rows kept, and anomalib's neighbours.
POOL = 1_200_000
BANK = 4096
NEIGHBOURS = 9
#: The feature sets: patch strides and whether the 3x3 average counts the zero padding (anomalib's pooling).
SETS = {
    "peer": ((8, 16), True),
    "ours_8_16": ((8, 16), False),
    "recipe": ((4, 8, 16), False),
    "recipe_padded": ((4, 8, 16), True),
}
SCORES = ("largest", "reweighted", "position_largest", "position_reweighted")


def support_table(bank: torch.Tensor, k: int = NEIGHBOURS) -> torch.Tensor:
    """For each bank row, its ``k`` nearest bank rows, itself first (M, k): anomalib's ``N_b(m*)``."""
    sq = bank.square().sum(dim=1)
    d2 = sq[:, None] - 2 * bank @ bank.T + sq[None, :]
    d2.fill_diagonal_(-1.0)  # itself first, whatever the rounding
    return d2.topk(k, dim=1, largest=False).indices


@torch.inference_mode()
def image_scores(
    fmaps: torch.Tensor, bank: torch.Tensor, support: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor
) -> dict[str, np.ndarray]:
    """Every score of :data:`SCORES` for each image (N,): the largest patch distance, anomalib's re-weighted
    one, and both after position normalisation (the patch chosen by its normalised score; the weight
    applied to its distance before the normalisation)."""
    folded = torch.cat([bank * -2.0, bank.square().sum(dim=1)[:, None]], dim=1)
    out: dict[str, list[np.ndarray]] = {k: [] for k in SCORES}
    for start in range(0, len(fmaps), 16):
        f = fmaps[start : start + 16].float()
        n, d, h, w = f.shape
        x = f.permute(0, 2, 3, 1).reshape(n, h * w, d)
        products = torch.matmul(torch.nn.functional.pad(x, (0, 1), value=1.0), folded.t())
        least, nearest = products.min(dim=2)
        dist = (least + x.square().sum(dim=2)).clamp_min(0.0).sqrt()  # (n, P)
        normalised = (dist - mean.flatten()) / scale.flatten()
        rows = torch.arange(n)
        for name, ranked in (("", dist), ("position_", normalised)):
            top = ranked.argmax(dim=1)
            feat = x[rows, top]  # (n, D)
            near = bank[support[nearest[rows, top]]]  # (n, k, D)
            to_support = (feat[:, None, :] - near).square().sum(dim=2).sqrt()
            weight = 1.0 - torch.softmax(to_support, dim=1)[:, 0]
            s = dist[rows, top]
            if name:
                loc_m, loc_s = mean.flatten()[top], scale.flatten()[top]
                out["position_largest"].append(ranked[rows, top].numpy())
                out["position_reweighted"].append(((weight * s - loc_m) / loc_s).numpy())
            else:
                out["largest"].append(s.numpy())
                out["reweighted"].append((weight * s).numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def score_figures(scores: dict[str, np.ndarray], y_test: np.ndarray) -> dict[str, float]:
    """:func:`probe_discriminator.figures` and the recall at the good-only threshold (the conformal 1 % level
    of the 274 good scores, the recipe's rule) on both sets."""
    return {**figures(scores, y_test), **good_only_figures(scores, y_test)}


def run_set(name: str, paths: dict[str, list[Path]], y_test: np.ndarray) -> dict[str, Any]:
    strides, count_pad = SETS[name]
    start = time.perf_counter()
    model = create_patchcore("efficientnet_lite0", in_channels=1, input_size=SIZE, strides=strides)
    model.features.pool.count_include_pad = count_pad
    fmaps = {k: features(model, v) for k, v in paths.items()}
    extract_s = time.perf_counter() - start
    start = time.perf_counter()
    pool, owners, _ = pool_patches([fmaps["train"]], len(fmaps["train"]), POOL)  # one batch: one seeded draw
    chosen = greedy_coreset(pool, BANK)
    bank, bank_owners = pool[chosen].clone(), owners[chosen]
    del pool
    fit_s = time.perf_counter() - start
    support = support_table(bank)
    train = fmaps["train"]
    loo = leave_one_out_distances((train[i : i + 16] for i in range(0, len(train), 16)), bank, bank_owners)
    mean, scale = (torch.from_numpy(a) for a in location_statistics(loo))
    by_split = {k: image_scores(v, bank, support, mean, scale) for k, v in fmaps.items() if k != "train"}
    return {
        "strides": "/".join(map(str, strides)),
        "padding_counted": count_pad,
        "dims": int(bank.shape[1]),
        "scores": {s: score_figures({k: v[s] for k, v in by_split.items()}, y_test) for s in SCORES},
        "feature_seconds": extract_s,
        "coreset_seconds": fit_s,
        "seconds": time.perf_counter() - start + extract_s,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", required=True, help="run_anomaly.py --dataset casting's work folder")
    ap.add_argument("--sets", nargs="+", choices=sorted(SETS), default=list(SETS))
    ap.add_argument("--key", default="peer_gap_probe", help="the entry of the JSON this run writes")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "anomaly-casting.json"))
    args = ap.parse_args()
    machine = describe()
    work = Path(args.work)
    if not (data_path("casting", work) / "manifest.csv").is_file():
        import_dataset(SimpleNamespace(dataset="casting", source=None), work)
    paths, y_test = casting_sets(work)
    runs = {}
    for name in args.sets:
        runs[name] = run_set(name, paths, y_test)
        print(name, runs[name], flush=True)
    record = probe_record(
        __doc__, "probe_peer_gap.py", {k: len(v) for k, v in paths.items()},
        "efficientnet_lite0, 256 px, grayscale (create_patchcore), PIL bilinear resize", runs, machine,
        bank=f"{BANK} rows, greedy_coreset from {POOL:,} patches (the same share from each image)",
        neighbours=NEIGHBOURS,
    )  # fmt: skip
    write_entry(Path(args.out), args.key, record)


if __name__ == "__main__":
    main()
