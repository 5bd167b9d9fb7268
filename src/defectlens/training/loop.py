"""One epoch of training and the validation score of an epoch, on in-memory tensors.

Batches are index tensors into the uint8 cache; augmentation, the forward/backward pass and the
optimiser step are timed separately so the log shows whether data or compute is the bottleneck.
How a binary validation split is decided (argmax, or a threshold chosen on it) is passed in as a
:data:`ValDecisions` function, so training needs nothing of evaluation.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from defectlens.core.errors import DefectlensError
from defectlens.models import forward_batches

#: ``(probabilities (N, 2), labels, positive index) -> (decisions, threshold)`` for a binary split.
ValDecisions = Callable[[np.ndarray, np.ndarray, int], tuple[np.ndarray, float]]


def argmax_decisions(probs: np.ndarray, y: np.ndarray, positive: int) -> tuple[np.ndarray, float]:
    """The most probable class, i.e. a 0.5 threshold on a binary task."""
    return probs.argmax(axis=1), float("nan")


@dataclass
class EpochStats:
    loss: float
    data_s: float
    compute_s: float
    steps: int
    accuracy: float = float("nan")  # running accuracy on the augmented training batches


def diverged(what: str, optimizer: torch.optim.Optimizer | None) -> DefectlensError:
    """The one-line refusal of a run whose weights blew up (NaN or infinite), so no model is saved
    from it: a diverged model would give a verdict for every part from numbers that mean nothing."""
    lr = f" (it is {optimizer.param_groups[0]['lr']:g})" if optimizer is not None else ""
    return DefectlensError(
        f"training diverged: {what}; lower the learning rate (--lr){lr} and train again, and check the images "
        "for extreme values"
    )


def batches(order: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    for i in range(0, len(order), batch_size):
        yield order[i : i + batch_size]


def train_one_epoch(
    model: nn.Module,
    *,
    images: torch.Tensor,
    labels: torch.Tensor,
    order: torch.Tensor,
    batch_size: int,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor],
    gen: torch.Generator,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loss_fn: nn.Module,
    device: torch.device,
    scaler: torch.amp.GradScaler | None = None,
    on_step: Callable[[int], None] | None = None,
) -> EpochStats:
    """Train over ``order`` (indices into ``images``); returns mean loss and the time split."""
    cuda = device.type == "cuda"
    data_s = compute_s = 0.0
    total, count, steps, correct = 0.0, 0, 0, 0
    for idx in batches(order, batch_size):
        t0 = time.perf_counter()
        x = augment(images[idx], gen)
        y = labels[idx]
        if cuda:
            x = x.to(device, non_blocking=True)
            if x.ndim == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            y = y.to(device, non_blocking=True)
        t1 = time.perf_counter()
        autocast = torch.autocast("cuda", dtype=torch.float16) if scaler is not None else nullcontext()
        with autocast:
            logits = model(x)
            loss = loss_fn(logits, y)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        scheduler.step()
        value = float(loss.detach())
        if not math.isfinite(value) and scaler is None:  # AMP skips a non-finite step itself; its val check stays
            raise diverged(f"the training loss is {value} at step {steps + 1} of this epoch", optimizer)
        total += value * len(idx)
        hard = y.argmax(dim=1) if y.ndim == 2 else y  # soft targets: their most probable class
        correct += int((logits.detach().argmax(dim=1) == hard).sum())
        count += len(idx)
        steps += 1
        t2 = time.perf_counter()
        data_s += t1 - t0
        compute_s += t2 - t1
        if on_step is not None:
            on_step(len(idx))
    return EpochStats(
        loss=total / max(1, count), data_s=data_s, compute_s=compute_s, steps=steps, accuracy=correct / max(1, count)
    )


def predict_logits(
    model: nn.Module, images: torch.Tensor, *, device: torch.device, batch_size: int = 32
) -> torch.Tensor:
    """Logits for a uint8 tensor (N, C, H, W), in eval mode, on CPU."""

    def prepare(x: torch.Tensor) -> torch.Tensor:
        x = x.to(device).float().div_(255.0)
        return x.contiguous(memory_format=torch.channels_last) if device.type == "cuda" else x

    return forward_batches(model, images, batch_size=batch_size, prepare=prepare, eval_mode=model)


def score(
    logits: torch.Tensor, labels: torch.Tensor, *, positive: int | None, decisions: ValDecisions = argmax_decisions
) -> dict[str, float]:
    """Validation loss, accuracy and macro-F1; a binary task is decided by ``decisions``."""
    from sklearn.metrics import accuracy_score, f1_score

    if not bool(torch.isfinite(logits).all()):
        raise diverged("the model's outputs on the validation images are not finite numbers", None)
    loss = float(F.cross_entropy(logits, labels))
    probs = torch.softmax(logits, dim=1).numpy()
    y = labels.numpy()
    threshold = float("nan")
    if positive is not None and probs.shape[1] == 2 and (y == positive).any():
        pred, threshold = decisions(probs, y, positive)
    else:
        pred = probs.argmax(axis=1)
    return {
        "val_loss": loss,
        "val_accuracy": float(accuracy_score(y, pred)),
        "val_macro_f1": float(f1_score(y, pred, average="macro", zero_division=0)),
        "val_threshold": threshold,
    }
