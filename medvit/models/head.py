"""The multi-label head on the backbone's pre-logits features."""

from __future__ import annotations

import torch
from torch import nn


class MultiLabelHead(nn.Module):
    """LayerNorm -> Dropout -> Linear -> GELU -> Dropout -> Linear(num_labels).

    Outputs logits; the loss (BCE-with-logits) and scoring apply the sigmoid.
    """

    def __init__(self, in_dim: int, num_labels: int, hidden_dim: int = 256, dropout: float = 0.1) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(in_dim)
        self.drop1 = nn.Dropout(dropout)
        self.fc1 = nn.Linear(in_dim, hidden_dim)
        self.act = nn.GELU()
        self.drop2 = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden_dim, num_labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) features -> (B, L) logits."""
        x = self.drop1(self.norm(x))
        x = self.drop2(self.act(self.fc1(x)))
        return self.fc2(x)
