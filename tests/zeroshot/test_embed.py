"""The on-disk embedding cache and the batched embedding path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from medvit.data.dataset import CacheDataset
from medvit.zeroshot.backends import load_backend
from medvit.zeroshot.embed import EmbeddingCache, cache_key, embed_dataset
from medvit.zeroshot.preprocess import replicate_mapping


def test_cache_round_trip_and_key_isolation(tmp_path: Path) -> None:
    key = {"weights": "w1", "preprocess": {"size": 224}, "rgb": {}, "data_hash": "abc"}
    cache = EmbeddingCache(tmp_path, key)
    emb = np.arange(6, dtype=np.float32).reshape(3, 2)
    assert cache.load("val", ["a", "b", "c"]) is None
    cache.save("val", ["a", "b", "c"], emb)
    np.testing.assert_array_equal(cache.load("val", ["a", "b", "c"]), emb)
    assert cache.load("val", ["a", "c", "b"]) is None  # different ids/order: recompute
    for change in ({"weights": "w2"}, {"data_hash": "abd"}, {"preprocess": {"size": 336}}):
        assert EmbeddingCache(tmp_path, {**key, **change}).dir != cache.dir
    assert EmbeddingCache(tmp_path, dict(key)).dir == cache.dir


def test_embed_dataset_equals_manual_pipeline(tiny_cache, tiny_clip_dir: Path) -> None:
    cache = tiny_cache(size=48)  # not the model's 32 px: exercises the resize
    backend = load_backend("transformers", str(tiny_clip_dir))
    ds = CacheDataset(cache, "val")
    rgb = replicate_mapping()
    got = embed_dataset(backend, ds, rgb, batch_size=3)  # batches of 3 over 10 images, last one partial
    assert got.shape == (len(ds), 16)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)
    x = torch.from_numpy(np.stack([ds.image(i) for i in range(len(ds))]))
    with torch.inference_mode():
        want = backend.model.get_image_features(pixel_values=backend.preprocess(rgb(x))).pooler_output.numpy()
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(got, want, atol=1e-5)
    key = cache_key(backend, rgb, "digest")
    assert key["weights"] == backend.fingerprint and key["preprocess"]["size"] == 32
