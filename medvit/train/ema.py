"""Exponential moving average of the model weights (evaluated and saved instead of the raw weights)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class ModelEma:
    """``ema = decay * ema + (1 - decay) * weights`` after each optimizer step (trainable tensors only;
    frozen ones and buffers are copied)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        src = dict(model.named_parameters())
        for name, p in self.module.named_parameters():
            q = src[name]
            if q.requires_grad:
                p.lerp_(q.detach(), 1.0 - self.decay)
        for b, q in zip(self.module.buffers(), model.buffers()):
            b.copy_(q)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state)
