"""Expected calibration error and reliability bins, by hand."""

from __future__ import annotations

import numpy as np
import pytest

from medvit.evaluate.calibration import ece, ece_per_label, reliability_bins


def test_ece_by_hand() -> None:
    y = np.array([0, 1, 1, 0])
    s = np.array([0.05, 0.15, 0.95, 0.85])
    # four singleton bins: |0-.05|, |1-.15|, |1-.95|, |0-.85|, each with weight 1/4
    assert ece(y, s, n_bins=10) == pytest.approx((0.05 + 0.85 + 0.05 + 0.85) / 4)


def test_ece_zero_when_observed_rate_matches_the_score() -> None:
    y = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    s = np.array([0.25, 0.25, 0.25, 0.25, 0.75, 0.75, 0.75, 0.75])
    assert ece(y, s, n_bins=10) == pytest.approx(0.0)
    assert ece(y, s, n_bins=2) == pytest.approx(0.0)


def test_bins_are_equal_width_and_the_last_is_closed() -> None:
    b = reliability_bins(np.array([1, 0, 1]), np.array([1.0, 0.0, 0.5]), n_bins=4)
    assert b["count"].tolist() == [1, 0, 1, 1]  # 0.5 -> [0.5, 0.75); 1.0 -> last bin
    assert np.isnan(b["confidence"][1])
    assert b["observed"][3] == 1.0 and b["confidence"][3] == 1.0


def test_ece_per_label() -> None:
    y = np.array([[0, 1], [1, 1]])
    s = np.array([[0.0, 1.0], [1.0, 0.5]])
    assert ece_per_label(y, s, 10) == pytest.approx([0.0, 0.25])
