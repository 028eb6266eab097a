"""Optimizer, LR schedule and weight EMA, all from timm.

* AdamW through ``timm.optim.create_optimizer_v2`` with layer-wise LR decay: the
  classifier's ``group_matcher`` makes the stem layer 0, block i layer i + 1 and
  the final norm + head the top layer, so group scale = ``layer_decay ** (top - layer)``
  (BEiT/DeiT3 fine-tuning). Norm weights, biases and LayerScale (1-D) and the
  classifier's ``no_weight_decay`` (position embedding, tokens) get no weight decay.
  Frozen parameters never enter the optimizer.
* ``timm.scheduler.CosineLRScheduler`` stepped per optimizer update
  (``step_update``): linear warmup, then cosine to 1 % of the LR. timm's scheduler
  multiplies each group's LR by its ``lr_scale``, which is what makes layer decay act.
* ``timm.utils.ModelEmaV3`` when ``ema_decay > 0``. It lerps the whole state dict;
  frozen tensors equal the model's, and ``lerp`` of equal values is exact, so they
  stay bitwise unchanged.
"""

from __future__ import annotations

import torch
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler
from timm.utils import ModelEmaV3
from torch import nn

from medvit.config import FinetuneConfig

# The cosine ends at this fraction of the peak LR (of each layer's scaled LR).
MIN_LR_RATIO = 0.01


def build_optimizer(model: nn.Module, cfg: FinetuneConfig) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters, grouped by layer (``lr_scale``) and weight decay.

    Raises:
        ValueError: nothing is trainable.
    """
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("no trainable parameters")
    return create_optimizer_v2(model, opt="adamw", lr=cfg.lr, weight_decay=cfg.weight_decay,
                               layer_decay=cfg.layer_decay, betas=(0.9, 0.999))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: FinetuneConfig, steps_per_epoch: int) -> CosineLRScheduler:
    """Warmup over ``cfg.warmup_epochs`` then cosine over the remaining updates; call ``step_update(n)``.

    The warmup starts at ``lr / (warmup + 1)`` so update k (0-based) of the warmup
    runs at ``lr * (k + 1) / (warmup + 1)``: no update is spent at LR 0.
    """
    total = steps_per_epoch * cfg.epochs
    warmup = min(round(cfg.warmup_epochs * steps_per_epoch), total)
    return CosineLRScheduler(
        optimizer, t_initial=max(1, total - warmup), lr_min=cfg.lr * MIN_LR_RATIO, warmup_t=warmup,
        warmup_lr_init=cfg.lr / (warmup + 1), warmup_prefix=True, t_in_epochs=False,
    )


def top_lr(optimizer: torch.optim.Optimizer) -> float:
    """The current LR of the top layer (the head's, ``lr_scale`` 1)."""
    return float(max(g["lr"] for g in optimizer.param_groups))


def build_ema(model: nn.Module, decay: float) -> ModelEmaV3 | None:
    """timm's EMA of ``model`` (``ema = decay * ema + (1 - decay) * weights``), or None for ``decay`` 0.

    Its private stochastic-rounding generator only serves bf16 EMA tensors; ours
    are fp32 (autocast leaves the weights fp32), so its state is not checkpointed.
    """
    return ModelEmaV3(model, decay=decay) if decay > 0 else None

