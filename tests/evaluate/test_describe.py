"""Data description: demographics and label prevalence per split, from a real tiny cache's manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest

from medvit.data.manifest import SPLITS, label_column, read_manifest
from medvit.evaluate.describe import demographics, description_json, label_prevalence


@pytest.fixture
def manifest(tiny_cache: Callable[..., Path]):
    cache = tiny_cache(n_groups=30, per_group=2, seed=5)
    path = cache / "manifest.csv"
    frame = pd.read_csv(path)
    rng = np.random.default_rng(0)
    frame["sex"] = rng.choice(["F", "M", ""], size=len(frame))
    frame["age_band"] = rng.choice(["20-29", "60-69", "90+"], size=len(frame))
    frame.loc[frame.index[::7], label_column("a")] = np.nan  # unknown targets
    frame.to_csv(path, index=False)
    return read_manifest(cache)


def test_demographics_counts_sum_to_each_split_size(manifest) -> None:
    demo, missing = demographics(manifest, ("sex", "age_band", "site"))
    assert missing == ["site"]
    assert list(demo.columns) == ["split", "attribute", "value", "count", "fraction"]
    for split in SPLITS:
        size = len(manifest.split(split))
        for attribute in ("sex", "age_band"):
            part = demo[(demo["split"] == split) & (demo["attribute"] == attribute)]
            assert part["count"].sum() == size
            assert part["fraction"].sum() == pytest.approx(1.0)
            assert part["fraction"].tolist() == pytest.approx((part["count"] / size).tolist())
    test = manifest.split("test")
    unknown = demo[(demo["split"] == "test") & (demo["attribute"] == "sex") & (demo["value"] == "unknown")]
    assert int(unknown["count"].iloc[0]) == int(test["sex"].isna().sum())  # empty cell -> unknown


def test_label_prevalence_per_split_counts_known_targets(manifest) -> None:
    prev = label_prevalence(manifest)
    assert len(prev) == len(SPLITS) * manifest.num_labels
    for split in SPLITS:
        y = manifest.labels(split)
        row = prev[(prev["split"] == split) & (prev["label"] == "a")].iloc[0]
        known = np.isfinite(y[:, 0])
        assert (row["n"], row["n_known"], row["positives"]) == (len(y), known.sum(), np.nansum(y[:, 0]))
        assert row["prevalence"] == pytest.approx(np.nanmean(y[:, 0]))


def test_description_json_is_strict_json(manifest) -> None:
    demo, missing = demographics(manifest, ("sex",))
    doc = description_json(demo, label_prevalence(manifest), missing)
    text = json.dumps(doc, allow_nan=False)
    assert json.loads(text)["demographics"][0].keys() == {"split", "attribute", "value", "count", "fraction"}
