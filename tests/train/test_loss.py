"""Losses: BCE with pos_weight from train prevalence, asymmetric loss."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from medvit.train.loss import AsymmetricLoss, build_loss, pos_weight_from


def test_pos_weight_from_prevalence() -> None:
    y = np.array([[1, 0, 1], [0, 0, 1], [0, 0, 1], [0, 1, 1]], np.float32)
    w = pos_weight_from(y, max_weight=50.0)
    # label 0: 3 neg / 1 pos; label 1: 3/1; label 2: no negatives -> 1
    assert torch.allclose(w, torch.tensor([3.0, 3.0, 1.0]))
    assert pos_weight_from(np.zeros((4, 1)), max_weight=50.0).item() == 50.0  # no positives: clamp


def test_bce_pos_weight_weights_positive_terms() -> None:
    torch.manual_seed(0)
    logits, y = torch.randn(6, 3), (torch.rand(6, 3) > 0.5).float()
    pw = torch.tensor([1.0, 2.0, 5.0])
    got = build_loss("bce", pw)(logits, y)
    manual = -(pw * y * F.logsigmoid(logits) + (1 - y) * F.logsigmoid(-logits)).mean()
    assert torch.allclose(got, manual, atol=1e-6)
    assert not torch.allclose(got, build_loss("bce", None)(logits, y))


def test_asymmetric_loss_reduces_to_bce_and_downweights_easy_negatives() -> None:
    torch.manual_seed(0)
    logits, y = torch.randn(8, 4), (torch.rand(8, 4) > 0.5).float()
    plain = AsymmetricLoss(gamma_neg=0.0, gamma_pos=0.0, clip=0.0)(logits, y)
    assert torch.allclose(plain, F.binary_cross_entropy_with_logits(logits, y), atol=1e-5)
    easy_neg = torch.full((1, 1), -3.0)  # p ~ 0.047 < clip: contributes nothing
    assert AsymmetricLoss(gamma_neg=4.0, clip=0.05)(easy_neg, torch.zeros(1, 1)).item() == 0.0
    hard_neg = torch.full((1, 1), 2.0)
    assert 0 < AsymmetricLoss(4.0)(hard_neg, torch.zeros(1, 1)) < F.binary_cross_entropy_with_logits(
        hard_neg, torch.zeros(1, 1))
