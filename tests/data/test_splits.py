"""Group-aware iterative stratification: no leakage, determinism, stratification."""

from __future__ import annotations

import numpy as np

from medvit.data.splits import group_splits

FRACTIONS = {"train": 0.6, "val": 0.2, "test": 0.2}


def _data(seed: int = 0, n_groups: int = 120, n_labels: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 6, n_groups)                                   # samples per patient
    groups = np.repeat([f"g{i:04d}" for i in range(n_groups)], sizes)
    prevalence = np.array([0.5, 0.3, 0.15, 0.06, 0.03])[:n_labels]       # includes rare labels
    labels = (rng.random((len(groups), n_labels)) < prevalence).astype(np.uint8)
    return groups, labels


def test_no_group_in_two_splits() -> None:
    groups, labels = _data()
    splits = group_splits(groups, labels, FRACTIONS, seed=0)
    for g in np.unique(groups):
        assert len(set(splits[groups == g])) == 1, g
    assert set(splits) == {"train", "val", "test"}


def test_deterministic_for_a_seed_and_independent_of_row_order() -> None:
    groups, labels = _data()
    a = group_splits(groups, labels, FRACTIONS, seed=3)
    np.testing.assert_array_equal(a, group_splits(groups, labels, FRACTIONS, seed=3))
    perm = np.random.default_rng(1).permutation(len(groups))
    b = group_splits(groups[perm], labels[perm], FRACTIONS, seed=3)
    np.testing.assert_array_equal(a[perm], b)
    assert (a != group_splits(groups, labels, FRACTIONS, seed=4)).any()


def test_fractions_and_label_distribution_are_stratified() -> None:
    groups, labels = _data(seed=2, n_groups=300)
    splits = group_splits(groups, labels, FRACTIONS, seed=0)
    n = len(groups)
    for name, frac in FRACTIONS.items():
        assert abs((splits == name).sum() / n - frac) < 0.05, name
        for j in range(labels.shape[1]):
            share = labels[splits == name, j].sum() / labels[:, j].sum()
            assert abs(share - frac) < 0.12, (name, j, share)  # rare labels reach every split too


def test_zero_val_fraction_and_unlabelled_groups() -> None:
    groups = np.array([f"g{i}" for i in range(20)])
    labels = np.zeros((20, 2), np.uint8)
    splits = group_splits(groups, labels, {"train": 0.75, "val": 0.0, "test": 0.25}, seed=0)
    assert (splits == "val").sum() == 0
    assert (splits == "train").sum() == 15 and (splits == "test").sum() == 5
