"""The ingest cache: memory-mapped float32 shards plus normalisation stats.

Layout of a cache directory (written by ingest, read by every later stage)::

    manifest.csv       one row per sample (see medvit.data.manifest)
    labels.json        {"label_names": [...]}
    stats.json         {"mean": [C], "std": [C], "channels": [C names], "size": [H, W]}
    shards/shard-00000.npy   (n, C, H, W) float32, no NaN; row k is manifest (shard=0, index=k)
    rejects.csv, report.json

Shards are plain ``.npy`` so ``np.load(mmap_mode="r")`` maps them without a copy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from medvit.io.atomic import atomic_open

SHARD_DIR = "shards"


def shard_path(cache_dir: str | Path, shard: int) -> Path:
    """Path of shard number ``shard``."""
    return Path(cache_dir) / SHARD_DIR / f"shard-{shard:05d}.npy"


def check_cache_image(image: np.ndarray) -> None:
    """Raise ValueError unless ``image`` is a (C, H, W) float32 array without NaN or inf."""
    if image.dtype != np.float32 or image.ndim != 3:
        raise ValueError(f"cache images must be (C,H,W) float32, got {image.dtype} {image.shape}")
    if not np.isfinite(image).all():
        raise ValueError("cache images must not contain NaN or inf")


class ShardWriter:
    """Append (C, H, W) float32 images into fixed-size ``.npy`` shards.

    Each shard is written to a temporary file and renamed when full, so a
    killed writer never leaves a shard that looks complete.
    """

    def __init__(self, cache_dir: str | Path, shard_size: int) -> None:
        self.cache_dir = Path(cache_dir)
        self.shard_size = shard_size
        (self.cache_dir / SHARD_DIR).mkdir(parents=True, exist_ok=True)
        self._buf: list[np.ndarray] = []
        self._shard = 0

    def add(self, image: np.ndarray) -> tuple[int, int]:
        """Queue one image; return its (shard, index)."""
        check_cache_image(image)
        if self._buf and image.shape != self._buf[0].shape:
            self.flush()
        loc = (self._shard, len(self._buf))
        self._buf.append(image)
        if len(self._buf) >= self.shard_size:
            self.flush()
        return loc

    def flush(self) -> None:
        """Write the queued images as one shard."""
        if not self._buf:
            return
        path = shard_path(self.cache_dir, self._shard)
        with atomic_open(path, "wb") as f:
            np.save(f, np.stack(self._buf))
        self._buf = []
        self._shard += 1


class ShardReader:
    """Random access to cached images by (shard, index), memory-mapped."""

    def __init__(self, cache_dir: str | Path) -> None:
        self.cache_dir = Path(cache_dir)
        self._maps: dict[int, np.ndarray] = {}

    def get(self, shard: int, index: int) -> np.ndarray:
        """Return a (C, H, W) float32 view (copy it before mutating)."""
        arr = self._maps.get(shard)
        if arr is None:
            arr = np.load(shard_path(self.cache_dir, shard), mmap_mode="r")
            self._maps[shard] = arr
        return arr[index]

    def __getstate__(self) -> dict[str, Any]:
        # Memory maps are reopened lazily in each DataLoader worker.
        return {"cache_dir": self.cache_dir, "_maps": {}}


def read_stats(cache_dir: str | Path) -> dict[str, Any]:
    """Per-channel train-split ``mean``/``std``, ``channels`` and ``size``."""
    path = Path(cache_dir) / "stats.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no normalisation stats; re-run `dvc repro ingest`")
    return json.loads(path.read_text())
