"""Benchmark the vectorised group bootstrap against a naive per-resample scikit-learn loop.

    python benchmarks/evaluate.py                  # 1000 resamples, 10,000 samples x 14 labels
    python benchmarks/evaluate.py --naive-resamples 10

The vectorised path is what the evaluate stage runs: group multiplicities drawn
as one (B, N) weight matrix, then per-label AUROC, AP, sensitivity at fixed
specificity and F1/sensitivity/specificity at thresholds, plus micro AUROC/AP,
for all resamples at once. The naive loop materialises each resample's rows and
calls ``roc_auc_score`` / ``average_precision_score`` per label (plus micro); it
is timed over a few resamples and extrapolated linearly to the full count (said
so in the output). Target: <= 10 s for the vectorised path on the 2-core CPU.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from medvit.evaluate.bootstrap import group_weights, model_stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _figures  # after the sys.path line: benchmarks/ is not a package


def synthetic(n: int, n_labels: int, images_per_group: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Multi-label targets, scores with some signal, and a patient group per image."""
    rng = np.random.default_rng(seed)
    prevalence = rng.uniform(0.02, 0.3, n_labels)
    y = (rng.random((n, n_labels)) < prevalence).astype(np.float64)
    s = 1 / (1 + np.exp(-(rng.normal(0, 1, (n, n_labels)) + 1.5 * y - 1)))
    groups = rng.integers(0, int(n / images_per_group), n).astype(str)
    return y, s, groups


def naive_resample(y: np.ndarray, s: np.ndarray, rows_of_group: list[np.ndarray], rng: np.random.Generator) -> float:
    """One group resample the obvious way; returns its macro AUROC."""
    drawn = rng.integers(0, len(rows_of_group), len(rows_of_group))
    idx = np.concatenate([rows_of_group[g] for g in drawn])
    yy, ss = y[idx], s[idx]
    aucs = []
    for j in range(y.shape[1]):
        if 0 < yy[:, j].sum() < len(yy):
            aucs.append(roc_auc_score(yy[:, j], ss[:, j]))
            average_precision_score(yy[:, j], ss[:, j])
    roc_auc_score(yy.ravel(), ss.ravel())
    average_precision_score(yy.ravel(), ss.ravel())
    return float(np.mean(aucs))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-samples", type=int, default=10_000)
    p.add_argument("--n-labels", type=int, default=14)
    p.add_argument("--n-resamples", type=int, default=1000)
    p.add_argument("--images-per-group", type=float, default=2.5)
    p.add_argument("--naive-resamples", type=int, default=5, help="resamples of the naive loop actually timed")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()

    y, s, groups = synthetic(a.n_samples, a.n_labels, a.images_per_group, a.seed)
    n_groups = len(np.unique(groups))
    print(f"group bootstrap: {a.n_resamples} resamples of {n_groups} groups, "
          f"{a.n_samples} samples x {a.n_labels} labels")

    t0 = time.perf_counter()
    w = group_weights(groups, a.n_resamples, a.seed)
    t1 = time.perf_counter()
    stats = model_stats(y, s, np.full(a.n_labels, 0.5), w, fixed_specificity=0.9)
    t2 = time.perf_counter()
    fast = t2 - t0
    lo, hi = np.nanquantile(stats.summary_samples["auroc_macro"], [0.025, 0.975])
    print(f"  vectorised : {fast:7.2f} s  (weights {t1 - t0:.2f} s + metrics {t2 - t1:.2f} s; "
          f"per-label AUROC/AP/sens@spec/F1/sens/spec + micro AUROC/AP)")
    print(f"               test/auroc_macro {stats.summary['auroc_macro']:.4f} [{lo:.4f}, {hi:.4f}]")

    # same answer as scikit-learn on the same resamples (weights = group multiplicities)
    err = max(
        abs(stats.summary_samples["auroc_macro"][b]
            - np.mean([roc_auc_score(y[:, j], s[:, j], sample_weight=w[b]) for j in range(a.n_labels)]))
        for b in range(min(3, a.n_resamples))
    )
    print(f"               max |vectorised - sklearn(sample_weight)| over 3 resamples: {err:.1e}")

    _, inverse = np.unique(groups, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    rows_of_group = np.split(order, np.flatnonzero(np.diff(inverse[order])) + 1)
    rng = np.random.default_rng(a.seed)
    t0 = time.perf_counter()
    for _ in range(a.naive_resamples):
        naive_resample(y, s, rows_of_group, rng)
    per = (time.perf_counter() - t0) / a.naive_resamples
    naive = per * a.n_resamples
    print(f"  naive loop : {naive:7.2f} s  EXTRAPOLATED from {a.naive_resamples} timed resamples "
          f"({per * 1000:.0f} ms each; per-label roc_auc_score + average_precision_score + micro)")
    print(f"  speed-up   : {naive / fast:7.1f}x   target <= 10 s: {'met' if fast <= 10 else 'NOT met'}")
    size = f"{a.n_resamples} resamples x {a.n_samples} x {a.n_labels}"
    _figures.emit("evaluate", f"group bootstrap, vectorised ({size})", fast, "s", "<= 10")
    _figures.emit("evaluate", f"naive sklearn loop, extrapolated from {a.naive_resamples}", naive, "s")
    _figures.emit("evaluate", "speed-up vectorised / naive", naive / fast, "x")


if __name__ == "__main__":
    main()
