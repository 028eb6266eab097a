"""Linear warmup then cosine decay, per optimizer step, honouring each group's ``lr_scale``."""

from __future__ import annotations

import math

import torch


class WarmupCosine:
    """Sets ``group["lr"] = base_lr * factor(step) * group["lr_scale"]`` for every group.

    ``factor`` rises linearly from 0 to 1 over ``warmup_steps`` then follows a
    cosine to ``min_ratio`` at ``total_steps``. The state is just the step count.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, base_lr: float, warmup_steps: int, total_steps: int,
                 min_ratio: float = 0.01) -> None:
        self.optimizer = optimizer
        self.base_lr = base_lr
        self.warmup_steps = max(0, warmup_steps)
        self.total_steps = max(1, total_steps)
        self.min_ratio = min_ratio
        self.step_count = 0
        self._apply()

    def factor(self, step: int) -> float:
        """LR multiplier at optimizer step ``step`` (0-based)."""
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        span = max(1, self.total_steps - self.warmup_steps)
        t = min(1.0, (step - self.warmup_steps) / span)
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    def _apply(self) -> None:
        f = self.factor(self.step_count)
        for g in self.optimizer.param_groups:
            g["lr"] = self.base_lr * f * g.get("lr_scale", 1.0)

    def step(self) -> None:
        """Advance one optimizer step and set the next LRs."""
        self.step_count += 1
        self._apply()

    @property
    def lr(self) -> float:
        """Current unscaled LR (the top layer's)."""
        return self.base_lr * self.factor(self.step_count)

    def state_dict(self) -> dict[str, int]:
        return {"step_count": self.step_count}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.step_count = int(state["step_count"])
        self._apply()
