"""Does a second anomaly method earn its place (issue #29)? A SimpleNet-style discriminator on casting.

SimpleNet (Liu et al., CVPR 2023) learns where normal patch features end instead of storing them: an adaptor
(one linear layer) and a discriminator (linear, batch norm, leaky ReLU, linear) trained to score the adapted
features of good patches above +0.5 and the same features plus Gaussian noise below -0.5 (its truncated L1
loss); a patch's anomaly score is minus the discriminator's output, an image's its largest patch score. No
memory bank, so its graph would be a few matrix products: faster than PatchCore's bank.

This probe gives it the features PatchCore's casting recipe uses (EfficientNet-Lite0, stride-4/8/16, 256 px,
grayscale, the library's ``create_patchcore``), fits on the 2,601 good training images that recipe fits on,
and scores the same selection set (the 274 held-out good images against the 3,758 ``train/def_front``
defects) and the official test split. Beside it, PatchCore on the very same features without position
normalisation (the library's coreset and distance, bank 4096 from 1.2 million patches), so the two heads
are compared on equal input; the recipe's own figures (with position normalisation, through the bundle)
are in ``anomaly-casting.json``. The noise's scale is in units of each feature's standard deviation over the
good patches (SimpleNet's 0.015 is in its own features' units); several are tried, each figure reported.

    python benchmarks/probe_discriminator.py --work W --sigmas 0.5 0.15 0.05
    python benchmarks/probe_discriminator.py --work W --sigmas 0.15 --seeds 1 2 --key second_method_probe_seeds

``W`` is ``run_anomaly.py --dataset casting``'s work folder (its import, ``data-casting-good-only``). Writes
``--key`` (``"second_method_probe"``) into ``benchmarks/results/anomaly-casting.json`` (the rest kept); ``--seeds``
trains each noise level once per seed (the discriminator's initialisation and batches; the features are fixed).
Not a library feature: the discriminator is not in ``defectlens`` unless it ranks above PatchCore.
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
from PIL import Image
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from defectlens.data.manifest import Manifest  # noqa: E402
from defectlens.evaluation.anomaly import recall_at_false_alarms  # noqa: E402
from defectlens.models.patchcore import create_patchcore, greedy_coreset, nearest_squared  # noqa: E402
from machine import describe  # noqa: E402
from run_anomaly import SHARED, data_path, selection_files  # noqa: E402

SIZE = 256
NORMAL = "ok_front"


def load(paths: list[Path]) -> torch.Tensor:
    """Grayscale uint8 (N, 1, SIZE, SIZE), resized bilinear."""
    arrays = [np.asarray(Image.open(p).convert("L").resize((SIZE, SIZE), Image.BILINEAR)) for p in paths]
    return torch.from_numpy(np.stack(arrays))[:, None]


@torch.inference_mode()
def features(model: Any, paths: list[Path], batch: int = 16) -> torch.Tensor:
    """The recipe's patch features (N, D, h, w), float16 to halve the memory."""
    out = []
    for i in range(0, len(paths), batch):
        x = load(paths[i : i + batch]).float().div(255.0)
        out.append(model.features(model.normalize(x)).half())
    return torch.cat(out)


class Discriminator(nn.Module):
    """SimpleNet's adaptor and discriminator on standardised patch features."""

    def __init__(self, dims: int, hidden: int = 1024):
        super().__init__()
        self.adapt = nn.Linear(dims, dims)
        self.disc = nn.Sequential(
            nn.Linear(dims, hidden), nn.BatchNorm1d(hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.disc(self.adapt(x)).squeeze(1)


def fit_discriminator(flat: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, *, sigma: float, epochs: int,
                      batch: int = 8192, seed: int = 0) -> tuple[Discriminator, list[float]]:  # fmt: skip
    torch.manual_seed(seed)
    net = Discriminator(flat.shape[1])
    groups = [{"params": net.adapt.parameters(), "lr": 1e-4}, {"params": net.disc.parameters(), "lr": 2e-4}]
    opt = torch.optim.AdamW(groups, weight_decay=1e-5)
    losses = []
    for _ in range(epochs):
        net.train()
        order, total, steps = torch.randperm(len(flat)), 0.0, 0
        for i in range(0, len(order) - batch + 1, batch):
            adapted = net.adapt((flat[order[i : i + batch]].float() - mean) / std)
            fake = adapted + torch.randn_like(adapted) * sigma
            s = net.disc(torch.cat([adapted, fake])).squeeze(1)
            loss = (0.5 - s[:batch]).clamp_min(0).mean() + (s[batch:] + 0.5).clamp_min(0).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, steps = total + loss.item(), steps + 1
        losses.append(total / max(1, steps))
    return net.eval(), losses


@torch.inference_mode()
def discriminator_scores(net: Discriminator, fmaps: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> np.ndarray:
    out = []
    for i in range(0, len(fmaps), 32):
        f = fmaps[i : i + 32]
        n, d = f.shape[:2]
        patches = -net((f.permute(0, 2, 3, 1).reshape(-1, d).float() - mean) / std).reshape(n, -1)
        out.append(patches.amax(dim=1).numpy())
    return np.concatenate(out)


@torch.inference_mode()
def patchcore_scores(bank: torch.Tensor, fmaps: torch.Tensor) -> np.ndarray:
    bank_sq = bank.square().sum(dim=1)
    out = []
    for i in range(0, len(fmaps), 16):
        f = fmaps[i : i + 16].float()
        n, d = f.shape[:2]
        out.append(nearest_squared(f.permute(0, 2, 3, 1).reshape(n, -1, d), bank, bank_sq).amax(dim=1).sqrt().numpy())
    return np.concatenate(out)


def figures(scores: dict[str, np.ndarray], y_test: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    y_sel = np.r_[np.zeros(len(scores["val"]), bool), np.ones(len(scores["defects"]), bool)]
    p_sel = np.r_[scores["val"], scores["defects"]]
    return {
        "selection_auroc": float(roc_auc_score(y_sel, p_sel)),
        "selection_recall_at_1pct_false_alarms": recall_at_false_alarms(y_sel, p_sel, 0.01),
        "test_auroc": float(roc_auc_score(y_test, scores["test"])),
        "test_recall_at_1pct_false_alarms": recall_at_false_alarms(y_test, scores["test"], 0.01),
    }


def good_only_figures(scores: dict[str, np.ndarray], y_test: np.ndarray) -> dict[str, float]:
    """The defect recall at the good-only threshold (the conformal 1 % level of the held-out good scores, the
    recipe's rule) on the selection set and the test split, and the test's false alarms there."""
    from defectlens.evaluation.conformal import ood_threshold

    threshold = ood_threshold(scores["val"], 0.01)
    return {
        "selection_recall_at_good_only_threshold": float((scores["defects"] >= threshold).mean()),
        "test_recall_at_good_only_threshold": float((scores["test"][y_test] >= threshold).mean()),
        "test_false_alarms_at_good_only_threshold": float((scores["test"][~y_test] >= threshold).mean()),
    }


#: How the probes' features are made (each record says so).
FEATURES = "efficientnet_lite0 stride-4/8/16, 256 px, grayscale (create_patchcore), PIL bilinear resize"


def casting_sets(work: Path) -> tuple[dict[str, list[Path]], np.ndarray]:
    """The probes' images from ``run_anomaly.py --dataset casting``'s import in ``work``: the good training images,
    the held-out good ones (``val``), the selection defects and the test split; and the test labels (True: defect)."""
    manifest = Manifest.read(data_path("casting", work))
    defects = selection_files(SHARED / "casting")
    if not defects:
        raise SystemExit(f"skipped: {SHARED / 'casting'} is not here")
    test = manifest.split("test")
    paths = {
        "train": [manifest.resolve(r) for r in manifest.split("train") if r.label == NORMAL],
        "val": [manifest.resolve(r) for r in manifest.split("val") if r.label == NORMAL],
        "defects": defects,
        "test": [manifest.resolve(r) for r in test],
    }
    return paths, np.array([r.label != NORMAL for r in test])


def probe_record(
    doc: str,
    script: str,
    counts: dict[str, int],
    features: str,
    runs: dict[str, Any],
    machine: dict[str, Any],
    **extra: Any,
) -> dict[str, Any]:
    """A probe's JSON entry: what it asks (its docstring's first paragraph), the command that ran it, the image
    counts, the features, ``extra``, its runs and the machine."""
    command = f"python benchmarks/{script} " + " ".join(sys.argv[1:])
    head = {"what": doc.split("\n\n")[0], "command": command, "counts": counts, "features": features}
    return {**head, **extra, "runs": runs, "machine": machine}


def write_entry(out: Path, key: str, record: dict[str, Any]) -> None:
    """``record`` as ``key`` of the results JSON ``out``, the rest of the file kept."""
    results = json.loads(out.read_text()) if out.is_file() else {}
    results[key] = record
    out.write_text(json.dumps(results, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", required=True, help="run_anomaly.py --dataset casting's work folder")
    ap.add_argument("--sigmas", type=float, nargs="+", default=[0.5, 0.15, 0.05])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--key", default="second_method_probe", help="the entry of the JSON this run writes")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "anomaly-casting.json"))
    args = ap.parse_args()
    torch.manual_seed(0)
    machine = describe()
    paths, y_test = casting_sets(Path(args.work))
    model = create_patchcore("efficientnet_lite0", in_channels=1, input_size=SIZE, strides=(4, 8, 16))
    start = time.perf_counter()
    fmaps = {k: features(model, v) for k, v in paths.items()}
    extract_s = time.perf_counter() - start
    train = fmaps.pop("train")
    flat = train.permute(0, 2, 3, 1).reshape(-1, train.shape[1])
    del train
    sample = flat[::97].float()
    mean, std = sample.mean(dim=0), sample.std(dim=0)
    runs: dict[str, Any] = {}
    start = time.perf_counter()
    gen = torch.Generator().manual_seed(0)
    pool = flat[torch.randperm(len(flat), generator=gen)[:1_200_000]].float()
    bank = pool[greedy_coreset(pool, 4096)].clone()
    del pool
    runs["patchcore_bank_4096_no_position_norm"] = {
        **figures({k: patchcore_scores(bank, v) for k, v in fmaps.items()}, y_test),
        "seconds": time.perf_counter() - start,
    }
    print(json.dumps(runs, indent=1), flush=True)
    for sigma in args.sigmas:
        for seed in args.seeds:
            start = time.perf_counter()
            net, losses = fit_discriminator(flat, mean, std, sigma=sigma, epochs=args.epochs, seed=seed)
            scores = {k: discriminator_scores(net, v, mean, std) for k, v in fmaps.items()}
            name = f"discriminator_sigma_{sigma}" + (f"_seed_{seed}" if args.seeds != [0] else "")
            runs[name] = {
                **figures(scores, y_test),
                "sigma_in_feature_stds": sigma,
                "seed": seed,
                "epochs": args.epochs,
                "loss_by_epoch": losses,
                "seconds": time.perf_counter() - start,
            }
            print(json.dumps(runs[name], indent=1), flush=True)
    counts = {k: len(v) for k, v in paths.items()}
    record = probe_record(__doc__, "probe_discriminator.py", counts, FEATURES, runs, machine, feature_seconds=extract_s)
    write_entry(Path(args.out), args.key, record)


if __name__ == "__main__":
    main()
