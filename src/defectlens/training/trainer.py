"""``train(config) -> RunResult``: the whole training run, from dataset folder to evaluated best checkpoint.

Order of work: decode every split once into uint8 tensors; build the model from the registry;
train with AdamW + warmup/cosine, label smoothing and class balancing; after each epoch score the
validation split (binary: macro-F1 at the F1-optimal threshold) and keep ``best.pt``; stop early
when validation stops improving; finally evaluate the best checkpoint (calibration temperature,
operating threshold, metrics and report) and write those decisions into its spec.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from defectlens.config import TrainConfig
from defectlens.data.dataset import CachedSplit, load_split, train_fingerprint
from defectlens.data.manifest import Manifest
from defectlens.errors import DefectlensError
from defectlens.models import create_model, default_spec
from defectlens.models.spec import ModelSpec
from defectlens.runtime import tune_cpu_allocator
from defectlens.training import distributed as D
from defectlens.training import run as R
from defectlens.training.augment import build_augment
from defectlens.training.checkpoint import read_checkpoint, save_checkpoint
from defectlens.training.loop import predict_logits, score, train_one_epoch
from defectlens.training.optim import (
    build_optimizer,
    build_scheduler,
    class_weights,
    freeze_stages,
    seed_everything,
    set_train_mode,
)

# dihedral() indices: 4 = identity, 180-degree rotation and the two flips (no transposition)
_VARIANTS = {8: (0, 1, 2, 3, 4, 5, 6, 7), 4: (0, 2, 4, 6), 2: (0, 4)}


def soft_targets(split: CachedSplit, key: str, positive: int | None, num_classes: int) -> torch.Tensor:
    """Class-probability targets (N, 2) from each record's ``meta[key]`` (probability of the positive class).

    Raises:
        DefectlensError: for a multi-class task, or a record without a probability in [0, 1].
    """
    if positive is None or num_classes != 2:
        raise DefectlensError(f"soft_label={key!r} needs a binary task with a positive class")
    probs = []
    for r in split.records:
        try:
            p = float(r.meta[key])
        except (KeyError, TypeError, ValueError):
            raise DefectlensError(f"{r.path}: soft_label needs a numeric meta field {key!r}, got {r.meta}") from None
        if not 0.0 <= p <= 1.0:
            raise DefectlensError(f"{r.path}: meta {key}={p} is not a probability in [0, 1]")
        probs.append(p)
    pos = torch.tensor(probs, dtype=torch.float32)
    out = torch.empty(len(probs), 2)
    out[:, positive], out[:, 1 - positive] = pos, 1.0 - pos
    return out


def rank_epoch(val_f1: float, best_f1: float, tol: float = 1e-9) -> tuple[bool, bool]:
    """``(becomes_best, strictly_better)`` for an epoch's validation macro-F1: ties go to the later epoch."""
    return val_f1 >= best_f1 - tol, val_f1 > best_f1 + tol


@dataclass
class RunResult:
    """What a training run produced."""

    run_dir: Path | None
    spec: ModelSpec
    best_epoch: int
    best_val_macro_f1: float
    history: list[dict[str, Any]]
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def best_checkpoint(self) -> Path | None:
        return self.run_dir / "best.pt" if self.run_dir else None


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DefectlensError("device 'cuda' requested but no CUDA GPU is available; use --device cpu")
    return torch.device(name)


def config_from_run(run_dir: str | Path) -> TrainConfig:
    """The config a run was started with (from its ``last.pt``), for ``--resume``."""
    payload = read_checkpoint(Path(run_dir) / "last.pt")
    cfg = {k: v for k, v in payload["config"].items() if k != "train_fingerprint"}
    return TrainConfig.from_dict(cfg, source=str(Path(run_dir) / "last.pt"))


def _positive_index(manifest: Manifest) -> int | None:
    pos = manifest.info.get("positive_class")
    if len(manifest.classes) != 2 or pos is None:
        return None
    return manifest.classes.index(pos)


def _head_on_features(model: nn.Module) -> nn.Module:
    """The part of the head after pooling, which maps ``forward_features`` output to logits."""
    from defectlens.models.registry import PooledHead

    head: Any = model.head
    return nn.Sequential(*list(head)[2:]) if isinstance(head, PooledHead) else head


class _FeatureModel(nn.Module):
    """Trains the head on pre-computed features; indexing/augmentation are identities."""

    def __init__(self, head: nn.Module):
        super().__init__()
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)


def train(config: TrainConfig, *, resume: str | Path | None = None, progress: bool = True) -> RunResult:
    """Train a classifier as ``config`` says; continue the run folder ``resume`` from its ``last.pt``.

    Process-wide torch settings changed for the run (thread count, deterministic algorithms) are
    restored afterwards, so a library caller's other work is unaffected.

    Raises:
        DefectlensError: for a bad dataset folder, missing splits, unknown model or missing weights.
    """
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        return _train(config, resume=resume, progress=progress)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


def _train(config: TrainConfig, *, resume: str | Path | None, progress: bool) -> RunResult:
    start = time.perf_counter()
    if not config.data:
        raise DefectlensError("no dataset given: pass --data DIR (a folder written by 'defectlens data import')")
    data_dir = Path(config.data).resolve()
    manifest = Manifest.read(data_dir)
    device = _device(config.device)
    dist = D.init_distributed(device.type)
    if device.type == "cuda" and dist.enabled:
        device = torch.device("cuda", dist.local_rank)
    if config.threads:
        torch.set_num_threads(config.threads)
    tune_cpu_allocator()
    seed_everything(config.seed + dist.rank)

    classes = tuple(manifest.classes)
    positive = _positive_index(manifest)
    spec = default_spec(config.model, in_channels=config.channels, input_size=config.input_size, class_names=classes)
    spec = spec.replace(positive_class=classes[positive] if positive is not None else None, tta=config.tta)
    cache_dir = data_dir / ".cache"
    train_set = load_split(manifest, "train", spec, workers=config.workers, cache_dir=cache_dir)
    val_set = load_split(manifest, "val", spec, workers=config.workers, cache_dir=cache_dir)
    targets = soft_targets(train_set, config.soft_label, positive, len(classes)) if config.soft_label else None
    if targets is None:
        targets = train_set.labels

    resume_payload = read_checkpoint(Path(resume) / "last.pt") if resume else None
    model = create_model(
        config.model,
        num_classes=len(classes),
        in_channels=config.channels,
        pretrained=config.pretrained and resume_payload is None,
        input_size=spec.input_size,
        dropout=config.dropout,
    )
    if resume_payload is not None:  # before any feature cache is computed from the weights
        model.load_state_dict(resume_payload["state_dict"])
    frozen = freeze_stages(model, -1 if config.freeze_backbone else config.freeze_stages)
    model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)

    run_dir: Path | None = None
    if dist.is_main:
        run_dir = (
            Path(resume) if resume else R.new_run_dir(config.out, config.name or f"{data_dir.name}-{config.model}")
        )
        config.replace(data=str(data_dir)).to_yaml(run_dir / "config.yaml")
    log = R.get_logger(run_dir)
    ckpt_config = {**config.replace(data=str(data_dir)).to_dict(), "train_fingerprint": train_fingerprint(manifest)}
    log.info(
        "data %s: train %d, val %d images, classes %s; decode %.1fs",
        data_dir,
        len(train_set),
        len(val_set),
        list(classes),
        train_set.seconds + val_set.seconds,
    )

    # What never changes is computed once: with a frozen backbone and no augmentation, the pooled
    # features ("features" mode); with frozen lower stages and only flips/rot90, the lower stages'
    # output for every flip/rotation ("partial" mode). Otherwise images go through the whole network.
    mode = "features" if config.freeze_backbone and config.augment == "none" else "full"
    mode = "partial" if config.cache_frozen else mode
    if mode != "full" and dist.enabled:
        raise DefectlensError(
            "frozen-feature caching (freeze_backbone + augment none, or cache_frozen) runs on one process"
        )
    train_model: nn.Module = model
    augment = build_augment(config.augment, rot90=config.rot90)
    t0 = time.perf_counter()
    if mode == "features":
        train_inputs = _features(model, train_set, device)
        val_inputs = _features(model, val_set, device)
        train_model = _FeatureModel(_head_on_features(model))
        augment = _identity
        log.info("frozen backbone: cached %d-d features in %.1fs", train_inputs.shape[1], time.perf_counter() - t0)
    elif mode == "partial":
        from defectlens.training.partial import Suffix, cache_prefix, pick_variants, to_channels_last

        to_channels_last(model)

        variants = _VARIANTS[config.cache_variants if config.rot90 else 2] if config.augment == "flips" else (0,)
        cache = cache_prefix(model.to(device), train_set.images.to(device), config.freeze_stages, variants=variants)
        val_inputs = cache_prefix(model, val_set.images.to(device), config.freeze_stages)[0]
        train_inputs = torch.arange(len(train_set))  # the loop indexes these; pick_variants maps them to cache rows
        augment = pick_variants(cache)
        train_model = Suffix(model, config.freeze_stages)
        log.info(
            "frozen stages 0..%d: cached %s outputs of %d flips/rotations in %.1fs (%.0f MB)",
            config.freeze_stages - 1,
            tuple(cache.shape[2:]),
            len(variants),
            time.perf_counter() - t0,
            cache.numel() * cache.element_size() / 2**20,
        )
    else:
        train_inputs, val_inputs = train_set.images, val_set.images
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel

        train_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        log.info("distributed: %d processes, backend %s", dist.world_size, "nccl" if device.type == "cuda" else "gloo")

    optimizer = build_optimizer(
        model, lr=config.lr, backbone_lr_scale=config.backbone_lr_scale, weight_decay=config.weight_decay
    )
    per_rank = math.ceil(len(train_set) / dist.world_size)
    steps_per_epoch = math.ceil(per_rank / config.batch_size)
    scheduler = build_scheduler(
        optimizer,
        total_steps=steps_per_epoch * config.epochs,
        warmup_steps=max(1, round(config.warmup_epochs * steps_per_epoch)),
    )
    weights = class_weights(train_set.labels, len(classes)) if config.balance == "weighted" else None
    loss_fn = nn.CrossEntropyLoss(
        weight=weights.to(device) if weights is not None else None, label_smoothing=config.label_smoothing
    )
    scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" else None
    gen = torch.Generator().manual_seed(config.seed)
    if run_dir is not None:
        R.write_hparams(
            run_dir,
            {
                "config": ckpt_config,
                "mode": mode,
                "device": str(device),
                "world_size": dist.world_size,
                "classes": list(classes),
                "positive_class": spec.positive_class,
                "train_images": len(train_set),
                "val_images": len(val_set),
                "steps_per_epoch": steps_per_epoch,
                "parameters": sum(p.numel() for p in model.parameters()),
                "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
                "class_weights": weights.tolist() if weights is not None else None,
                "torch": torch.__version__,
                "resumed_from": str(resume) if resume else None,
            },
        )

    first_epoch, best_f1, best_epoch, bad_epochs = 1, -1.0, 0, 0
    best_loss = float("inf")
    history: list[dict[str, Any]] = []
    if resume_payload is not None:
        optimizer.load_state_dict(resume_payload["optimizer"])
        scheduler.load_state_dict(resume_payload["scheduler"])
        gen.set_state(resume_payload["generator"])
        torch.set_rng_state(resume_payload["torch_rng"])
        first_epoch = int(resume_payload["epoch"]) + 1
        best_f1, best_epoch = float(resume_payload["best_val_macro_f1"]), int(resume_payload["best_epoch"])
        best_loss = float(resume_payload.get("best_val_loss", float("inf")))
        bad_epochs = int(resume_payload["bad_epochs"])
        history = R.truncate_history(run_dir, first_epoch - 1) if run_dir else []
        log.info("resumed from %s at epoch %d", resume, first_epoch)
    if run_dir is not None and first_epoch == 1 and mode != "features":
        order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(config.seed))[:16]
        sample = build_augment(config.augment, rot90=config.rot90)(
            train_set.images[order], torch.Generator().manual_seed(1)
        )
        R.plot_samples(run_dir, sample.numpy(), [classes[int(i)] for i in train_set.labels[order]])

    labels_dev = targets.to(device) if mode != "full" else targets
    bar = _progress(progress and dist.is_main)
    with bar:
        for epoch in range(first_epoch, config.epochs + 1):
            t_epoch = time.perf_counter()
            order = _epoch_order(config, train_set, epoch, dist)
            set_train_mode(train_model, frozen)
            task = bar.add_task(f"epoch {epoch}/{config.epochs}", total=len(range(0, len(order), config.batch_size)))
            stats = train_one_epoch(
                train_model,
                images=train_inputs,
                labels=labels_dev,
                order=order,
                batch_size=config.batch_size,
                augment=augment,
                gen=gen,
                optimizer=optimizer,
                scheduler=scheduler,
                loss_fn=loss_fn,
                device=device,
                scaler=scaler,
                on_step=functools.partial(bar.advance, task),
            )
            bar.remove_task(task)
            t_eval = time.perf_counter()
            if mode == "full":
                val_logits = predict_logits(model, val_inputs, device=device)
            else:
                val_logits = _logits_from_inputs(train_model, val_inputs)
            row = {
                "epoch": epoch,
                "train_loss": D.all_reduce_mean(stats.loss, dist),
                **score(val_logits, val_set.labels, positive=positive),
                "lr": optimizer.param_groups[-1]["lr"],
                "data_s": round(stats.data_s, 3),
                "compute_s": round(stats.compute_s, 3),
                "eval_s": round(time.perf_counter() - t_eval, 3),
                "epoch_s": round(time.perf_counter() - t_epoch, 3),
            }
            history.append(row)
            # A tie in macro-F1 (common once validation is saturated, e.g. 1.0 on casting) goes to the
            # later epoch: a saturated split cannot rank the epochs, and under the cosine schedule the
            # later model has trained longer at a lower rate. (Breaking ties by validation loss kept an
            # under-trained epoch-2 casting model: train accuracy 0.995, while its unsmoothed val loss
            # rose from a few over-confident samples.) Only a strict gain resets early stopping.
            best, strict = rank_epoch(row["val_macro_f1"], best_f1)
            if best:
                best_f1, best_epoch = max(best_f1, row["val_macro_f1"]), epoch
                best_loss = row["val_loss"]
            bad_epochs = 0 if strict else bad_epochs + 1
            improved = best_epoch == epoch
            log.info(
                "epoch %d: train loss %.4f, val loss %.4f, acc %.4f, macro-F1 %.4f%s; data %.1fs, compute %.1fs, "
                "eval %.1fs",
                epoch,
                row["train_loss"],
                row["val_loss"],
                row["val_accuracy"],
                row["val_macro_f1"],
                " (best)" if improved else "",
                row["data_s"],
                row["compute_s"],
                row["eval_s"],
            )
            if run_dir is not None:
                bar.console.print(
                    f"epoch {epoch}/{config.epochs}  loss {row['train_loss']:.4f}  val loss {row['val_loss']:.4f}  "
                    f"acc {row['val_accuracy']:.4f}  macro-F1 {row['val_macro_f1']:.4f}"
                    f"{'  *' if improved else ''}  ({row['epoch_s']:.0f}s: data {row['data_s']:.0f}s)"
                )
                R.append_history(run_dir, row)
                common = {
                    "config": ckpt_config,
                    "epoch": epoch,
                    "metrics": row,
                    "train_fingerprint": ckpt_config["train_fingerprint"],
                }
                if improved:
                    save_checkpoint(run_dir / "best.pt", model, spec, **common)
                save_checkpoint(
                    run_dir / "last.pt",
                    model,
                    spec,
                    **common,
                    optimizer=optimizer.state_dict(),
                    scheduler=scheduler.state_dict(),
                    generator=gen.get_state(),
                    torch_rng=torch.get_rng_state(),
                    best_val_macro_f1=best_f1,
                    best_val_loss=best_loss,
                    best_epoch=best_epoch,
                    bad_epochs=bad_epochs,
                )
            if config.patience and bad_epochs >= config.patience:
                log.info("early stop: no better validation macro-F1 for %d epochs", bad_epochs)
                break
    D.barrier(dist)
    result = RunResult(run_dir, spec, best_epoch, best_f1, history)
    if run_dir is not None:
        R.plot_curves(run_dir, history)
        if config.evaluate:
            from defectlens.training.finalize import evaluate_best

            result.spec, result.metrics = evaluate_best(run_dir, manifest, config, log=log)
    D.cleanup(dist)
    result.seconds = time.perf_counter() - start
    log.info("done in %.1fs; best epoch %d, val macro-F1 %.4f", result.seconds, best_epoch, best_f1)
    return result


def _identity(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return x


@torch.inference_mode()
def _logits_from_inputs(module: nn.Module, inputs: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    was_training = module.training
    module.eval()
    out = []
    for i in range(0, len(inputs), batch_size):
        x = inputs[i : i + batch_size].float()
        out.append(module(x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x).float().cpu())
    module.train(was_training)
    return torch.cat(out)


def _features(model: Any, split: CachedSplit, device: torch.device) -> torch.Tensor:
    model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(split), 64):
            x = split.images[i : i + 64].to(device).float().div_(255.0)
            out.append(model.forward_features(x))
    return torch.cat(out).clone()


def _epoch_order(config: TrainConfig, train_set: CachedSplit, epoch: int, dist: D.DistInfo) -> torch.Tensor:
    """This rank's sample order for ``epoch``: a seeded permutation (DistributedSampler under DDP)
    or, with ``balance=sampler``, a class-balanced draw with replacement."""
    n = len(train_set)
    g = torch.Generator().manual_seed(config.seed * 1000 + epoch)
    if config.balance == "sampler":
        w = class_weights(train_set.labels, int(train_set.labels.max()) + 1)[train_set.labels]
        order = torch.multinomial(w, n, replacement=True, generator=g)
        return order[dist.rank :: dist.world_size]
    if dist.enabled:
        from torch.utils.data import DistributedSampler

        sampler: DistributedSampler[int] = DistributedSampler(
            range(n),  # type: ignore[arg-type]
            num_replicas=dist.world_size,
            rank=dist.rank,
            seed=config.seed,
        )
        sampler.set_epoch(epoch)
        return torch.tensor(list(sampler), dtype=torch.int64)
    return torch.randperm(n, generator=g)


def _progress(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=True,
        disable=not enabled,
    )
