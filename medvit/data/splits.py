"""Group-aware, multi-label stratified train/val/test splits.

Iterative stratification (Sechidis, Tsoumakas & Vlahavas, ECML PKDD 2011,
"On the stratification of multi-label data") applied to *groups* instead of
samples: a group (pseudonymous patient, or scene) carries the label counts of
all its samples, so every group lands in exactly one split while the per-label
positive counts of each split track the requested fractions. The rarest label
is placed first, which is what keeps rare findings present in val and test.
Deterministic for a seed: groups are sorted by name before a seeded shuffle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from medvit.data.manifest import SPLITS


def group_splits(groups: Sequence[str], labels: np.ndarray, fractions: Mapping[str, float],
                 seed: int) -> np.ndarray:
    """Assign every sample a split so that no group spans two splits.

    Args:
        groups: (N,) group of each sample.
        labels: (N, L) 0/1 multi-hot targets.
        fractions: split name -> fraction of samples (names from ``SPLITS``; sums to 1).
        seed: tie-break and visiting-order seed.

    Returns:
        (N,) array of split names.
    """
    groups = np.asarray(groups, dtype=object)
    labels = np.asarray(labels, dtype=np.float64).reshape(len(groups), -1)
    names = [s for s in SPLITS if fractions.get(s, 0.0) > 0]
    frac = np.array([fractions[s] for s in names], dtype=np.float64)
    frac = frac / frac.sum()
    uniq, inverse = np.unique(groups, return_inverse=True)  # sorted: order-independent
    n_groups, n_labels = len(uniq), labels.shape[1]
    size = np.bincount(inverse, minlength=n_groups).astype(np.float64)          # (G,) samples per group
    counts = np.zeros((n_groups, n_labels))                                      # (G, L) positives per group
    np.add.at(counts, inverse, labels)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_groups)

    want_total = frac * size.sum()                                               # (S,) samples wanted
    want_label = frac[:, None] * counts.sum(0)[None, :]                          # (S, L) positives wanted
    assigned = np.full(n_groups, -1)

    def place(g: int, label: int | None) -> None:
        if label is None:
            score = want_total.copy()
        else:
            score = want_label[:, label] + 1e-9 * want_total  # ties -> split wanting most samples
        best = np.flatnonzero(score >= score.max() - 1e-12)  # ties within 1e-12 of the best
        s = int(best[0] if len(best) == 1 else rng.choice(best))
        assigned[g] = s
        want_total[s] -= size[g]
        want_label[s] -= counts[g]

    remaining = counts[order].copy()
    pending = order.copy()
    while True:
        open_rows = assigned[pending] < 0
        if not open_rows.any():
            break
        pos = (remaining[open_rows] > 0).sum(0)                                  # (L,) groups left per label
        if not (pos > 0).any():
            break
        label = int(np.flatnonzero(pos > 0)[np.argmin(pos[pos > 0])])           # rarest label still open
        for k in np.flatnonzero(open_rows & (remaining[:, label] > 0)):
            place(int(pending[k]), label)
    for g in order:  # groups without any positive label
        if assigned[g] < 0:
            place(int(g), None)
    split_of_group = np.array(names, dtype=object)[assigned]
    return split_of_group[inverse]
