"""Calibration of per-label scores: reliability bins and expected calibration error (ECE).

Each label is a binary problem, so a score is read as P(label present) and
compared with the observed frequency of the label among samples with similar
scores. Bins are ``n_bins`` equal-width intervals [k/n, (k+1)/n) of [0, 1] (the
last one closed), and ECE = sum_k (n_k / N) * |observed_k - mean score_k|
(Naeini et al. 2015; Guo et al. 2017 use the same estimator for top-label
confidence).

Unknown (NaN) targets are left out of every bin: a label's calibration uses its known rows only.
"""

from __future__ import annotations

import numpy as np


def reliability_bins(y_true: np.ndarray, scores: np.ndarray, n_bins: int) -> dict[str, np.ndarray]:
    """Per-bin ``confidence`` (mean score), ``observed`` (positive rate) and ``count``.

    Args:
        y_true: targets of any shape (flattened), NaN where unknown (left out).
        scores: scores in [0, 1], same shape.
        n_bins: number of equal-width bins.

    Returns:
        (n_bins,) arrays; confidence/observed are NaN for an empty bin.
    """
    y = np.asarray(y_true, dtype=np.float64).ravel()
    known = np.isfinite(y)
    y, s = y[known], np.clip(np.asarray(scores, dtype=np.float64).ravel()[known], 0.0, 1.0)
    idx = np.minimum((s * n_bins).astype(np.int64), n_bins - 1)
    count = np.bincount(idx, minlength=n_bins).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        confidence = np.bincount(idx, weights=s, minlength=n_bins) / count
        observed = np.bincount(idx, weights=y, minlength=n_bins) / count
    return {"confidence": confidence, "observed": observed, "count": count,
            "lower": np.arange(n_bins) / n_bins, "upper": np.arange(1, n_bins + 1) / n_bins}


def ece(y_true: np.ndarray, scores: np.ndarray, n_bins: int = 10) -> float:
    """Expected calibration error of all known (sample, label) pairs pooled; NaN when none."""
    b = reliability_bins(y_true, scores, n_bins)
    total = b["count"].sum()
    if total == 0:
        return float("nan")
    full = b["count"] > 0
    return float(np.sum(b["count"][full] / total * np.abs(b["observed"][full] - b["confidence"][full])))


def ece_per_label(y_true: np.ndarray, scores: np.ndarray, n_bins: int = 10) -> np.ndarray:
    """(L,) ECE of each label of (N, L) arrays on its known rows (defined even when a label has one class)."""
    y_true, scores = np.asarray(y_true), np.asarray(scores)
    return np.array([ece(y_true[:, j], scores[:, j], n_bins) for j in range(y_true.shape[1])])
