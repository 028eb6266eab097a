"""Linear probe on synthetic embeddings."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from medvit.zeroshot.embed import l2_normalize
from medvit.zeroshot.probe import fit_linear_probe, kshot_indices


def _separable(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Label j is on iff coordinate j of the (noisy) embedding is positive."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, 3)) < 0.4).astype(np.float32)
    x = rng.normal(0, 0.05, size=(n, 16))
    x[:, :3] += np.where(y > 0, 1.0, -1.0)
    return l2_normalize(x).astype(np.float32), y


def test_probe_separates_separable_embeddings() -> None:
    x, y = _separable(120, 0)
    xt, yt = _separable(60, 1)
    probe = fit_linear_probe(x, y, C=10.0)
    p = probe.predict(xt)
    assert p.shape == (60, 3) and ((p >= 0) & (p <= 1)).all()
    for j in range(3):
        assert roc_auc_score(yt[:, j], p[:, j]) > 0.99


def test_single_class_label_gets_constant_prevalence() -> None:
    x, y = _separable(60, 0)
    y[:, 1] = 1.0
    probe = fit_linear_probe(x, y)
    assert probe.constant_labels == [1]
    p = probe.predict(x)
    assert (p[:, 1] == 1.0).all() and p[:, 0].std() > 0


def test_kshot_subset_is_seeded_and_balanced() -> None:
    y = np.array([1, 0, 0, 1, 0, 1, 0, 0, 1, 0], dtype=np.float32)
    a = kshot_indices(y, 2, np.random.default_rng(0))
    b = kshot_indices(y, 2, np.random.default_rng(0))
    np.testing.assert_array_equal(a, b)
    assert len(a) == 4 and y[a].sum() == 2
    assert len(kshot_indices(y, 10, np.random.default_rng(0))) == 10  # all of each class when fewer than k
    x, yy = _separable(200, 0)
    probe = fit_linear_probe(x, yy, k_shot=4, seed=3)
    assert probe.n_train.tolist() == [8, 8, 8]
    xt, yt = _separable(60, 1)
    assert roc_auc_score(yt[:, 0], probe.predict(xt)[:, 0]) > 0.9  # 4-shot still learns a separable label


def test_unknown_train_targets_are_left_out_of_the_fit() -> None:
    x, y = _separable(120, 0)
    hide = np.random.default_rng(2).random(y.shape) < 0.2
    masked = np.where(hide, np.nan, y)
    probe = fit_linear_probe(x, masked, C=10.0)
    assert probe.n_train.tolist() == (~hide).sum(axis=0).tolist() and probe.constant_labels == []
    for j in range(3):  # the same as fitting label j on its known rows alone
        k = ~hide[:, j]
        alone = fit_linear_probe(x[k], y[k, j : j + 1], C=10.0)
        np.testing.assert_allclose(probe.coef[j], alone.coef[0], rtol=1e-6, atol=1e-9)
    # had the unknown entries been read as 0 or 1, the fit would differ
    for fill in (0.0, 1.0):
        assert not np.array_equal(fit_linear_probe(x, np.where(hide, fill, y), C=10.0).coef, probe.coef)
    # k-shot draws never pick an unknown row
    idx = kshot_indices(masked[:, 0], 5, np.random.default_rng(0))
    assert len(idx) == 10 and np.isfinite(masked[idx, 0]).all()
