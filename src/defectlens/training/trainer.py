"""``train(config) -> RunResult``: one training run, from a dataset folder to ``best.pt``.

The run in steps: :func:`_setup` (data, device, model, run folder), the input strategy
(:mod:`defectlens.training.strategies`), :class:`_Optimisation` (optimizer, schedule, loss, RNG),
then one :func:`_run_epoch` per epoch, ranked by :class:`EpochSelector` and saved by :func:`_save`.
Training knows nothing of evaluation: the workflow in :mod:`defectlens.workflows.train` evaluates
the best checkpoint afterwards and passes in how a binary validation split is decided.
"""

from __future__ import annotations

import math
import time
import uuid
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from defectlens.core.checkpoint import save_checkpoint
from defectlens.core.errors import DefectlensError
from defectlens.core.progress import Progress
from defectlens.core.runtime import tune_cpu_allocator
from defectlens.core.spec import ModelSpec
from defectlens.data.dataset import CachedSplit, data_fingerprint, load_split
from defectlens.data.manifest import Manifest
from defectlens.models import Classifier, create_model, default_spec
from defectlens.training import distributed as D
from defectlens.training import run as R
from defectlens.training.augment import build_augment
from defectlens.training.config import TrainConfig
from defectlens.training.loop import ValDecisions, argmax_decisions, score, train_one_epoch
from defectlens.training.optim import (
    build_optimizer,
    build_scheduler,
    class_weights,
    freeze_stages,
    seed_everything,
    set_train_mode,
)
from defectlens.training.resume import resume_payload
from defectlens.training.selection import EpochSelector
from defectlens.training.strategies import Prepared, RunInputs, strategy_for
from defectlens.training.targets import check_splits, positive_index, soft_targets


@dataclass
class RunResult:
    """What a training run produced (``metrics`` is filled in by an evaluation afterwards)."""

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


@dataclass
class _Setup:
    """Everything a run is built from, resolved once."""

    config: TrainConfig
    data_dir: Path
    manifest: Manifest
    device: torch.device
    dist: D.DistInfo
    spec: ModelSpec
    positive: int | None
    train_set: CachedSplit
    val_set: CachedSplit
    targets: torch.Tensor
    model: Classifier
    frozen: list[nn.Module]
    run_dir: Path | None
    ckpt: dict[str, Any]  # what every checkpoint of the run carries besides weights and spec


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DefectlensError("device 'cuda' requested but no CUDA GPU is available; use --device cpu")
    return torch.device(name)


def _setup(config: TrainConfig, resume: Path | None, payload: dict[str, Any] | None, progress: Progress) -> _Setup:
    if not config.data:
        raise DefectlensError("no dataset given: pass --data DIR (a folder written by 'defectlens data import')")
    data_dir = Path(config.data).resolve()
    manifest = Manifest.read(data_dir)
    fingerprint = data_fingerprint(manifest)
    if payload is not None and payload.get("data_fingerprint") not in (None, fingerprint):
        raise DefectlensError(
            f"{data_dir}: the dataset changed since the run started (its training images differ from those "
            f"last.pt was trained on); nothing was changed. Start a new run on it instead of --resume"
        )
    check_splits(manifest, progress)
    device = _device(config.device)
    dist = D.init_distributed(device.type)
    if device.type == "cuda" and dist.enabled:
        device = torch.device("cuda", dist.local_rank)
    if config.threads:
        torch.set_num_threads(config.threads)
    tune_cpu_allocator()
    seed_everything(config.seed + dist.rank)
    classes = tuple(manifest.classes)
    positive = positive_index(manifest)
    spec = default_spec(config.model, in_channels=config.channels, input_size=config.input_size, class_names=classes)
    spec = spec.replace(
        positive_class=classes[positive] if positive is not None else None,
        tta=config.tta,
        illumination=config.illumination,
    )
    splits = {
        name: load_split(manifest, name, spec, workers=config.workers, cache_dir=data_dir / ".cache", progress=progress)
        for name in ("train", "val")
    }
    targets = splits["train"].labels
    if config.soft_label:
        targets = soft_targets(splits["train"], config.soft_label, positive, len(classes))
    model = create_model(
        config.model,
        num_classes=len(classes),
        in_channels=config.channels,
        pretrained=config.pretrained and payload is None,
        input_size=spec.input_size,
        dropout=config.dropout,
        illumination=config.illumination,
    )
    if payload is not None:  # before any feature cache is computed from the weights
        try:
            model.load_state_dict(payload["state_dict"])
        except (RuntimeError, TypeError) as exc:
            raise DefectlensError(f"last.pt weights do not fit model {config.model}: {str(exc)[:200]}") from None
    elif config.illumination == "standardize":
        model.set_illumination_reference(splits["train"].images)
    frozen = freeze_stages(model, -1 if config.freeze_backbone else config.freeze_stages)
    model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    run_dir = None
    if dist.is_main:
        run_dir = resume or R.new_run_dir(config.out, config.name or f"{data_dir.name}-{config.model}")
        config.replace(data=str(data_dir)).to_yaml(run_dir / "config.yaml")
    run_id = (payload or {}).get("run_id") or uuid.uuid4().hex  # ties every checkpoint to this run folder
    ckpt = {"config": config.replace(data=str(data_dir)).to_dict(), "data_fingerprint": fingerprint, "run_id": run_id}
    return _Setup(
        config, data_dir, manifest, device, dist, spec, positive, splits["train"], splits["val"], targets, model,
        frozen, run_dir, ckpt,
    )  # fmt: skip


class _Optimisation:
    """Optimizer, schedule, loss, AMP scaler and the batch-order generator of a run."""

    def __init__(self, s: _Setup, train_model: nn.Module):
        config = s.config
        self.optimizer = build_optimizer(
            s.model, lr=config.lr, backbone_lr_scale=config.backbone_lr_scale, weight_decay=config.weight_decay
        )
        per_rank = math.ceil(len(s.train_set) / s.dist.world_size)
        self.steps_per_epoch = math.ceil(per_rank / config.batch_size)
        self.scheduler = build_scheduler(
            self.optimizer,
            total_steps=self.steps_per_epoch * config.epochs,
            warmup_steps=max(1, round(config.warmup_epochs * self.steps_per_epoch)),
        )
        num_classes = len(s.manifest.classes)
        self.weights = class_weights(s.train_set.labels, num_classes) if config.balance == "weighted" else None
        self.loss_fn = nn.CrossEntropyLoss(
            weight=self.weights.to(s.device) if self.weights is not None else None,
            label_smoothing=config.label_smoothing,
        )
        self.scaler = torch.amp.GradScaler("cuda") if s.device.type == "cuda" else None
        self.gen = torch.Generator().manual_seed(config.seed)
        self.train_model = train_model

    def restore(self, payload: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        self.gen.set_state(payload["generator"])
        torch.set_rng_state(payload["torch_rng"])

    def state(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "generator": self.gen.get_state(),
            "torch_rng": torch.get_rng_state(),
        }


def train(
    config: TrainConfig,
    *,
    resume: str | Path | None = None,
    progress: Progress | None = None,
    val_decisions: ValDecisions = argmax_decisions,
) -> RunResult:
    """Train a classifier as ``config`` says; continue the run folder ``resume`` from its ``last.pt``.

    Process-wide torch settings changed for the run (thread count, deterministic algorithms) are
    restored afterwards, so a library caller's other work is unaffected.

    Args:
        config: the resolved settings.
        resume: a run folder to continue.
        progress: receives phases (decoding, caching, epochs) and one note per epoch.
        val_decisions: how a binary validation split is decided each epoch (default: argmax).

    Raises:
        DefectlensError: for a bad dataset folder, missing splits, unknown model or missing weights.
    """
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        return _train(config, Path(resume) if resume else None, progress or Progress(), val_decisions)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


def _train(config: TrainConfig, resume: Path | None, progress: Progress, decisions: ValDecisions) -> RunResult:
    start = time.perf_counter()
    payload = resume_payload(resume) if resume else None
    s = _setup(config, resume, payload, progress)
    log = R.get_logger(s.run_dir)
    log.info(
        "data %s: train %d, val %d images, classes %s; decode %.1fs",
        s.data_dir,
        len(s.train_set),
        len(s.val_set),
        list(s.manifest.classes),
        s.train_set.seconds + s.val_set.seconds,
    )
    strategy = strategy_for(config)
    if strategy.name != "full" and s.dist.enabled:
        raise DefectlensError(
            "frozen-feature caching (freeze_backbone + augment none, or cache_frozen) runs on one process"
        )
    if not s.dist.is_main:
        progress = Progress()
    with progress.phase(strategy.description) if strategy.name != "full" else nullcontext():
        prepared = strategy.prepare(RunInputs(s.model, s.train_set, s.val_set, config, s.device, log))
    train_model = _distribute(s, prepared, log)
    opt = _Optimisation(s, train_model)
    _write_hparams(s, strategy.name, opt, resume)
    selector, first_epoch = EpochSelector(), 1
    history: list[dict[str, Any]] = []
    if payload is not None:
        try:
            opt.restore(payload)
            selector = EpochSelector.from_state(payload)
        except (ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise DefectlensError(f"{resume}/last.pt: its optimizer state does not fit this run ({exc})") from None
        first_epoch = int(payload["epoch"]) + 1
        history, dropped = R.truncate_history(s.run_dir, first_epoch - 1) if s.run_dir else ([], 0)
        if dropped:
            log.info("history.jsonl: %d unreadable line(s) dropped", dropped)
            progress.note(f"warning: history.jsonl had {dropped} unreadable line(s); they were dropped")
        log.info("resumed from %s at epoch %d", resume, first_epoch)
    if s.run_dir is not None and first_epoch == 1 and strategy.name != "features":
        _save_samples(s, s.run_dir)
    labels = s.targets.to(s.device) if strategy.name != "full" else s.targets
    for epoch in range(first_epoch, config.epochs + 1):
        row = _run_epoch(s, prepared, opt, labels, epoch, progress, decisions)
        history.append(row)
        improved = selector.update(epoch, row)
        _report_epoch(s, row, improved, log, progress)
        if s.run_dir is not None:
            R.append_history(s.run_dir, row)
            _save(s, opt, selector, row, improved)
        if config.patience and selector.bad_epochs >= config.patience:
            log.info("early stop: no better validation macro-F1 for %d epochs", selector.bad_epochs)
            break
    D.barrier(s.dist)
    D.cleanup(s.dist)
    result = RunResult(s.run_dir, s.spec, selector.best_epoch, selector.best_f1, history)
    result.seconds = time.perf_counter() - start
    log.info(
        "trained in %.1fs; best epoch %d, val macro-F1 %.4f", result.seconds, selector.best_epoch, selector.best_f1
    )
    return result


def _distribute(s: _Setup, prepared: Prepared, log: Any) -> nn.Module:
    if not s.dist.enabled:
        return prepared.train_model
    from torch.nn.parallel import DistributedDataParallel

    log.info("distributed: %d processes, backend %s", s.dist.world_size, "nccl" if s.device.type == "cuda" else "gloo")
    return DistributedDataParallel(s.model, device_ids=[s.device.index] if s.device.type == "cuda" else None)


def _write_hparams(s: _Setup, mode: str, opt: _Optimisation, resume: Path | None) -> None:
    if s.run_dir is None:
        return
    model = s.model
    R.write_hparams(
        s.run_dir,
        {
            "config": s.ckpt["config"],
            "data_fingerprint": s.ckpt["data_fingerprint"],
            "run_id": s.ckpt["run_id"],
            "mode": mode,
            "device": str(s.device),
            "world_size": s.dist.world_size,
            "classes": list(s.manifest.classes),
            "positive_class": s.spec.positive_class,
            "train_images": len(s.train_set),
            "val_images": len(s.val_set),
            "steps_per_epoch": opt.steps_per_epoch,
            "parameters": sum(p.numel() for p in model.parameters()),
            "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "class_weights": opt.weights.tolist() if opt.weights is not None else None,
            "torch": torch.__version__,
            "resumed_from": str(resume) if resume else None,
        },
    )


def _save_samples(s: _Setup, run_dir: Path) -> None:
    """``train_samples.png``: 16 training images as the first epoch's augmentation shows them."""
    config = s.config
    order = torch.randperm(len(s.train_set), generator=torch.Generator().manual_seed(config.seed))[:16]
    augment = build_augment(config.augment, rot90=config.rot90)
    sample = augment(s.train_set.images[order], torch.Generator().manual_seed(1))
    R.save_samples(run_dir, sample.numpy(), [s.manifest.classes[int(i)] for i in s.train_set.labels[order]])


def _run_epoch(
    s: _Setup,
    prepared: Prepared,
    opt: _Optimisation,
    labels: torch.Tensor,
    epoch: int,
    progress: Progress,
    decisions: ValDecisions,
) -> dict[str, Any]:
    config = s.config
    t_epoch = time.perf_counter()
    order = _epoch_order(config, s.train_set, epoch, s.dist)
    set_train_mode(opt.train_model, s.frozen)
    with progress.phase(f"epoch {epoch}/{config.epochs}", total=len(order), unit="img", transient=True) as phase:
        stats = train_one_epoch(
            opt.train_model,
            images=prepared.train_inputs,
            labels=labels,
            order=order,
            batch_size=config.batch_size,
            augment=prepared.augment,
            gen=opt.gen,
            optimizer=opt.optimizer,
            scheduler=opt.scheduler,
            loss_fn=opt.loss_fn,
            device=s.device,
            scaler=opt.scaler,
            on_step=lambda n: phase.advance(n),
        )
    t_eval = time.perf_counter()
    return {
        "epoch": epoch,
        "train_loss": D.all_reduce_mean(stats.loss, s.dist),
        "train_accuracy": D.all_reduce_mean(stats.accuracy, s.dist),
        **score(prepared.val_logits(), s.val_set.labels, positive=s.positive, decisions=decisions),
        "lr": opt.optimizer.param_groups[-1]["lr"],
        "data_s": round(stats.data_s, 3),
        "compute_s": round(stats.compute_s, 3),
        "eval_s": round(time.perf_counter() - t_eval, 3),
        "epoch_s": round(time.perf_counter() - t_epoch, 3),
    }


def _report_epoch(s: _Setup, row: dict[str, Any], improved: bool, log: Any, progress: Progress) -> None:
    log.info(
        "epoch %d: train loss %.4f, acc %.4f; val loss %.4f, acc %.4f, macro-F1 %.4f%s; data %.1fs, compute %.1fs, "
        "eval %.1fs",
        row["epoch"],
        row["train_loss"],
        row["train_accuracy"],
        row["val_loss"],
        row["val_accuracy"],
        row["val_macro_f1"],
        " (best)" if improved else "",
        row["data_s"],
        row["compute_s"],
        row["eval_s"],
    )
    if s.run_dir is not None:
        # under 80 columns, so it never wraps in a terminal or a log (train/val pairs; * = best so far)
        progress.note(
            f"epoch {row['epoch']}/{s.config.epochs}: loss {row['train_loss']:.3f}/{row['val_loss']:.3f}"
            f" acc {row['train_accuracy']:.3f}/{row['val_accuracy']:.3f} val F1 {row['val_macro_f1']:.4f}"
            f"{' *' if improved else ''} {row['epoch_s']:.0f}s"
        )


def _save(s: _Setup, opt: _Optimisation, selector: EpochSelector, row: dict[str, Any], improved: bool) -> None:
    assert s.run_dir is not None
    common = {**s.ckpt, "epoch": row["epoch"], "metrics": row}
    if improved:
        save_checkpoint(s.run_dir / "best.pt", s.model, s.spec, **common)
    save_checkpoint(s.run_dir / "last.pt", s.model, s.spec, **common, **opt.state(), **selector.state())


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
