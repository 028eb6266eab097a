"""Group (cluster) bootstrap: confidence intervals that resample patients or scenes, not images.

Images of one patient or scene are correlated, so resampling images would give
intervals that are too narrow (Field & Welsh 2007, cluster bootstrap). Each
resample draws G groups with replacement; the number of times each group is
drawn becomes the weight of its samples, a (B, N) weight matrix. All
metrics take these weights (``medvit.metrics``), so B resamples cost
a handful of vectorised passes rather than B scikit-learn calls, and every model
is scored on the *same* resamples, which makes the paired comparison valid.

Intervals are percentile intervals of the resampled statistic (Efron &
Tibshirani 1993, ch. 13). A resample in which a label loses one class gives NaN
for that label; it is left out of that resample's macro mean and of the
label's interval. Unknown (NaN) targets are masked by the metrics
(``medvit.metrics``): a label is scored on its known rows, each still weighted
by its group's multiplicity.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from medvit.metrics import (bootstrapped, label_counts, label_ranking_metrics, micro_ranking_metrics, prevalence,
                            threshold_metrics, valid_labels)

# The bootstrapped entries of ``metrics.METRICS``, in its order.
LABEL_METRICS: tuple[str, ...] = tuple(m.name for m in bootstrapped())
MICRO_METRICS: tuple[str, ...] = tuple(m.name for m in bootstrapped() if m.micro)


def group_weights(groups: Sequence[str], n_resamples: int, seed: int) -> np.ndarray:
    """(B, N) float32 multiplicity of each sample in each group resample.

    Args:
        groups: (N,) group (patient / scene) of each sample.
        n_resamples: B.
        seed: seeds ``numpy.random.default_rng``.
    """
    _, inverse = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    n_groups = int(inverse.max()) + 1 if len(inverse) else 0
    if n_resamples == 0 or n_groups == 0:
        return np.zeros((0, len(inverse)), dtype=np.float32)
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, n_groups, size=(n_resamples, n_groups))  # G draws with replacement per resample
    flat = (np.arange(n_resamples)[:, None] * n_groups + drawn).ravel()
    counts = np.bincount(flat, minlength=n_resamples * n_groups).reshape(n_resamples, n_groups)  # (B, G)
    # Built as (N, B) C-contiguous and returned as its (B, N) transpose view: the metrics
    # gather per-sample rows of B weights (see ``metrics.ranking_metrics``).
    return np.ascontiguousarray(counts.T.astype(np.float32))[inverse].T


def _nanmean_rows(a: np.ndarray) -> np.ndarray:
    """Row-wise mean over non-NaN entries; NaN for an all-NaN row, without a warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(a, axis=1) if a.shape[1] else np.full(a.shape[0], np.nan)


def percentile_ci(samples: np.ndarray, level: float) -> tuple[float, float]:
    """Percentile interval of the non-NaN resampled values (NaN, NaN when none)."""
    s = np.asarray(samples, dtype=np.float64)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return float("nan"), float("nan")
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(s, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


@dataclass
class ModelStats:
    """Point estimates and bootstrap replicates of one model on one split.

    ``label`` maps a metric to (L,) values, ``label_samples`` to (B, L); ``summary``
    maps ``<metric>_macro`` / ``<metric>_micro`` to a float and
    ``summary_samples`` to (B,) replicates.
    """

    label: dict[str, np.ndarray] = field(default_factory=dict)
    label_samples: dict[str, np.ndarray] = field(default_factory=dict)
    summary: dict[str, float] = field(default_factory=dict)
    summary_samples: dict[str, np.ndarray] = field(default_factory=dict)


def _label_metrics(
    y: np.ndarray, s: np.ndarray, thresholds: np.ndarray, weights: np.ndarray, fixed_specificity: float
) -> dict[str, np.ndarray]:
    """metric -> (B, L) under ``weights``, for every name in ``LABEL_METRICS`` (in its order)."""
    res = label_ranking_metrics(y, s, weights, fixed_specificity)
    res.update(threshold_metrics(y, s, thresholds, weights))
    return {k: res[k] for k in LABEL_METRICS}


def _micro_metrics(
    y: np.ndarray, s: np.ndarray, weights: np.ndarray, fixed_specificity: float
) -> dict[str, np.ndarray]:
    """metric -> (B,) over all known (sample, label) pairs pooled, each weighted by its sample's weight."""
    r = micro_ranking_metrics(y, s, weights, fixed_specificity)
    return {k: r[k] for k in MICRO_METRICS}


def model_stats(
    y_true: np.ndarray,
    scores: np.ndarray,
    thresholds: np.ndarray,
    weights: np.ndarray,
    fixed_specificity: float,
) -> ModelStats:
    """Per-label and macro/micro metrics, point estimates plus one replicate per weight row.

    Macro means run over the labels with both classes among their known rows in
    the full split; the others are NaN per label and not counted (see
    ``metrics.valid_labels``). ``label`` also holds ``prevalence`` and the known
    count ``n_known`` per label.

    Args:
        y_true: (N, L) targets, NaN where unknown.
        scores: (N, L) scores.
        thresholds: (L,) operating thresholds (chosen on val).
        weights: (B, N) group-resample weights (B may be 0).
        fixed_specificity: for ``sens_at_spec``.
    """
    y = np.asarray(y_true, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    ok = valid_labels(y)
    stats = ModelStats()
    for tag, w in (("point", np.ones((1, y.shape[0]))), ("samples", weights)):
        per = _label_metrics(y, s, thresholds, w, fixed_specificity)
        per = {k: np.where(ok[None, :], v, np.nan) for k, v in per.items()}
        macro = {f"{k}_macro": _nanmean_rows(v[:, ok]) for k, v in per.items()}
        micro = {f"{k}_micro": v for k, v in _micro_metrics(y, s, w, fixed_specificity).items()}
        if tag == "point":
            stats.label = {k: v[0] for k, v in per.items()}
            stats.summary = {k: float(v[0]) for k, v in {**macro, **micro}.items()}
        else:
            stats.label_samples = per
            stats.summary_samples = {**macro, **micro}
    stats.label["prevalence"] = prevalence(y)
    stats.label["n_known"] = label_counts(y)["n_known"].astype(np.float64)
    return stats


def paired_difference(a: ModelStats, b: ModelStats, metric: str, level: float) -> dict[str, float]:
    """``a - b`` for a summary metric with its paired percentile CI and a two-sided bootstrap p-value.

    Both models must have been scored on the same weight matrix.
    """
    diff = a.summary_samples[metric] - b.summary_samples[metric]
    lo, hi = percentile_ci(diff, level)
    finite = diff[np.isfinite(diff)]
    if finite.size:
        p = min(1.0, 2.0 * min(float(np.mean(finite <= 0)), float(np.mean(finite >= 0))))
    else:
        p = float("nan")
    return {"diff": a.summary[metric] - b.summary[metric], "diff_ci_low": lo, "diff_ci_high": hi, "diff_p": p}
