"""Multi-label losses: BCE-with-logits (+ per-label pos_weight) and the asymmetric loss."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def pos_weight_from(labels: np.ndarray, max_weight: float = 100.0) -> torch.Tensor:
    """(L,) negatives/positives per label from the train split, clamped to [1/max, max].

    A label with no positives gets ``max_weight``; one with no negatives gets 1.
    """
    labels = np.asarray(labels, np.float64)
    pos = labels.sum(axis=0)
    neg = labels.shape[0] - pos
    w = np.where(pos > 0, neg / np.maximum(pos, 1), max_weight)
    w = np.where(neg > 0, w, 1.0)
    return torch.tensor(np.clip(w, 1.0 / max_weight, max_weight), dtype=torch.float32)


class BCELoss(nn.Module):
    """Mean BCE-with-logits; soft (mixed) targets are allowed."""

    def __init__(self, pos_weight: torch.Tensor | None = None) -> None:
        super().__init__()
        self.register_buffer("pos_weight", pos_weight, persistent=False)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """(B, L) logits and targets -> scalar."""
        return F.binary_cross_entropy_with_logits(logits.float(), targets.float(), pos_weight=self.pos_weight)


class AsymmetricLoss(nn.Module):
    """Asymmetric loss for long-tailed multi-label data (Ridnik et al., ICCV 2021).

    Negatives are down-weighted by ``p**gamma_neg`` after shifting their
    probability by ``clip`` (easy negatives contribute nothing); positives by
    ``(1-p)**gamma_pos``. Reported as a mean over elements so it is on the scale of BCE.
    """

    def __init__(self, gamma_neg: float = 4.0, gamma_pos: float = 0.0, clip: float = 0.05,
                 pos_weight: torch.Tensor | None = None) -> None:
        super().__init__()
        self.gamma_neg, self.gamma_pos, self.clip = gamma_neg, gamma_pos, clip
        self.register_buffer("pos_weight", pos_weight, persistent=False)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """(B, L) logits and targets -> scalar."""
        y = targets.float()
        p = torch.sigmoid(logits.float())
        p_neg = (p - self.clip).clamp(min=0) if self.clip > 0 else p
        loss_pos = y * F.logsigmoid(logits.float()) * (1 - p).pow(self.gamma_pos)
        if self.pos_weight is not None:
            loss_pos = loss_pos * self.pos_weight
        loss_neg = (1 - y) * torch.log((1 - p_neg).clamp(min=1e-8)) * p_neg.pow(self.gamma_neg)
        return -(loss_pos + loss_neg).mean()


def build_loss(kind: str, pos_weight: torch.Tensor | None, gamma_neg: float = 4.0,
               gamma_pos: float = 0.0) -> nn.Module:
    """The loss named by ``finetune.loss.kind`` (``bce`` | ``asymmetric``)."""
    if kind == "bce":
        return BCELoss(pos_weight)
    if kind == "asymmetric":
        return AsymmetricLoss(gamma_neg, gamma_pos, pos_weight=pos_weight)
    raise ValueError(f"finetune.loss.kind: unknown loss {kind!r}")
