"""Shard writers: the same bytes as np.save(np.stack(images)), parts, nodata masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medvit.data.cache import ShardWriter, shard_path
from medvit.ingest.writers import NodataMasks, PartWriter, StreamingShardWriter


def test_streaming_shard_writer_writes_the_same_bytes_as_shard_writer(tmp_path: Path) -> None:
    images = [np.random.default_rng(i).random((2, 5, 7), dtype=np.float32) for i in range(7)]
    plain, streaming = ShardWriter(tmp_path / "a", 3), StreamingShardWriter(tmp_path / "b", 3)
    for image in images:
        assert plain.add(image) == streaming.add(image)
    plain.flush()
    streaming.flush()
    for shard in range(3):
        assert shard_path(tmp_path / "a", shard).read_bytes() == shard_path(tmp_path / "b", shard).read_bytes()
    assert not list((tmp_path / "b").rglob("*.tmp"))


def test_part_writer_streams_np_save_bytes_and_splits_parts(tmp_path: Path) -> None:
    images = [np.random.default_rng(i).random((1, 6, 5), dtype=np.float32) for i in range(5)]
    writer = PartWriter(tmp_path, ".part-x", limit=2)
    locs = [writer.add(im) for im in images[:3]]
    locs.append(writer.add(np.zeros((1, 4, 4), np.float32)))  # a new shape starts a new part
    locs.append(writer.add(images[4]))
    parts = writer.close()
    assert locs == [(0, 0), (0, 1), (1, 0), (2, 0), (3, 0)]
    assert [n for _, n in parts] == [2, 1, 1, 1]
    expected = [np.stack(images[:2]), np.stack(images[2:3]), np.zeros((1, 1, 4, 4), np.float32),
                np.stack(images[4:])]
    for (name, _), array in zip(parts, expected):
        reference = tmp_path / "ref.npy"
        np.save(reference, array)
        assert (tmp_path / name).read_bytes() == reference.read_bytes(), name
        np.testing.assert_array_equal(np.load(tmp_path / name, mmap_mode="r"), array)
    with pytest.raises(ValueError, match="NaN"):
        writer.add(np.full((1, 6, 5), np.nan, np.float32))
    aborted = PartWriter(tmp_path / "sub", ".part-y", limit=2)
    (tmp_path / "sub").mkdir()
    for im in images[:3]:
        aborted.add(im)
    aborted.abort()
    assert not list((tmp_path / "sub").iterdir())


def test_nodata_masks_fill_only_masked_pixels_of_kept_rows(tmp_path: Path) -> None:
    writer = StreamingShardWriter(tmp_path, 2)
    images = [np.full((2, 3, 3), float(i), np.float32) for i in range(3)]
    locs = [writer.add(im) for im in images]
    writer.flush()
    masks = NodataMasks(tmp_path / "masks.tmp")
    bad = np.zeros((2, 3, 3), bool)
    bad[0, 0, 0] = bad[1, 2, 1] = True
    for loc in locs:
        masks.add(loc, np.packbits(bad).tobytes())
    masks.discard(locs[1])  # a rejected scene's row: never in the manifest, left as written
    masks.fill(tmp_path, np.array([7.0, 9.0], np.float32))
    masks.close()
    assert not (tmp_path / "masks.tmp").exists()
    for i, (shard, index) in enumerate(locs):
        got = np.load(shard_path(tmp_path, shard))[index]
        expected = images[i].copy()
        if i != 1:
            expected[0, 0, 0], expected[1, 2, 1] = 7.0, 9.0
        np.testing.assert_array_equal(got, expected)
