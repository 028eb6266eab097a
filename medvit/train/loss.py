"""Multi-label losses: BCE-with-logits (+ per-label pos_weight) and the asymmetric loss, both masked.

Unknown targets are NaN (an ignored uncertain or blank label, see
``data/manifest.py``). Both losses are means over the known entries only: an
unknown entry's target is replaced by 0 with ``torch.where`` *before* the
elementwise loss, so neither its value nor a NaN can reach the gradient, and its
term is then dropped from the sum and from the count. A batch without any known
entry gives a zero loss with zero gradients. ``pos_weight`` counts known entries only.
The mean is per (micro-)batch and rank: with gradient accumulation or DDP each
micro-batch weighs the same whatever its number of known entries, as for plain BCE.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def pos_weight_from(labels: np.ndarray, max_weight: float = 100.0) -> torch.Tensor:
    """(L,) known negatives / known positives per label from the train split, clamped to [1/max, max].

    Unknown (NaN) entries count as neither. A label with no known positives gets
    ``max_weight``; one with no known negatives gets 1.
    """
    labels = np.asarray(labels, np.float64)
    known = np.isfinite(labels)
    pos = np.where(known, labels, 0.0).sum(axis=0)
    neg = known.sum(axis=0) - pos
    w = np.where(pos > 0, neg / np.maximum(pos, 1), max_weight)
    w = np.where(neg > 0, w, 1.0)
    return torch.tensor(np.clip(w, 1.0 / max_weight, max_weight), dtype=torch.float32)


def split_known(targets: torch.Tensor, known: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, L) targets -> (targets with unknown entries set to 0, float mask of known entries).

    Args:
        targets: NaN where unknown.
        known: optional extra bool mask; an entry is known when it is True here and not NaN.
    """
    y = targets.float()
    mask = ~torch.isnan(y)
    if known is not None:
        mask = mask & known.bool()
    return torch.where(mask, y, torch.zeros_like(y)), mask.float()


def masked_mean(elementwise: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``elementwise`` over entries where ``mask`` is 1 (0 when there are none)."""
    return (elementwise * mask).sum() / mask.sum().clamp(min=1.0)


class BCELoss(nn.Module):
    """BCE-with-logits averaged over known entries; soft (mixed) targets are allowed."""

    def __init__(self, pos_weight: torch.Tensor | None = None) -> None:
        super().__init__()
        self.register_buffer("pos_weight", pos_weight, persistent=False)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor, known: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) logits and targets (NaN = unknown), optional (B, L) bool ``known`` -> scalar."""
        y, mask = split_known(targets, known)
        loss = F.binary_cross_entropy_with_logits(logits.float(), y, pos_weight=self.pos_weight, reduction="none")
        return masked_mean(loss, mask)


class AsymmetricLoss(nn.Module):
    """Asymmetric loss for long-tailed multi-label data (Ridnik et al., ICCV 2021).

    Negatives are down-weighted by ``p**gamma_neg`` after shifting their
    probability by ``clip`` (easy negatives contribute nothing); positives by
    ``(1-p)**gamma_pos``. Reported as a mean over known elements so it is on the scale of BCE.
    """

    def __init__(self, gamma_neg: float = 4.0, gamma_pos: float = 0.0, clip: float = 0.05,
                 pos_weight: torch.Tensor | None = None) -> None:
        super().__init__()
        self.gamma_neg, self.gamma_pos, self.clip = gamma_neg, gamma_pos, clip
        self.register_buffer("pos_weight", pos_weight, persistent=False)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor, known: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) logits and targets (NaN = unknown), optional (B, L) bool ``known`` -> scalar."""
        y, mask = split_known(targets, known)
        p = torch.sigmoid(logits.float())
        p_neg = (p - self.clip).clamp(min=0) if self.clip > 0 else p
        loss_pos = y * F.logsigmoid(logits.float()) * (1 - p).pow(self.gamma_pos)
        if self.pos_weight is not None:
            loss_pos = loss_pos * self.pos_weight
        loss_neg = (1 - y) * torch.log((1 - p_neg).clamp(min=1e-8)) * p_neg.pow(self.gamma_neg)
        return -masked_mean(loss_pos + loss_neg, mask)


def build_loss(kind: str, pos_weight: torch.Tensor | None, gamma_neg: float = 4.0,
               gamma_pos: float = 0.0) -> nn.Module:
    """The loss named by ``finetune.loss.kind`` (``bce`` | ``asymmetric``)."""
    if kind == "bce":
        return BCELoss(pos_weight)
    if kind == "asymmetric":
        return AsymmetricLoss(gamma_neg, gamma_pos, pos_weight=pos_weight)
    raise ValueError(f"finetune.loss.kind: unknown loss {kind!r}")
