"""Failure cases: the most confident errors per label at the threshold, with real attention overlays."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from medvit.data.manifest import read_manifest
from medvit.evaluate.failures import image_name, select_failures, write_failures
from medvit.models.classifier import build_classifier, save_classifier


def test_top_k_false_positives_and_negatives_at_the_threshold() -> None:
    y = np.array([[0], [0], [0], [1], [1], [1], [np.nan]])
    s = np.array([[0.9], [0.7], [0.1], [0.2], [0.6], [0.3], [0.99]])
    t = select_failures(y, s, np.array([0.5]), ["a"], [f"id{i}" for i in range(7)], [f"g{i}" for i in range(7)], 2)
    fp = t[t["kind"] == "false_positive"]
    fn = t[t["kind"] == "false_negative"]
    assert fp["id"].tolist() == ["id0", "id1"] and fp["rank"].tolist() == [1, 2]  # highest-scored negatives
    assert fn["id"].tolist() == ["id3", "id5"]  # lowest-scored positives
    assert "id6" not in t["id"].tolist()  # an unknown target is never a failure
    assert (t["threshold"] == 0.5).all() and fp["score"].tolist() == [0.9, 0.7]
    one = select_failures(y, s, np.array([0.5]), ["a"], [str(i) for i in range(7)], ["g"] * 7, 1)
    assert len(one) == 2


def test_overlays_for_drawable_cases_only_with_names_free_of_ids(tiny_cache: Callable[..., Path],
                                                                 tmp_path: Path) -> None:
    cache = tiny_cache(n_groups=30, per_group=2, seed=2)
    m = read_manifest(cache)
    meta = {"model": "deit3_small_patch16_384", "img_size": 64, "in_chans": 1, "label_names": list(m.label_names),
            "head": {"hidden_dim": 16, "dropout": 0.0}, "mean": [0.45], "std": [0.25], "weights": "random-init",
            "freeze_blocks": 1, "model_kwargs": {"depth": 2, "embed_dim": 64, "num_heads": 2}}
    save_classifier(build_classifier(meta), meta, tmp_path / "model")
    test = m.split("test")
    y = m.labels("test")
    s = np.random.default_rng(0).random(y.shape)
    table = select_failures(y, s, np.full(3, 0.5), m.label_names, test["id"].tolist(), test["group"].tolist(), 2)
    assert len(table) > 2
    drawable = np.array(sorted(set(table["row"]))[:2])  # the others may hold burned-in text
    out = tmp_path / "report"
    (out / "failures").mkdir(parents=True)
    (out / "failures" / "stale_fp_9.png").write_bytes(b"old")
    pngs = write_failures(cache, m, tmp_path / "model", table, out, drawable)
    written = pd.read_csv(out / "failures" / "failures.csv", keep_default_na=False)
    assert list(written.columns) == ["label", "kind", "rank", "id", "group", "score", "threshold", "image"]
    drawn = written[written["image"] != ""]
    assert set(drawn["id"]) == set(test["id"].iloc[drawable]) and len(drawn) == len(pngs)
    assert sorted(p.name for p in (out / "failures").glob("*.png")) == sorted(drawn["image"])  # stale one gone
    for p, r in zip(pngs, drawn.itertuples()):
        assert p.name == image_name(r.label, r.kind, r.rank) and p.read_bytes()[:4] == b"\x89PNG"
        assert not any(i in p.name for i in test["id"])
