"""Torch dataset over the ingest cache.

Yields ``{"image": (C, H, W) float32 tensor, "labels": (L,) float32, "id": str}``;
every stage uses these keys. An unknown label is NaN and stays NaN through the
default collate; the losses and metrics mask it (``train/loss.py``, ``metrics.py``). Normalisation and augmentation are applied by the
``transform`` callable, which takes and returns a (C, H, W) float32 array.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from medvit.data.cache import ShardReader
from medvit.data.manifest import Manifest, read_manifest

Transform = Callable[[np.ndarray], np.ndarray]


class CacheDataset(Dataset):
    """One split of an ingest cache."""

    def __init__(
        self,
        cache_dir: str | Path,
        split: str,
        transform: Transform | None = None,
        manifest: Manifest | None = None,
    ) -> None:
        self.manifest = manifest or read_manifest(cache_dir)
        rows = self.manifest.split(split)
        self.ids: list[str] = rows["id"].tolist()
        self._locs = rows[["shard", "index"]].to_numpy(np.int64)
        self.labels = self.manifest.labels(split)  # (N, L)
        self.label_names = self.manifest.label_names
        self.reader = ShardReader(cache_dir)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.ids)

    def image(self, i: int) -> np.ndarray:
        """The cached (C, H, W) float32 image of sample ``i`` (a copy)."""
        shard, index = self._locs[i]
        return np.array(self.reader.get(int(shard), int(index)), dtype=np.float32)

    def __getitem__(self, i: int) -> dict[str, object]:
        img = self.image(i)
        if self.transform is not None:
            img = self.transform(img)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32)),
            "labels": torch.from_numpy(self.labels[i]),
            "id": self.ids[i],
        }
