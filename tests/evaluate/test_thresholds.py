"""Operating thresholds chosen on val, checked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from medvit.evaluate.thresholds import FALLBACK_THRESHOLD, choose_threshold, choose_thresholds

# Descending thresholds and (TP, FP) with 3 positives and 3 negatives:
# .6 (1,0)  .5 (2,0)  .4 (2,1)  .3 (3,1)  .2 (3,2)  .1 (3,3)
Y = np.array([0, 0, 1, 0, 1, 1])
S = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])


def test_youden_maximises_j_and_breaks_ties_to_the_higher_threshold() -> None:
    # J: .6 -> 1/3, .5 -> 2/3, .4 -> 1/3, .3 -> 2/3, .2 -> 1/3: tie between .5 and .3
    assert choose_threshold(Y, S, "youden") == pytest.approx(0.5)


def test_f1_optimal() -> None:
    # F1 = 2TP / (TP + FP + P): .5 -> 4/5, .3 -> 6/7 (best), .2 -> 6/8
    assert choose_threshold(Y, S, "f1") == pytest.approx(0.3)


def test_target_sensitivity_picks_the_highest_threshold_that_reaches_it() -> None:
    assert choose_threshold(Y, S, "sensitivity", target_sensitivity=0.9) == pytest.approx(0.3)
    assert choose_threshold(Y, S, "sensitivity", target_sensitivity=0.6) == pytest.approx(0.5)
    assert choose_threshold(Y, S, "sensitivity", target_sensitivity=0.3) == pytest.approx(0.6)


def test_ties_form_one_operating_point() -> None:
    y = np.array([0, 1, 1, 0])
    s = np.array([0.7, 0.7, 0.2, 0.1])
    # thresholds .7 (TP1, FP1, J=0) and .2 (TP2, FP1, J=.5): the tie at .7 cannot be split
    assert choose_threshold(y, s, "youden") == pytest.approx(0.2)


def test_single_class_label_falls_back_and_is_listed() -> None:
    y = np.stack([Y, np.zeros(6, int)], axis=1)
    s = np.stack([S, S], axis=1)
    thr, fallback = choose_thresholds(y, s, ["a", "b"], "youden")
    assert thr[0] == pytest.approx(0.5) and thr[1] == FALLBACK_THRESHOLD
    assert fallback == ["b"]
    assert choose_threshold(np.ones(4), np.arange(4.0), "f1") is None
