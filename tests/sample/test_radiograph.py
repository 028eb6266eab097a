"""The chest radiograph phantom: each finding is a large effect, learnable from pooled pixels."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from medvit.sample.radiograph import FINDINGS, chest_radiograph


@pytest.mark.parametrize("finding", FINDINGS)
def test_each_finding_is_a_large_effect(finding: str) -> None:
    """Same patient and pose with and without the finding (the renderer is seeded identically)."""
    size = 64
    deltas = []
    for seed in range(4):
        base = chest_radiograph(np.random.default_rng(seed), size, ())
        sick = chest_radiograph(np.random.default_rng(seed), size, (finding,))
        deltas.append(sick - base)
    delta = np.mean(deltas, 0)
    top, bottom, centre_right = delta[: size // 2], delta[size // 2:], delta[28:40, 36:52]
    if finding == "cardiomegaly":
        assert centre_right.mean() > 0.15
    elif finding == "effusion":
        assert bottom.mean() > 2 * abs(top.mean()) and np.mean([(d > 0.2).mean() for d in deltas]) > 0.04
    elif finding == "nodule":  # several distinct bright round opacities
        assert np.mean([(d > 0.25).mean() for d in deltas]) > 0.01
    else:  # pneumothorax: a dark apical space
        assert np.mean([(d[: size // 2] < -0.15).mean() for d in deltas]) > 0.04


def test_findings_are_learnable_from_pixels() -> None:
    """A linear model on 12x12 pooled pixels separates the positional findings; a blob count the nodules."""
    size, n = 48, 140
    y = np.random.default_rng(0).random((n, len(FINDINGS))) < 0.33
    pooled, blobs = [], []
    for i in range(n):
        img = chest_radiograph(np.random.default_rng([7, i]), size, [f for f, on in zip(FINDINGS, y[i]) if on])
        pooled.append(img.reshape(12, 4, 12, 4).mean((1, 3)).ravel())
        pad = np.pad(img, 3, mode="edge")
        blur = np.mean([pad[a:a + size, b:b + size] for a in range(7) for b in range(7)], 0)
        blobs.append(((img - blur)[10:34, 5:43] > 0.15).mean())  # local bright spots in the lung fields
    x = np.array(pooled)
    for j, finding in enumerate(FINDINGS):
        if finding == "nodule":
            auc = roc_auc_score(y[:, j], blobs)
        else:
            clf = LogisticRegression(max_iter=3000).fit(x[:90], y[:90, j])
            auc = roc_auc_score(y[90:, j], clf.predict_proba(x[90:])[:, 1])
        assert auc > 0.85, (finding, auc)
