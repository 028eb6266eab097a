"""The one path from score tables to aligned arrays: order, labels and id checks."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from medvit.data.manifest import read_manifest
from medvit.data.scores import write_scores
from medvit.errors import UserError
from medvit.evaluate.inputs import aligned_scores, discover_models


def test_rows_and_columns_are_aligned_to_the_manifest(tiny_cache: Callable[..., Path], tmp_path: Path) -> None:
    m = read_manifest(tiny_cache())
    ids = m.split("test")["id"].tolist()
    rng = np.random.default_rng(0)
    scores = rng.random((len(ids), 3))
    perm = rng.permutation(len(ids))
    # shuffled rows and reversed label columns
    write_scores(tmp_path / "t.csv", [ids[i] for i in perm], scores[perm][:, ::-1], m.label_names[::-1])
    out = aligned_scores(m, tmp_path / "t.csv", "test")
    np.testing.assert_allclose(out, scores, atol=1e-6)


@pytest.mark.parametrize("problem", ["missing", "extra", "duplicate", "labels"])
def test_mismatch_is_a_clear_error_naming_the_file(
    problem: str, tiny_cache: Callable[..., Path], tmp_path: Path
) -> None:
    m = read_manifest(tiny_cache())
    ids = m.split("val")["id"].tolist()
    labels = list(m.label_names)
    if problem == "missing":
        ids = ids[1:]
    elif problem == "extra":
        ids = ids + ["not-a-sample"]
    elif problem == "duplicate":
        ids = ids + ids[:1]
    else:
        labels = labels[:-1] + ["zzz"]
    path = tmp_path / "bad" / "val.csv"
    write_scores(path, ids, np.full((len(ids), len(labels)), 0.5), labels)
    with pytest.raises(UserError) as err:
        aligned_scores(m, path, "val")
    msg = str(err.value)
    assert str(path) in msg
    expected = {"missing": "missing from the table", "extra": "not in the manifest", "duplicate": "duplicated",
                "labels": "unexpected ['zzz']"}[problem]
    assert expected in msg


def test_discover_models_lists_finetune_then_every_baseline(tmp_path: Path) -> None:
    (tmp_path / "models" / "scores").mkdir(parents=True)
    for b in ("linear_probe", "clip_zeroshot"):
        (tmp_path / "baselines" / "scores" / b).mkdir(parents=True)
    models = discover_models(tmp_path / "models", tmp_path / "baselines")
    assert list(models) == ["finetune", "clip_zeroshot", "linear_probe"]
    with pytest.raises(FileNotFoundError, match="zeroshot"):
        discover_models(tmp_path / "models", tmp_path / "nothing")

