"""Group bootstrap: weights, coverage on a known binormal model, clustering, paired differences."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from medvit.evaluate.bootstrap import group_weights, model_stats, paired_difference, percentile_ci
from medvit.metrics import ranking_metrics


def test_group_weights_resample_whole_groups_and_are_seeded() -> None:
    groups = ["p1", "p1", "p2", "p3", "p3", "p3"]
    w = group_weights(groups, 200, seed=7)
    assert w.shape == (200, 6)
    assert np.array_equal(w[:, 0], w[:, 1]) and np.array_equal(w[:, 3], w[:, 5])  # a group moves as one
    # each resample draws 3 groups with replacement
    per_group = np.stack([w[:, 0], w[:, 2], w[:, 3]], axis=1)
    assert (per_group.sum(axis=1) == 3).all()
    assert np.array_equal(w, group_weights(groups, 200, seed=7))
    assert not np.array_equal(w, group_weights(groups, 200, seed=8))
    assert group_weights(groups, 0, seed=0).shape == (0, 6)


def test_ci_covers_the_true_auroc_of_a_binormal_model() -> None:
    """Positives ~ N(d, 1), negatives ~ N(0, 1): AUROC = Phi(d / sqrt 2). 95% CIs should cover it ~95% of the time."""
    d = 1.0
    true_auc = norm.cdf(d / np.sqrt(2))
    rng = np.random.default_rng(0)
    covered, n_rep = 0, 60
    for rep in range(n_rep):
        y = (rng.random(300) < 0.4).astype(float)
        s = rng.normal(0, 1, 300) + d * y
        w = group_weights(np.arange(300).astype(str), 400, seed=rep)
        lo, hi = percentile_ci(ranking_metrics(y, s, w)["auroc"], 0.95)
        covered += lo <= true_auc <= hi
    assert covered / n_rep >= 0.85
    # and one large sample pins it down
    y = (rng.random(5000) < 0.4).astype(float)
    s = rng.normal(0, 1, 5000) + d * y
    w = group_weights(np.arange(5000).astype(str), 300, seed=1)
    lo, hi = percentile_ci(ranking_metrics(y, s, w)["auroc"], 0.95)
    assert lo <= true_auc <= hi and hi - lo < 0.05


def test_resampling_groups_not_images_widens_the_ci_for_duplicated_groups() -> None:
    """Five copies of each patient's image: resampling images pretends there are 5x more patients."""
    rng = np.random.default_rng(1)
    y0 = (rng.random(80) < 0.5).astype(float)
    s0 = rng.normal(0, 1, 80) + 0.8 * y0
    y, s = np.repeat(y0, 5), np.repeat(s0, 5)
    groups = np.repeat(np.arange(80), 5).astype(str)
    by_group = percentile_ci(ranking_metrics(y, s, group_weights(groups, 500, 0))["auroc"], 0.95)
    by_image = percentile_ci(ranking_metrics(y, s, group_weights(np.arange(400).astype(str), 500, 0))["auroc"], 0.95)
    unique = percentile_ci(ranking_metrics(y0, s0, group_weights(np.arange(80).astype(str), 500, 0))["auroc"], 0.95)
    width = lambda ci: ci[1] - ci[0]  # noqa: E731
    assert width(by_group) > 1.8 * width(by_image)
    assert width(by_group) == pytest.approx(width(unique), rel=0.25)  # as if each patient were one image


def _two_models(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = (rng.random((400, 3)) < 0.4).astype(float)
    good = rng.normal(0, 1, (400, 3)) + 1.5 * y
    weak = rng.normal(0, 1, (400, 3)) + 0.3 * y
    return y, good, weak


def test_paired_difference_has_the_right_sign_and_excludes_zero() -> None:
    rng = np.random.default_rng(2)
    y, good, weak = _two_models(rng)
    w = group_weights(np.repeat(np.arange(200), 2).astype(str), 300, seed=0)
    thr = np.zeros(3)
    a, b = model_stats(y, good, thr, w, 0.9), model_stats(y, weak, thr, w, 0.9)
    d = paired_difference(a, b, "auroc_macro", 0.95)
    assert d["diff"] == pytest.approx(a.summary["auroc_macro"] - b.summary["auroc_macro"])
    assert 0 < d["diff_ci_low"] <= d["diff"] <= d["diff_ci_high"]
    assert d["diff_p"] < 0.01
    r = paired_difference(b, a, "auroc_macro", 0.95)
    assert r["diff_ci_high"] < 0 and r["diff"] == pytest.approx(-d["diff"])


def test_model_stats_point_estimates_match_sklearn_and_skip_single_class_labels() -> None:
    rng = np.random.default_rng(3)
    y = (rng.random((120, 3)) < 0.3).astype(float)
    y[:, 2] = 0  # no positives: left out of every macro
    y[:5, 0] = 1
    s = rng.random((120, 3))
    w = group_weights(np.repeat(np.arange(60), 2).astype(str), 200, seed=0)
    st = model_stats(y, s, np.full(3, 0.5), w, 0.9)
    assert st.label["auroc"][0] == pytest.approx(roc_auc_score(y[:, 0], s[:, 0]))
    assert np.isnan(st.label["auroc"][2])
    assert st.summary["auroc_macro"] == pytest.approx(np.mean([roc_auc_score(y[:, j], s[:, j]) for j in (0, 1)]))
    assert st.summary["auroc_micro"] == pytest.approx(roc_auc_score(y.ravel(), s.ravel()))
    for k, v in st.summary_samples.items():
        assert v.shape == (200,) and np.isfinite(v).all(), k
    lo, hi = percentile_ci(st.summary_samples["auroc_macro"], 0.95)
    assert lo < st.summary["auroc_macro"] < hi


def test_percentile_ci_ignores_nan_resamples() -> None:
    lo, hi = percentile_ci(np.array([np.nan, 0.0, 1.0, 2.0, 3.0, 4.0]), 0.5)
    assert (lo, hi) == pytest.approx((1.0, 3.0))
    assert np.isnan(percentile_ci(np.array([np.nan]), 0.95)[0])
