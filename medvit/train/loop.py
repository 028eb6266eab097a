"""The fine-tuning loop: train, validate each epoch, keep the best, stop early, checkpoint, resume.

One code path for a single process and for DDP under torchrun (rank 0 writes).
Resuming: ``<ckpt_dir>/last.pt`` is loaded when its params and data hashes
match this run's; otherwise training starts fresh and says why. With
``deterministic`` on CPU a resumed run ends with bitwise the same weights as an
uninterrupted one: model/optimizer/scheduler/EMA/RNG states are restored, and
shuffling, augmentation and MixUp draws are functions of (seed, epoch).
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
from torch import nn
from torch.utils.data import Dataset
from tqdm import tqdm

from medvit.metrics import summary
from medvit.io.atomic import atomic_path
from medvit.train import distributed as D
from medvit.train.checkpoint import BEST, LAST, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from medvit.train.data import derive_seed, eval_loader, train_loader
from medvit.train.ema import ModelEma
from medvit.train.mixup import mix_batch
from medvit.train.optimizer import build_optimizer
from medvit.train.schedule import WarmupCosine

log = logging.getLogger(__name__)

MONITOR = "val/auroc_macro"
# Test hook: rank 0 sleeps after this many optimizer steps, so a test can SIGKILL it mid-epoch.
STALL_ENV = "MEDVIT_STALL_AT_STEP"


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
    """``<prefix>loss`` + ranking metrics of ``ds``, and its (N, L) sigmoid scores."""
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
    # world_size too: it changes the per-rank batches, hence the step count the schedule was built for.
    for key in ("params_hash", "data_hash", "world_size"):
        if ckpt.get(key) != identity.get(key):
            return f"{key} differs (checkpoint {ckpt.get(key)}, now {identity.get(key)})"
    return None


def fit(
    model: nn.Module,
    train_ds: Dataset,
    val_ds: Dataset | None,
    cfg: Any,
    loss_fn: nn.Module,
    *,
    info: D.DistInfo,
    ckpt_dir: str | Path,
    identity: dict[str, Any],
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> FitResult:
    """Train ``model`` (a ``Classifier``) per ``cfg`` (``FinetuneConfig``), resuming from ``ckpt_dir``.

    Args:
        train_ds / val_ds: datasets yielding image (or token), labels, index; ``val_ds`` may be None.
        loss_fn: training loss; also reported on val.
        identity: ``params_hash``, ``data_hash`` (resume key) plus provenance stored in the checkpoint.
        on_epoch: rank-0 callback with (epoch, metrics) after each epoch (MLflow logging).
    """
    ckpt_dir = Path(ckpt_dir)
    notes: list[str] = []
    device = info.device
    model.to(device)
    optimizer = build_optimizer(model, cfg.lr, cfg.weight_decay, cfg.layer_decay)
    loader, sampler = train_loader(train_ds, cfg.batch_size, cfg.num_workers, cfg.seed, info.rank,
                                   info.world_size, pin_memory=device.startswith("cuda"))
    batches = len(loader)
    steps_per_epoch = math.ceil(batches / cfg.accum_steps)
    total_steps = steps_per_epoch * cfg.epochs
    scheduler = WarmupCosine(optimizer, cfg.lr, round(cfg.warmup_epochs * steps_per_epoch), total_steps)
    ema = ModelEma(model, cfg.ema_decay) if cfg.ema_decay > 0 else None

    start_epoch, step, history = 0, 0, []
    best_metric, best_epoch, since_best, done = -math.inf, -1, 0, False
    best_state: dict[str, torch.Tensor] | None = None
    resumed_from = None
    ckpt = load_checkpoint(ckpt_dir / LAST)
    if ckpt is not None:
        why = _identity_matches(ckpt, identity)
        if why:
            msg = f"{ckpt_dir / LAST}: not resuming, {why}; starting fresh"
            notes.append(msg)
            if info.is_main:
                log.warning(msg)
        else:
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            if ema is not None and ckpt.get("ema") is not None:
                ema.load_state_dict(ckpt["ema"])
            set_rng_state(ckpt["rng"])
            start_epoch, step, history = int(ckpt["epoch"]), int(ckpt["step"]), list(ckpt["history"])
            best_metric, best_epoch = float(ckpt["best_metric"]), int(ckpt["best_epoch"])
            since_best, done = int(ckpt["since_best"]), bool(ckpt["done"])
            if (ckpt_dir / BEST).is_file():
                best_state = load_file(ckpt_dir / BEST)
            resumed_from = start_epoch
            msg = f"resuming from {ckpt_dir / LAST} after epoch {start_epoch} (step {step})"
            notes.append(msg)
            if info.is_main:
                log.info(msg)
                if on_epoch is not None:  # the new tracking run gets the whole curve, not just the tail
                    for h in history:
                        on_epoch(int(h["epoch"]), {k: v for k, v in h.items() if k != "epoch"})

    net: nn.Module = model
    if info.enabled:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[info.local_rank] if device.startswith("cuda") else None)
    stall_at = int(os.environ.get(STALL_ENV, "0") or 0)
    t0, images = time.perf_counter(), 0
    epoch = start_epoch
    for epoch in range(start_epoch, cfg.epochs):
        if done:
            break
        sampler.set_epoch(epoch)
        train_ds.epoch = epoch  # type: ignore[attr-defined]
        torch.manual_seed(derive_seed(cfg.seed, epoch, info.rank))  # dropout draws: f(seed, epoch, rank)
        mix_gen = torch.Generator().manual_seed(derive_seed(cfg.seed, epoch, info.rank, 1))
        net.train()
        optimizer.zero_grad(set_to_none=True)
        loss_sum, n_seen = 0.0, 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not info.is_main, leave=False)
        for bi, batch in enumerate(bar):
            x = batch["image"].to(device, non_blocking=True)
            y = batch["labels"].to(device, non_blocking=True)
            if x.ndim == 4:
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
                    torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]],
                                                   cfg.clip_grad)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                if ema is not None:
                    ema.update(model)
                step += 1
                if stall_at and step == stall_at and info.is_main:
                    print(f"{STALL_ENV}={stall_at}: stalling (test hook)", flush=True)
                    time.sleep(3600)
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
        images += n_seen
        train_loss = D.all_reduce_mean(loss_sum / max(n_seen, 1), device)
        eval_model = ema.module if ema is not None else model
        metrics = {"train/loss": train_loss, "lr": scheduler.lr}
        if val_ds is not None and len(val_ds):  # type: ignore[arg-type]
            val_metrics, _ = evaluate(eval_model, val_ds, loss_fn, cfg.batch_size, info, "val/", cfg.num_workers)
            metrics.update(val_metrics)
        current = _monitor(metrics) if val_ds is not None and len(val_ds) else float(epoch)  # type: ignore[arg-type]
        if current > best_metric:
            best_metric, best_epoch, since_best = current, epoch + 1, 0
            best_state = _cpu_state(eval_model)
            if info.is_main:
                ckpt_dir.mkdir(parents=True, exist_ok=True)
                with atomic_path(ckpt_dir / BEST) as tmp:
                    save_file(best_state, str(tmp), metadata={"format": "pt"})
        else:
            since_best += 1
        history.append({"epoch": epoch + 1, **metrics})
        done = since_best >= cfg.early_stopping_patience or epoch + 1 >= cfg.epochs
        if since_best >= cfg.early_stopping_patience and epoch + 1 < cfg.epochs:
            notes.append(f"early stop after epoch {epoch + 1}: no {MONITOR} gain for {since_best} epochs")
        if info.is_main:
            save_checkpoint(ckpt_dir / LAST, {
                "format": 1, **identity, "epoch": epoch + 1, "step": step,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "ema": ema.state_dict() if ema is not None else None,
                "rng": rng_state(), "history": history, "best_metric": best_metric, "best_epoch": best_epoch,
                "since_best": since_best, "done": done,
            })
            log.info("epoch %d: %s", epoch + 1, ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
            if on_epoch is not None:
                on_epoch(epoch + 1, metrics)
        D.barrier()
    if best_state is None:
        best_state = _cpu_state(ema.module if ema is not None else model)
    return FitResult(
        best_state=best_state, history=history, epochs_run=len(history), best_epoch=best_epoch,
        best_metric=best_metric, stopped_early=done and len(history) < cfg.epochs, resumed_from=resumed_from,
        steps=step, train_seconds=time.perf_counter() - t0, images_seen=images, notes=notes,
    )
