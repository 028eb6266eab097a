"""The fine-tuning loop: train, validate each epoch, keep the best, stop early, checkpoint, resume.

``fit`` is three parts: ``resume`` (the state to continue from), ``train_one_epoch``
and the epoch loop (validate, keep the best, stop early, checkpoint).
One code path for a single process and for DDP under torchrun (rank 0 writes).
Resuming: ``<ckpt_dir>/last.pt`` is loaded when its format, params and data
hashes and world size match this run's; otherwise training starts fresh and
says why. With ``deterministic`` on CPU a resumed run ends with bitwise the same
weights as an uninterrupted one: model/optimizer/scheduler/EMA/RNG states are
restored, and shuffling, augmentation and MixUp draws are functions of (seed, epoch).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from timm.scheduler import CosineLRScheduler
from timm.utils import ModelEmaV3
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from medvit.config import FinetuneConfig
from medvit.io.atomic import atomic_path
from medvit.metrics import summary
from medvit.train import distributed as D
from medvit.train.checkpoint import BEST, LAST, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from medvit.train.data import derive_seed, eval_loader, train_loader
from medvit.train.mixup import mix_batch
from medvit.train.optimizer import build_ema, build_optimizer, build_scheduler, top_lr

log = logging.getLogger(__name__)

MONITOR = "val/auroc_macro"
# Bumped when the checkpoint layout changes (2: timm scheduler and ModelEmaV3 states); an older one starts fresh.
CKPT_FORMAT = 2


@dataclass
class FitResult:
    """What training produced (on every rank)."""

    best_state: dict[str, torch.Tensor]
    history: list[dict[str, float]]
    epochs_run: int
    best_epoch: int
    best_metric: float
    stopped_early: bool
    resumed_from: int | None
    steps: int
    train_seconds: float
    images_seen: int = 0
    notes: list[str] = field(default_factory=list)


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed python/numpy/torch; with ``deterministic`` also force deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def autocast_ctx(device: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA devices with bf16 support; fp32 elsewhere (bf16 is ~400x slower on our CPUs)."""
    if device.startswith("cuda") and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


@torch.no_grad()
def predict(model: nn.Module, ds: Dataset, batch_size: int, info: D.DistInfo, num_workers: int = 0,
            desc: str = "predict") -> np.ndarray:
    """(N, L) float64 logits for every sample of ``ds`` in order, the work split over ranks."""
    model.eval()
    idx_parts, out_parts = [], []
    loader = eval_loader(ds, batch_size, num_workers, info.rank, info.world_size)
    for batch in tqdm(loader, desc=desc, disable=not info.is_main, leave=False):
        with autocast_ctx(info.device):
            logits = model(batch["image"].to(info.device, non_blocking=True))
        idx_parts.append(batch["index"].numpy())
        out_parts.append(logits.float().cpu().numpy())
    mine = (np.concatenate(idx_parts) if idx_parts else np.zeros(0, np.int64),
            np.concatenate(out_parts) if out_parts else np.zeros((0, 0), np.float32))
    parts = D.all_gather_objects(mine)
    idx = np.concatenate([p[0] for p in parts])
    logits = np.concatenate([p[1] for p in parts if p[1].size] or [np.zeros((0, 0))])
    out = np.zeros((len(ds), logits.shape[1] if logits.size else 0), np.float64)  # type: ignore[arg-type]
    if logits.size:
        out[idx] = logits
    return out


def evaluate(model: nn.Module, ds: Dataset, loss_fn: nn.Module, batch_size: int, info: D.DistInfo,
             prefix: str, num_workers: int = 0) -> tuple[dict[str, float], np.ndarray]:
    """``<prefix>loss`` + ranking metrics of ``ds``, and its (N, L) sigmoid scores.

    Unknown (NaN) targets are masked in both: the masked loss and ``metrics.summary``.
    """
    logits = predict(model, ds, batch_size, info, num_workers, desc=prefix.rstrip("/"))
    labels = np.asarray(ds.labels, np.float32)  # type: ignore[attr-defined]
    dev = next(loss_fn.buffers(), torch.empty(0)).device
    with torch.no_grad():
        loss = float(loss_fn(torch.from_numpy(logits).float().to(dev), torch.from_numpy(labels).to(dev)).item())
    scores = torch.sigmoid(torch.from_numpy(logits)).numpy()  # float64, no overflow warnings
    metrics = {f"{prefix}loss": loss, **summary(labels, scores, prefix=prefix)}
    return metrics, scores


def _monitor(metrics: dict[str, float]) -> float:
    v = metrics.get(MONITOR, float("nan"))
    return v if math.isfinite(v) else -metrics.get("val/loss", float("inf"))


def _identity_matches(ckpt: dict[str, Any], identity: dict[str, Any]) -> str | None:
    """None when the checkpoint belongs to this run, else why not."""
    if ckpt.get("format") != CKPT_FORMAT:
        return f"checkpoint format {ckpt.get('format')} is not {CKPT_FORMAT}"
    # world_size too: it changes the per-rank batches, hence the step count the schedule was built for.
    for key in ("params_hash", "data_hash", "world_size"):
        if ckpt.get(key) != identity.get(key):
            return f"{key} differs (checkpoint {ckpt.get(key)}, now {identity.get(key)})"
    return None


@dataclass
class Trainer:
    """The mutable training objects a checkpoint captures."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: CosineLRScheduler
    ema: ModelEmaV3 | None

    @property
    def eval_model(self) -> nn.Module:
        """The EMA weights when EMA is on, else the model: what is validated and kept as best."""
        return self.ema.module if self.ema is not None else self.model


@dataclass
class TrainState:
    """Progress bookkeeping: where training stands and the best epoch so far."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer updates completed
    history: list[dict[str, float]] = field(default_factory=list)
    best_metric: float = -math.inf
    best_epoch: int = -1
    since_best: int = 0
    done: bool = False
    best_state: dict[str, torch.Tensor] | None = None
    resumed_from: int | None = None


def resume(ckpt_dir: Path, identity: dict[str, Any], trainer: Trainer, info: D.DistInfo,
           notes: list[str]) -> TrainState:
    """Restore ``trainer`` and the RNGs from ``<ckpt_dir>/last.pt`` if it belongs to this run.

    Returns:
        The state to continue from (a fresh one when there is no matching checkpoint).
    """
    ckpt = load_checkpoint(ckpt_dir / LAST)
    if ckpt is None:
        return TrainState()
    why = _identity_matches(ckpt, identity)
    if why:
        msg = f"{ckpt_dir / LAST}: not resuming, {why}; starting fresh"
        notes.append(msg)
        if info.is_main:
            log.warning(msg)
        return TrainState()
    trainer.model.load_state_dict(ckpt["model"])
    trainer.optimizer.load_state_dict(ckpt["optimizer"])
    trainer.scheduler.load_state_dict(ckpt["scheduler"])
    if trainer.ema is not None and ckpt.get("ema") is not None:
        trainer.ema.load_state_dict(ckpt["ema"])
    set_rng_state(ckpt["rng"])
    state = TrainState(
        epoch=int(ckpt["epoch"]), step=int(ckpt["step"]), history=list(ckpt["history"]),
        best_metric=float(ckpt["best_metric"]), best_epoch=int(ckpt["best_epoch"]),
        since_best=int(ckpt["since_best"]), done=bool(ckpt["done"]),
        best_state=load_file(ckpt_dir / BEST) if (ckpt_dir / BEST).is_file() else None,
        resumed_from=int(ckpt["epoch"]),
    )
    msg = f"resuming from {ckpt_dir / LAST} after epoch {state.epoch} (step {state.step})"
    notes.append(msg)
    if info.is_main:
        log.info(msg)
    return state


def _save(ckpt_dir: Path, identity: dict[str, Any], trainer: Trainer, state: TrainState) -> None:
    save_checkpoint(ckpt_dir / LAST, {
        "format": CKPT_FORMAT, **identity, "epoch": state.epoch, "step": state.step,
        "model": trainer.model.state_dict(), "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict(),
        "ema": trainer.ema.state_dict() if trainer.ema is not None else None,
        "rng": rng_state(), "history": state.history, "best_metric": state.best_metric,
        "best_epoch": state.best_epoch, "since_best": state.since_best, "done": state.done,
    })


def train_one_epoch(net: nn.Module, trainer: Trainer, loader: DataLoader, loss_fn: nn.Module, cfg: FinetuneConfig,
                    info: D.DistInfo, state: TrainState, on_step: Callable[[int], None] | None = None
                    ) -> tuple[float, int]:
    """One pass over ``loader`` with gradient accumulation; advances ``state.step``.

    Args:
        net: ``trainer.model``, or its DDP wrapper.
        on_step: rank-0 callback with the update count after each optimizer update.

    Returns:
        (mean train loss over all ranks, images this rank saw).
    """
    epoch, device, batches = state.epoch, info.device, len(loader)
    torch.manual_seed(derive_seed(cfg.seed, epoch, info.rank))  # dropout draws: f(seed, epoch, rank)
    mix_gen = torch.Generator().manual_seed(derive_seed(cfg.seed, epoch, info.rank, 1))
    net.train()
    trainer.optimizer.zero_grad(set_to_none=True)
    loss_sum, n_seen = 0.0, 0
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not info.is_main, leave=False)
    for bi, batch in enumerate(bar):
        x = batch["image"].to(device, non_blocking=True)
        y = batch["labels"].to(device, non_blocking=True)
        if x.ndim == 4:  # images; (B, T, D) cached tokens are not mixed
            x, y = mix_batch(x, y, cfg.mixup_alpha, cfg.cutmix_alpha, mix_gen)
        group_start = (bi // cfg.accum_steps) * cfg.accum_steps
        group_len = min(cfg.accum_steps, batches - group_start)
        sync = bi + 1 == group_start + group_len
        ctx = net.no_sync() if info.enabled and not sync else contextlib.nullcontext()  # type: ignore[operator]
        with ctx:
            with autocast_ctx(device):
                loss = loss_fn(net(x), y)
            (loss / group_len).backward()
        loss_sum += float(loss.detach()) * len(x)
        n_seen += len(x)
        if sync:
            if cfg.clip_grad:
                torch.nn.utils.clip_grad_norm_([p for g in trainer.optimizer.param_groups for p in g["params"]],
                                               cfg.clip_grad)
            trainer.optimizer.step()
            trainer.optimizer.zero_grad(set_to_none=True)
            state.step += 1
            trainer.scheduler.step_update(state.step)
            if trainer.ema is not None:
                trainer.ema.update(trainer.model)
            if on_step is not None and info.is_main:
                on_step(state.step)
        bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
    return D.all_reduce_mean(loss_sum / max(n_seen, 1), device), n_seen


def fit(
    model: nn.Module,
    train_ds: Dataset,
    val_ds: Dataset | None,
    cfg: FinetuneConfig,
    loss_fn: nn.Module,
    *,
    info: D.DistInfo,
    ckpt_dir: str | Path,
    identity: dict[str, Any],
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    on_step: Callable[[int], None] | None = None,
) -> FitResult:
    """Train ``model`` (a ``Classifier``) per ``cfg``, resuming from ``ckpt_dir``.

    Args:
        train_ds: dataset yielding image (or prefix tokens), labels, index, with a settable ``epoch``.
        val_ds: the same for validation; may be None.
        loss_fn: training loss; also reported on val.
        identity: ``params_hash``, ``data_hash``, ``world_size`` (resume key) plus provenance stored in the checkpoint.
        on_epoch: rank-0 callback with (epoch, metrics) after each epoch (MLflow logging); on resume it
            first gets the epochs already done, so a new tracking run holds the whole curve.
        on_step: rank-0 callback with the update count after each optimizer update.
    """
    ckpt_dir, notes, device = Path(ckpt_dir), [], info.device
    model.to(device)
    loader, sampler = train_loader(train_ds, cfg.batch_size, cfg.num_workers, cfg.seed, info.rank,
                                   info.world_size, pin_memory=device.startswith("cuda"))
    optimizer = build_optimizer(model, cfg)
    trainer = Trainer(model, optimizer, build_scheduler(optimizer, cfg, math.ceil(len(loader) / cfg.accum_steps)),
                      build_ema(model, cfg.ema_decay))
    state = resume(ckpt_dir, identity, trainer, info, notes)
    if info.is_main and on_epoch is not None:
        for h in state.history:
            on_epoch(int(h["epoch"]), {k: v for k, v in h.items() if k != "epoch"})
    net: nn.Module = model
    if info.enabled:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[info.local_rank] if device.startswith("cuda") else None)
    has_val = val_ds is not None and len(val_ds) > 0  # type: ignore[arg-type]
    t0, images = time.perf_counter(), 0
    while not state.done and state.epoch < cfg.epochs:
        epoch = state.epoch
        sampler.set_epoch(epoch)
        train_ds.epoch = epoch  # type: ignore[attr-defined]
        train_loss, seen = train_one_epoch(net, trainer, loader, loss_fn, cfg, info, state, on_step)
        images += seen
        metrics = {"train/loss": train_loss, "lr": top_lr(optimizer)}
        if has_val:
            val_metrics, _ = evaluate(trainer.eval_model, val_ds, loss_fn, cfg.batch_size, info, "val/",  # type: ignore[arg-type]
                                      cfg.num_workers)
            metrics.update(val_metrics)
        current = _monitor(metrics) if has_val else float(epoch)
        state.epoch = epoch + 1
        if current > state.best_metric:
            state.best_metric, state.best_epoch, state.since_best = current, epoch + 1, 0
            state.best_state = _cpu_state(trainer.eval_model)
            if info.is_main:
                ckpt_dir.mkdir(parents=True, exist_ok=True)
                with atomic_path(ckpt_dir / BEST) as tmp:
                    save_file(state.best_state, str(tmp), metadata={"format": "pt"})
        else:
            state.since_best += 1
        state.history.append({"epoch": epoch + 1, **metrics})
        state.done = state.since_best >= cfg.early_stopping_patience or epoch + 1 >= cfg.epochs
        if state.since_best >= cfg.early_stopping_patience and epoch + 1 < cfg.epochs:
            notes.append(f"early stop after epoch {epoch + 1}: no {MONITOR} gain for {state.since_best} epochs")
        if info.is_main:
            _save(ckpt_dir, identity, trainer, state)
            log.info("epoch %d: %s", epoch + 1, ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
            if on_epoch is not None:
                on_epoch(epoch + 1, metrics)
        D.barrier()
    best_state = state.best_state if state.best_state is not None else _cpu_state(trainer.eval_model)
    return FitResult(
        best_state=best_state, history=state.history, epochs_run=len(state.history), best_epoch=state.best_epoch,
        best_metric=state.best_metric, stopped_early=state.done and len(state.history) < cfg.epochs,
        resumed_from=state.resumed_from, steps=state.step, train_seconds=time.perf_counter() - t0,
        images_seen=images, notes=notes,
    )
