"""Optimiser, learning-rate schedule, stage freezing and seeding for fine-tuning.

AdamW with two parameter groups (backbone at ``lr * backbone_lr_scale``, head at ``lr``), linear
warmup then cosine decay per step; freezing the stem and first stages keeps their BatchNorm in
eval mode, so frozen layers really stay as pretrained.
"""

from __future__ import annotations

import math
import os
import random

import numpy as np
import torch
from torch import nn


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch, and ask torch for deterministic kernels (CPU runs repeat exactly)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)


def backbone_stages(features: nn.Module) -> list[nn.Module]:
    """The backbone as an ordered list of stages, input side first (stem is stage 0)."""
    net = getattr(features, "net", None)
    if net is not None and hasattr(net, "_blocks"):  # EfficientNet-Lite
        return [nn.ModuleList([net._conv_stem, net._bn0]), *net._blocks, nn.ModuleList([net._conv_head, net._bn1])]
    return list(features.children())


def freeze_stages(model: nn.Module, n: int) -> list[nn.Module]:
    """Freeze the first ``n`` backbone stages (all of them when ``n < 0``); returns the frozen modules."""
    stages = backbone_stages(model.features)  # type: ignore[arg-type]
    frozen = stages if n < 0 else stages[:n]
    for stage in frozen:
        for p in stage.parameters():
            p.requires_grad_(False)
    return frozen


def set_train_mode(model: nn.Module, frozen: list[nn.Module]) -> None:
    """``model.train()`` except frozen stages, whose BatchNorm statistics must not drift."""
    model.train()
    for stage in frozen:
        stage.eval()


def build_optimizer(
    model: nn.Module, *, lr: float, backbone_lr_scale: float, weight_decay: float
) -> torch.optim.Optimizer:
    """AdamW over trainable parameters; no weight decay on biases and norm weights."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_head = name.startswith("head.")
        no_decay = p.ndim <= 1
        groups.setdefault((is_head, no_decay), []).append(p)
    param_groups = [
        {
            "params": params,
            "lr": lr if is_head else lr * backbone_lr_scale,
            "weight_decay": 0.0 if no_decay else weight_decay,
        }
        for (is_head, no_decay), params in sorted(groups.items())
    ]
    return torch.optim.AdamW(param_groups, lr=lr)


def build_scheduler(
    optimizer: torch.optim.Optimizer, *, total_steps: int, warmup_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step multiplier: linear warmup to 1, then cosine decay to 0 at ``total_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights normalised to mean 1 (a class absent from train gets weight 0)."""
    counts = torch.bincount(labels, minlength=num_classes).float()
    w = torch.where(counts > 0, counts.sum() / (num_classes * counts.clamp(min=1)), torch.zeros_like(counts))
    return w
