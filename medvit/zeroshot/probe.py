"""Linear probe: one-vs-rest logistic regression on frozen, L2-normalised CLIP image embeddings.

One ``LogisticRegression`` per label (not sklearn's OneVsRestClassifier, which refuses
a label with a single class). A label with a single class in the (k-shot) training
set has nothing to learn: it gets a constant score equal to its train prevalence
(0 or 1), which ranks nothing (AUROC 0.5) and is reported in ``constant_labels``.

``k_shot``: per label, a seeded sample of up to k positives and k negatives from the
train split (all of a class when it has fewer), the usual few-shot probe protocol.

Unknown (NaN) train targets are masked: each label's regression is fitted on its
known rows only, and ``n_train`` counts those.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.linear_model import LogisticRegression


@dataclass(frozen=True)
class LinearProbe:
    """Per-label weights; ``constant[j]`` is not NaN for a label scored by its prevalence."""

    coef: np.ndarray  # (L, D)
    intercept: np.ndarray  # (L,)
    constant: np.ndarray  # (L,) prevalence or NaN
    n_train: np.ndarray = field(default_factory=lambda: np.zeros(0, int))  # (L,) samples used per label

    @property
    def constant_labels(self) -> list[int]:
        return [int(j) for j in np.flatnonzero(~np.isnan(self.constant))]

    def predict(self, emb: np.ndarray) -> np.ndarray:
        """(N, D) embeddings -> (N, L) probabilities."""
        z = np.asarray(emb, dtype=np.float64) @ self.coef.T + self.intercept  # (N, L) logits
        p = 0.5 * (1.0 + np.tanh(0.5 * z))  # sigmoid, overflow-free
        const = ~np.isnan(self.constant)
        p[:, const] = self.constant[const]
        return p


def kshot_indices(y: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of up to ``k`` positives and ``k`` negatives of a (N,) 0/1 label (NaN: never drawn), sorted."""
    known = np.isfinite(y)
    pos, neg = np.flatnonzero(known & (y > 0.5)), np.flatnonzero(known & (y <= 0.5))
    pick = [rng.choice(ix, size=min(k, len(ix)), replace=False) for ix in (pos, neg) if len(ix)]
    return np.sort(np.concatenate(pick)) if pick else np.zeros(0, int)


def fit_linear_probe(x: np.ndarray, y: np.ndarray, *, C: float = 1.0, k_shot: int | None = None, seed: int = 0,
                     max_iter: int = 1000) -> LinearProbe:
    """Fit one logistic regression per label on (N, D) embeddings and (N, L) 0/1 targets (NaN: unknown)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n_labels, dim = y.shape[1], x.shape[1]
    coef, intercept = np.zeros((n_labels, dim)), np.zeros(n_labels)
    constant, n_train = np.full(n_labels, np.nan), np.zeros(n_labels, int)
    rng = np.random.default_rng(seed)
    for j in range(n_labels):
        idx = kshot_indices(y[:, j], k_shot, rng) if k_shot else np.flatnonzero(np.isfinite(y[:, j]))
        yj = (y[idx, j] > 0.5).astype(int)
        n_train[j] = len(idx)
        if len(np.unique(yj)) < 2:
            constant[j] = float(yj.mean()) if len(yj) else 0.0
            continue
        clf = LogisticRegression(C=C, max_iter=max_iter, random_state=seed)
        clf.fit(x[idx], yj)
        coef[j], intercept[j] = clf.coef_[0], clf.intercept_[0]
    return LinearProbe(coef=coef, intercept=intercept, constant=constant, n_train=n_train)
