"""The cache, manifest, dataset and score-table contracts every stage relies on."""

from pathlib import Path

import numpy as np
import pytest

from medvit.data.cache import ShardReader, ShardWriter, read_stats
from medvit.data.dataset import CacheDataset
from medvit.data.manifest import read_manifest
from medvit.data.scores import read_scores, write_scores


def test_shards_round_trip_and_memory_map(tmp_path: Path) -> None:
    w = ShardWriter(tmp_path, shard_size=3)
    imgs = [np.full((2, 4, 4), i, np.float32) for i in range(7)]
    locs = [w.add(im) for im in imgs]
    w.flush()
    assert locs[0] == (0, 0) and locs[3] == (1, 0) and locs[6] == (2, 0)
    r = ShardReader(tmp_path)
    for im, (s, i) in zip(imgs, locs):
        np.testing.assert_array_equal(r.get(s, i), im)
    assert isinstance(r._maps[0], np.memmap)
    assert not list(tmp_path.rglob("*.tmp"))


def test_shard_writer_rejects_nan_and_wrong_dtype(tmp_path: Path) -> None:
    w = ShardWriter(tmp_path, shard_size=3)
    with pytest.raises(ValueError, match="NaN"):
        w.add(np.full((1, 2, 2), np.nan, np.float32))
    with pytest.raises(ValueError, match="float32"):
        w.add(np.zeros((1, 2, 2), np.float64))


def test_dataset_yields_contract_keys(tiny_cache) -> None:
    cache = tiny_cache(channels=2, size=16)
    ds = CacheDataset(cache, "train")
    m = read_manifest(cache)
    assert len(ds) == len(m.split("train")) > 0
    item = ds[0]
    assert set(item) == {"image", "labels", "id"}
    assert item["image"].shape == (2, 16, 16) and item["image"].dtype.is_floating_point
    assert item["labels"].shape == (3,)
    assert item["id"] == m.split("train")["id"][0]
    assert read_stats(cache)["size"] == [16, 16]


def test_manifest_missing_is_clear(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="manifest.csv.*ingest"):
        read_manifest(tmp_path)


def test_scores_round_trip_and_validation(tmp_path: Path) -> None:
    s = np.array([[0.1, 0.9], [0.5, 0.25]])
    write_scores(tmp_path / "val.csv", ["x", "y"], s, ["a", "b"])
    t = read_scores(tmp_path / "val.csv")
    assert t.ids == ("x", "y") and t.label_names == ("a", "b")
    np.testing.assert_allclose(t.scores, s)
    with pytest.raises(ValueError, match="shape"):
        write_scores(tmp_path / "bad.csv", ["x"], s, ["a", "b"])
    with pytest.raises(ValueError, match="NaN"):
        write_scores(tmp_path / "bad.csv", ["x", "y"], s * np.nan, ["a", "b"])


def test_manifest_subgroup_columns_stay_text(tmp_path: Path) -> None:
    # A device model that is all digits keeps its leading zeros (read as a number, "0042" became 42).
    (tmp_path / "labels.json").write_text('{"label_names": ["a"]}')
    (tmp_path / "manifest.csv").write_text(
        "id,group,split,source,shard,index,manufacturer_model,site,label:a\n"
        "0001,0001,train,x.dcm,0,0,0042,H00ab,1\n"
        "0002,0002,test,y.dcm,0,1,0042,H00ab,\n")
    m = read_manifest(tmp_path)
    assert m.frame["manufacturer_model"].tolist() == ["0042", "0042"]
    assert m.frame["id"].tolist() == ["0001", "0002"]
    np.testing.assert_array_equal(m.labels(), np.array([[1.0], [np.nan]], np.float32))
