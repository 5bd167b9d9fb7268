"""What the training loop iterates over: whole images, or cached outputs of the frozen part.

Three strategies, one per way of spending a CPU budget, chosen by :func:`strategy_for`:

- :class:`WholeImages`: every batch goes through the whole network with the configured augmentation.
- :class:`CachedFeatures`: the backbone is frozen and nothing is augmented, so its pooled features
  are computed once and only the head trains on them.
- :class:`CachedPrefix`: the stem and first stages are frozen and the only augmentation is
  flips/rot90, so their output for every cached flip/rotation is computed once and the upper stages
  train on it (see :mod:`defectlens.training.partial`).

Each strategy turns the decoded splits into a :class:`Prepared`: the module to optimise, the training
inputs the loop indexes, an ``augment`` function, and how to score validation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from defectlens.core.spec import CACHE_VIEWS
from defectlens.data.dataset import CachedSplit
from defectlens.models import Classifier, forward_batches
from defectlens.training.acquisition import acquisition_shift
from defectlens.training.augment import Augment, build_augment
from defectlens.training.loop import predict_logits

if TYPE_CHECKING:
    import logging

    from defectlens.training.config import TrainConfig


@dataclass
class RunInputs:
    """What a strategy prepares from: the model, the decoded splits and the run's settings."""

    model: Classifier
    train: CachedSplit
    val: CachedSplit
    config: TrainConfig
    device: torch.device
    log: logging.Logger


@dataclass
class Prepared:
    """Inputs of the training loop for one run."""

    train_model: nn.Module  # what the optimiser steps through (the model, or its trainable part)
    train_inputs: torch.Tensor  # indexed by the loop's batches
    val_inputs: torch.Tensor
    augment: Augment
    val_logits: Callable[[], torch.Tensor]


def _identity(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return x


class _Head(nn.Module):
    """Trains the head on pre-computed features; indexing/augmentation are identities."""

    def __init__(self, head: nn.Module):
        super().__init__()
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)


def _eval_logits(module: nn.Module, inputs: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    """Logits of cached inputs in eval mode (the module's mode is restored)."""

    def prepare(x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        return x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x

    return forward_batches(module, inputs, batch_size=batch_size, prepare=prepare, eval_mode=module)


class WholeImages:
    """Every batch runs through the whole network, with the configured augmentation."""

    name = "full"
    description = "whole images"

    def prepare(self, run: RunInputs) -> Prepared:
        model, val = run.model, run.val
        return Prepared(
            train_model=model,
            train_inputs=run.train.images,
            val_inputs=val.images,
            augment=build_augment(run.config.augment, rot90=run.config.rot90),
            val_logits=lambda: predict_logits(model, val.images, device=run.device),
        )


class CachedFeatures:
    """Frozen backbone, no augmentation: pooled features once, then only the head trains."""

    name = "features"
    description = "caching frozen backbone features"

    def prepare(self, run: RunInputs) -> Prepared:
        start = time.perf_counter()
        model, device = run.model, run.device
        model.eval()

        def features(split: CachedSplit) -> torch.Tensor:
            return forward_batches(
                model.forward_features, split.images, batch_size=64, prepare=lambda x: x.to(device).float().div_(255.0)
            ).to(device)

        train_inputs, val_inputs = features(run.train), features(run.val)
        head = _Head(model.head_on_features())
        run.log.info(
            "frozen backbone: cached %d-d features in %.1fs", train_inputs.shape[1], time.perf_counter() - start
        )
        return Prepared(head, train_inputs, val_inputs, _identity, lambda: _eval_logits(head, val_inputs))


class CachedPrefix:
    """Frozen lower stages cached once per flip/rotation (each with a line drift when asked); upper stages train."""

    name = "partial"
    description = "caching frozen stages for each flip/rotation"

    def prepare(self, run: RunInputs) -> Prepared:
        from defectlens.training.partial import Suffix, cache_prefix, pick_variants, to_channels_last

        start = time.perf_counter()
        config, model = run.config, to_channels_last(run.model)
        views = CACHE_VIEWS[config.cache_variants if config.rot90 else 2] if config.augment != "none" else (0,)
        perturb = _line_drift(config.seed) if config.augment == "line" else None
        cache = cache_prefix(
            model.to(run.device), run.train.images.to(run.device), config.freeze_stages, variants=views, perturb=perturb
        )
        val_inputs = cache_prefix(model, run.val.images.to(run.device), config.freeze_stages)[0]
        suffix = Suffix(model, config.freeze_stages)
        run.log.info(
            "frozen stages 0..%d: cached %s outputs of %d flips/rotations%s in %.1fs (%.0f MB)",
            config.freeze_stages - 1,
            tuple(cache.shape[2:]),
            len(views),
            ", each with its own line drift" if perturb is not None else "",
            time.perf_counter() - start,
            cache.numel() * cache.element_size() / 2**20,
        )
        # the loop indexes image numbers; pick_variants maps them to one cached copy each
        return Prepared(
            suffix,
            torch.arange(len(run.train)),
            val_inputs,
            pick_variants(cache),
            lambda: _eval_logits(suffix, val_inputs),
        )


def _line_drift(seed: int) -> Callable[[torch.Tensor, int, int], torch.Tensor]:
    """Each cached copy of each batch redrawn with its own seeded acquisition drift (reproducible)."""

    def perturb(batch: torch.Tensor, variant: int, start: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed * 1_000_003 + variant * 100_003 + start)
        return acquisition_shift(batch.cpu(), gen).to(batch.device)

    return perturb


def strategy_for(config: TrainConfig) -> WholeImages | CachedFeatures | CachedPrefix:
    """The strategy ``config`` asks for (its validation has already checked the combination)."""
    if config.cache_frozen:
        return CachedPrefix()
    if config.freeze_backbone and config.augment == "none":
        return CachedFeatures()
    return WholeImages()
