"""AdamW over the trainable parameters, with layer-wise LR decay carried as ``lr_scale``.

Each param group holds ``lr_scale = layer_decay ** (num_layers - layer_id)``
(embeddings are layer 0, block i is layer i+1, final norm and head are the top
layer, scale 1), as in BEiT/DeiT3 fine-tuning. ``medvit.train.schedule`` multiplies
every group's LR by its ``lr_scale`` at each step, so the decay really applies
(timm's helper only takes effect under timm's own schedulers).
Norm weights, biases, LayerScale gammas, position embeddings and tokens get no weight decay.
"""

from __future__ import annotations

import torch
from torch import nn

_NO_DECAY_NAMES = ("pos_embed", "cls_token", "reg_token", "dist_token")


def layer_id(name: str, depth: int) -> int:
    """Layer index of a classifier parameter: 0 embeddings, i+1 block i, depth+1 norm/head."""
    if name.startswith("backbone."):
        rest = name[len("backbone."):]
        if rest.startswith(("patch_embed.", "norm_pre.")) or rest in _NO_DECAY_NAMES:
            return 0
        if rest.startswith("blocks."):
            return int(rest.split(".")[1]) + 1
    return depth + 1


def no_weight_decay(name: str, param: torch.Tensor) -> bool:
    """True for norms, biases, LayerScale (all 1-D) and embeddings/tokens."""
    return param.ndim <= 1 or name.split(".")[-1] in _NO_DECAY_NAMES


def param_groups(model: nn.Module, weight_decay: float, layer_decay: float) -> list[dict]:
    """Trainable parameters grouped by (layer, decay), each with its ``lr_scale``."""
    depth = len(model.backbone.blocks)  # type: ignore[union-attr]
    groups: dict[tuple[int, bool], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lid = layer_id(name, depth)
        nd = no_weight_decay(name, p)
        g = groups.setdefault((lid, nd), {
            "params": [], "names": [], "layer_id": lid,
            "weight_decay": 0.0 if nd else weight_decay,
            "lr_scale": float(layer_decay ** (depth + 1 - lid)),
        })
        g["params"].append(p)
        g["names"].append(name)
    return [groups[k] for k in sorted(groups)]


def build_optimizer(model: nn.Module, lr: float, weight_decay: float, layer_decay: float) -> torch.optim.AdamW:
    """AdamW over trainable parameters only (frozen ones never enter the optimizer)."""
    groups = param_groups(model, weight_decay, layer_decay)
    if not groups:
        raise ValueError("no trainable parameters")
    for g in groups:
        g["lr"] = lr * g["lr_scale"]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999))
