"""Self-supervised pretraining on ELPV's unlabelled training cells: the last untried lever of the ELPV goal.

Continues EfficientNet-Lite0's ImageNet weights with SimCLR (Chen et al. 2020: two augmented views of each
cell, NT-Xent loss over the batch) on the cells of the demo split's **training** share only, labels never
read; validation and test cells are not seen. The backbone (grayscale, as the recipe runs it) is written to
``--out`` (a torch state dict of ``Classifier.features``; never committed). ``search_elpv.py ssl_simclr``
then fine-tunes the ELPV recipe from it and records the validation figures beside the recipe's seeds.

Views suit electroluminescence cells: random resized crops (35-100 % of the cell), the 8 flips/rotations,
brightness and contrast jitter, and a Gaussian blur half of the time; no colour (the images are grey).

The rule, set before any run of it (as for the seed ensemble): adopt only if the fine-tuned recipe's validation
macro-F1 at seed 0 beats both the recipe's own seed 0 on this CPU model and the recipe's 5-seed mean by at least
1 point (Intel Xeon: 0.8950 and 0.9041, ``elpv.json``); only then are more seeds and the test split run.

Usage: ``python benchmarks/pretrain_elpv_ssl.py`` from the repository root (6 epochs of 128 px views: about 90 s
per epoch on the 2-core Intel Xeon; ``--limit`` and ``--epochs 1`` for a smoke run).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_OUT = Path("build/ssl/lite0-elpv-simclr.pt")


def train_cells(data: Path, size: int, limit: int | None) -> np.ndarray:
    """The training split's cells as uint8 (N, size, size), decoded by the project's own rule."""
    from defectlens.data.images import decode_image, to_array
    from defectlens.data.manifest import Manifest

    manifest = Manifest.read(data)
    rows = manifest.split("train")[:limit] if limit else manifest.split("train")
    out = np.empty((len(rows), size, size), np.uint8)
    for i, row in enumerate(rows):
        out[i] = to_array(decode_image(manifest.resolve(row)).image, size=size, channels=1)[0]
    return out


def views(batch, crop: int, generator):  # type: ignore[no-untyped-def]
    """One augmented view of each cell of a uint8 batch (N, H, W) -> float (N, 1, crop, crop) in [0, 1]."""
    import torch
    import torchvision.transforms.v2.functional as F
    from torchvision.transforms.v2 import RandomResizedCrop

    out = []
    for cell in batch:
        x = cell[None].float().div(255.0)
        top, left, h, w = RandomResizedCrop.get_params(x, scale=(0.35, 1.0), ratio=(3 / 4, 4 / 3))
        x = F.resized_crop(x, top, left, h, w, [crop, crop], antialias=True)
        k = int(torch.randint(0, 8, (1,), generator=generator))
        x = torch.rot90(x, k % 4, dims=(1, 2))
        if k >= 4:
            x = x.flip(2)
        gain = 1.0 + 0.4 * (2 * float(torch.rand(1, generator=generator)) - 1)
        offset = 0.2 * (2 * float(torch.rand(1, generator=generator)) - 1)
        mean = x.mean()
        x = (x - mean) * gain + mean + offset * mean
        if float(torch.rand(1, generator=generator)) < 0.5:
            x = F.gaussian_blur(x, [7, 7], [0.1 + 1.9 * float(torch.rand(1, generator=generator))])
        out.append(x.clamp(0.0, 1.0))
    return torch.stack(out)


def nt_xent(z1, z2, temperature: float):  # type: ignore[no-untyped-def]
    """SimCLR's loss: each view must pick its partner among the 2N - 1 other views of the batch."""
    import torch
    import torch.nn.functional as F

    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    n = len(z1)
    sim.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(sim, target)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="data/elpv", help="the demo's split ELPV folder (made when missing)")
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--crop", type=int, default=128, help="side of each view in pixels")
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--temperature", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="use only the first N training cells (smoke)")
    args = parser.parse_args()

    import torch
    from torch import nn

    from defectlens.models import create_model
    from defectlens.workflows.demo import prepare_elpv

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(args.seed)
    data = prepare_elpv(args.data)
    cells = torch.from_numpy(train_cells(data, 224, args.limit))
    model = create_model("efficientnet_lite0", num_classes=2, in_channels=1, pretrained=True, input_size=args.crop)
    projector = nn.Sequential(nn.Linear(1280, 512), nn.BatchNorm1d(512), nn.ReLU(inplace=True), nn.Linear(512, 128))

    def embed(x):  # type: ignore[no-untyped-def]
        feats = model.features((x - model.mean) / model.std)  # the Classifier's own normalisation
        return projector(feats.mean(dim=(2, 3)))

    params = [*model.features.parameters(), *projector.parameters()]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-4)
    steps = args.epochs * (len(cells) // args.batch_size)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )
    model.features.train()
    projector.train()
    history, start = [], time.perf_counter()
    for epoch in range(args.epochs):
        order = torch.randperm(len(cells), generator=generator)
        losses = []
        for b in range(len(cells) // args.batch_size):  # drop the last partial batch (BatchNorm, NT-Xent)
            batch = cells[order[b * args.batch_size : (b + 1) * args.batch_size]]
            loss = nt_xent(embed(views(batch, args.crop, generator)), embed(views(batch, args.crop, generator)),
                           args.temperature)  # fmt: skip
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(float(loss.detach()))
        history.append({"epoch": epoch + 1, "loss": round(float(np.mean(losses)), 4),
                        "seconds": round(time.perf_counter() - start, 1)})  # fmt: skip
        print(json.dumps(history[-1]), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.features.state_dict(), out)
    record = {
        "method": "SimCLR (NT-Xent) from the ImageNet EfficientNet-Lite0 weights, grayscale",
        "cells": len(cells), "split": "train (labels never read)", "settings": vars(args),
        "history": history, "command": " ".join([sys.executable, *sys.argv]),
    }  # fmt: skip
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
