"""Operating thresholds chosen on the validation split, then applied unchanged to test.

A sample is called positive when ``score >= threshold``. Candidate thresholds are
the distinct validation scores (the ROC operating points):

- ``youden``: maximise Youden's J = sensitivity + specificity - 1 (Youden 1950);
- ``f1``: maximise F1;
- ``sensitivity``: the highest threshold whose sensitivity reaches the target,
  i.e. the most specific operating point that meets a screening requirement.

Ties between operating points go to the highest threshold (fewest positive calls).
Unknown (NaN) val targets are left out: a label's threshold is chosen on its known
rows. A label with one class among its known val rows has no ROC; it gets
``FALLBACK_THRESHOLD`` and is listed.
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np

Method = Literal["youden", "f1", "sensitivity"]
FALLBACK_THRESHOLD = 0.5


def _first_max(values: np.ndarray) -> int:
    """Index of the first value within rounding of the maximum (the highest threshold among ties)."""
    return int(np.flatnonzero(values >= values.max() - 1e-12)[0])


def choose_threshold(
    y_true: np.ndarray, scores: np.ndarray, method: Method, target_sensitivity: float = 0.9
) -> float | None:
    """Threshold for one label; None when its known val rows have a single class.

    Args:
        y_true: (N,) 0/1 targets, NaN where unknown (left out).
        scores: (N,) scores.
        method: youden | f1 | sensitivity.
        target_sensitivity: used by ``sensitivity``.
    """
    y = np.asarray(y_true, dtype=np.float64)
    known = np.isfinite(y)
    y, s = y[known], np.asarray(scores, dtype=np.float64)[known]
    n_pos = y.sum()
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    ends = np.r_[np.flatnonzero(s_sorted[1:] != s_sorted[:-1]), len(s) - 1]  # last index of each tie run
    tp = np.cumsum(y_sorted)[ends]  # (K,) positives called at threshold s_sorted[end]
    fp = (ends + 1) - tp
    tpr, fpr = tp / n_pos, fp / n_neg
    if method == "youden":
        k = _first_max(tpr - fpr)
    elif method == "f1":
        k = _first_max(2 * tp / (tp + fp + n_pos))
    elif method == "sensitivity":
        k = int(np.flatnonzero(tpr >= target_sensitivity - 1e-12)[0])
    else:
        raise ValueError(f"unknown threshold method {method!r}; expected youden, f1 or sensitivity")
    return float(s_sorted[ends[k]])


def choose_thresholds(
    y_true: np.ndarray,
    scores: np.ndarray,
    label_names: Sequence[str],
    method: Method,
    target_sensitivity: float = 0.9,
) -> tuple[np.ndarray, list[str]]:
    """Per-label thresholds for (N, L) arrays.

    Returns:
        (L,) thresholds and the names of labels that got ``FALLBACK_THRESHOLD``.
    """
    out = np.full(len(label_names), FALLBACK_THRESHOLD)
    fallback = []
    for j, name in enumerate(label_names):
        t = choose_threshold(y_true[:, j], scores[:, j], method, target_sensitivity)
        if t is None:
            fallback.append(name)
        else:
            out[j] = t
    return out, fallback
