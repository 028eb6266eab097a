"""Multi-label ranking metrics on (N, L) arrays.

Pure numpy/scikit-learn with no medvit imports, so train and zeroshot may use
it for their per-epoch numbers (the one exception to the io -> data -> models ->
train | zeroshot -> evaluate import order): every stage then reports the same
``<split>/<metric>`` names computed the same way.

A label with a single class in a split has no AUROC/AP: it is reported as NaN
per label, left out of the macro average, and counted in ``n_labels_skipped``.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score


def valid_labels(y_true: np.ndarray) -> np.ndarray:
    """(L,) bool: labels with both classes present."""
    pos = y_true.sum(axis=0)
    return (pos > 0) & (pos < y_true.shape[0])


def per_label(y_true: np.ndarray, scores: np.ndarray) -> dict[str, np.ndarray]:
    """Per-label ``auroc`` and ``ap`` (NaN where a label has one class) and ``prevalence``."""
    y_true = np.asarray(y_true, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if y_true.shape != scores.shape or y_true.ndim != 2:
        raise ValueError(f"y_true {y_true.shape} and scores {scores.shape} must both be (N, L)")
    ok = valid_labels(y_true)
    auroc = np.full(y_true.shape[1], np.nan)
    ap = np.full(y_true.shape[1], np.nan)
    for j in np.flatnonzero(ok):
        auroc[j] = roc_auc_score(y_true[:, j], scores[:, j])
        ap[j] = average_precision_score(y_true[:, j], scores[:, j])
    return {"auroc": auroc, "ap": ap, "prevalence": y_true.mean(axis=0) if len(y_true) else np.zeros(y_true.shape[1])}


def summary(y_true: np.ndarray, scores: np.ndarray, prefix: str = "") -> dict[str, float]:
    """Macro and micro AUROC/AP, e.g. ``{prefix}auroc_macro``; NaN-free when any label is valid."""
    y_true = np.asarray(y_true, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    pl = per_label(y_true, scores)
    ok = valid_labels(y_true)
    out = {
        f"{prefix}auroc_macro": float(np.mean(pl["auroc"][ok])) if ok.any() else float("nan"),
        f"{prefix}ap_macro": float(np.mean(pl["ap"][ok])) if ok.any() else float("nan"),
        f"{prefix}n_labels_skipped": float((~ok).sum()),
    }
    flat_t, flat_s = y_true.ravel(), scores.ravel()
    if 0 < flat_t.sum() < flat_t.size:
        out[f"{prefix}auroc_micro"] = float(roc_auc_score(flat_t, flat_s))
        out[f"{prefix}ap_micro"] = float(average_precision_score(flat_t, flat_s))
    return out
