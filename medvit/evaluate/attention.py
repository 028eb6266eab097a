"""Attention rollout maps for a timm Vision Transformer.

Rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers"):
average each block's attention over heads, add the identity for the residual
path (0.5 A + 0.5 I, rows renormalised), multiply the blocks' matrices, and read
the class token's row over the patch tokens. Models without a class token
(global average pooling) use the mean row of the patch tokens.

The attention matrices come from ``timm.utils.AttentionExtract`` (an FX graph of
the model returning every ``attn.softmax`` node). timm's fused
``scaled_dot_product_attention`` never materialises the matrix, so a model meant
for rollout is built with ``set_fused_attn(False)``
(``medvit.models.backbone.explicit_attention``, ``load_classifier(..., fused_attn=False)``).

Inputs are prepared exactly as for scoring, by ``medvit.data.transforms.eval_transform``.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import numpy as np
import torch
from timm.utils import AttentionExtract
from torch import nn


def find_vit(module: nn.Module) -> nn.Module:
    """The ViT backbone inside ``module`` (the module itself when it is one).

    Raises:
        ValueError: no submodule has ``blocks`` and ``patch_embed`` (not a ViT).
    """
    for m in module.modules():
        if hasattr(m, "blocks") and hasattr(m, "patch_embed") and hasattr(m, "forward_features"):
            return m
    raise ValueError(f"{type(module).__name__} has no timm ViT backbone (blocks + patch_embed)")


@contextlib.contextmanager
def _unfused(vit: nn.Module) -> Iterator[None]:
    # A model built with fused attention: its blocks copied the global flag at build time, so only
    # their own flag can switch them to the explicit path; restored afterwards.
    saved = [b.attn for b in vit.blocks if getattr(getattr(b, "attn", None), "fused_attn", False)]
    for attn in saved:
        attn.fused_attn = False
    try:
        yield
    finally:
        for attn in saved:
            attn.fused_attn = True


@torch.no_grad()
def attention_rollout(vit: nn.Module, images: torch.Tensor, residual: float = 0.5) -> torch.Tensor:
    """(B, gh, gw) rollout maps in [0, 1] for normalised (B, C, H, W) inputs.

    Args:
        vit: a timm VisionTransformer (see ``find_vit``), ideally built with explicit attention;
            a model with fused attention is switched to the explicit path for the call.
        images: input batch as the model expects it (normalised, model size).
        residual: weight of the identity added for the skip connection.

    Raises:
        ValueError: the model has no explicit attention softmax to extract.
    """
    was_training = vit.training
    try:
        with _unfused(vit):
            try:
                extract = AttentionExtract(vit, method="fx")  # traces with the flags as set now; sets eval mode
            except RuntimeError as err:
                raise ValueError(f"no attention to extract from {type(vit).__name__}: {err}") from None
        captured = list(extract(images).values())  # (B, heads, T, T) per block, first block first
    finally:
        vit.train(was_training)
    tokens = captured[0].shape[-1]
    eye = torch.eye(tokens, dtype=captured[0].dtype)
    rollout = eye.expand(images.shape[0], tokens, tokens)
    for a in captured:
        a = (1 - residual) * a.mean(dim=1) + residual * eye
        a = a / a.sum(dim=-1, keepdim=True)
        rollout = a @ rollout
    prefix = int(getattr(vit, "num_prefix_tokens", 1))
    if getattr(vit, "cls_token", None) is not None:
        row = rollout[:, 0, prefix:]  # (B, P) class token's attention to the patches
    else:
        row = rollout[:, prefix:, prefix:].mean(dim=1)
    grid = tuple(getattr(vit.patch_embed, "grid_size", ()))
    if len(grid) != 2 or grid[0] * grid[1] != row.shape[1]:
        side = int(round(row.shape[1] ** 0.5))
        grid = (side, row.shape[1] // side)
    maps = row.reshape(-1, *grid)
    lo = maps.amin(dim=(1, 2), keepdim=True)
    hi = maps.amax(dim=(1, 2), keepdim=True)
    return (maps - lo) / (hi - lo).clamp_min(1e-12)


_RGB_NAMES = (("B4", "B3", "B2"), ("red", "green", "blue"), ("R", "G", "B"))


def display_image(image: np.ndarray, channel_names: Sequence[str] = ()) -> np.ndarray:
    """(H, W) grey or (H, W, 3) RGB in [0, 1] from a (C, H, W) cache image (2-98 percentile stretch).

    Multi-band images show true colour when the channel names include red,
    green and blue bands (Sentinel-2 B4/B3/B2), else the first three bands.
    """
    c = image.shape[0]
    if c < 3:
        picked = image[0]
    else:
        names = list(channel_names)
        rgb = next((r for r in _RGB_NAMES if all(n in names for n in r)), None)
        idx = tuple(names.index(n) for n in rgb) if rgb else (0, 1, 2)
        picked = np.moveaxis(image[list(idx)], 0, -1)
    lo, hi = np.percentile(picked, [2, 98])
    return np.clip((picked - lo) / max(hi - lo, 1e-6), 0, 1)
