"""Plot data frames and the choice of images for attention maps."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import auc, roc_auc_score

from medvit.data.manifest import read_manifest
from medvit.evaluate.figures import attention_candidates
from medvit.evaluate.plots import POOLED, pr_frame, reliability_frame, roc_frame


def test_curve_frames_are_long_format_and_skip_single_class_labels() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random((50, 3)) < 0.5).astype(float)
    y[:, 2] = 1  # one class only: no curve
    scores = {"finetune": rng.random((50, 3)), "clip_zeroshot": rng.random((50, 3))}
    roc = roc_frame(y, scores, ["a", "b", "c"])
    assert list(roc.columns) == ["model", "label", "fpr", "tpr"]
    assert set(roc["label"]) == {"a", "b"} and set(roc["model"]) == set(scores)
    part = roc[(roc["model"] == "finetune") & (roc["label"] == "a")]
    # the area under the stored points is the AUROC (points are rounded to 6 digits)
    assert auc(part["fpr"], part["tpr"]) == pytest.approx(roc_auc_score(y[:, 0], scores["finetune"][:, 0]), abs=1e-5)
    pr = pr_frame(y, scores, ["a", "b", "c"])
    assert list(pr.columns) == ["model", "label", "recall", "precision"]
    part = pr[(pr["model"] == "finetune") & (pr["label"] == "b")]
    assert part["recall"].is_monotonic_increasing  # ordered by decreasing threshold


def test_reliability_frame_has_pooled_and_per_label_bins_without_empty_ones() -> None:
    y = np.array([[1, 0], [0, 0], [1, 1]])
    s = np.array([[0.95, 0.05], [0.05, 0.15], [0.95, 0.85]])
    rel = reliability_frame(y, {"m": s}, ["a", "b"], n_bins=10)
    pooled = rel[rel["label"] == POOLED]
    assert pooled["count"].sum() == 6 and (rel["count"] > 0).all()
    assert set(rel["label"]) == {POOLED, "a", "b"}


def test_attention_candidates_skip_burned_in_images(tiny_cache: Callable[..., Path]) -> None:
    cache = tiny_cache()
    m = read_manifest(cache)
    n_test = len(m.split("test"))
    assert attention_candidates(m).tolist() == list(range(n_test))
    # ingest may keep burned-in images (allow_burned_in) but this manifest cannot say which: none qualify
    assert attention_candidates(m, burned_in_possible=True).size == 0
    frame = pd.read_csv(cache / "manifest.csv")
    frame["burned_in"] = ["True" if i % 2 else "False" for i in range(len(frame))]
    frame.to_csv(cache / "manifest.csv", index=False)
    flags = read_manifest(cache).split("test")["burned_in"].astype(str).tolist()
    got = attention_candidates(read_manifest(cache), burned_in_possible=True).tolist()
    assert got == [i for i, f in enumerate(flags) if f == "False"] and 0 < len(got) < n_test
