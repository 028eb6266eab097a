"""Training-side datasets and loaders: per-(epoch, sample) augmentation seeds and frozen-feature caching.

Augmentation draws are a pure function of (seed, epoch, sample index), and the
shuffle order comes from a ``DistributedSampler`` (also used with one process),
so an epoch sees the same batches whatever the worker count, rank layout or a
resume from a checkpoint.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from medvit.data.dataset import CacheDataset
from medvit.data.transforms import Pipeline
from medvit.models.classifier import Classifier


def derive_seed(*parts: int) -> int:
    """A 31-bit seed from integers (stable across processes, unlike ``hash``)."""
    h = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


class EpochDataset(Dataset):
    """A ``CacheDataset`` split with a ``Pipeline`` transform seeded per (seed, epoch, index)."""

    def __init__(self, base: CacheDataset, transform: Pipeline, seed: int = 0) -> None:
        self.base = base
        self.transform = transform
        self.seed = seed
        self.epoch = 0
        self.labels = base.labels
        self.ids = base.ids

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict[str, Any]:
        seed = derive_seed(self.seed, self.epoch, i) if self.transform.random else None
        img = self.transform(self.base.image(i), seed)
        return {"image": torch.from_numpy(img), "labels": torch.tensor(self.labels[i]), "index": i}


class TokenDataset(Dataset):
    """Precomputed frozen-prefix tokens with their labels (``cache_frozen_features``).

    ``tokens`` is (N, T, D), or (V, N, T, D) for a bank of V augmented views of
    which epoch e uses view e mod V.
    """

    def __init__(self, tokens: torch.Tensor, labels: np.ndarray, ids: list[str]) -> None:
        self.tokens = tokens
        self.labels = labels
        self.ids = ids
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        tokens = self.tokens[self.epoch % len(self.tokens), i] if self.tokens.ndim == 4 else self.tokens[i]
        return {"image": tokens, "labels": torch.tensor(self.labels[i]), "index": i}


def train_loader(ds: Dataset, batch_size: int, num_workers: int, seed: int, rank: int, world_size: int,
                 pin_memory: bool = False) -> tuple[DataLoader, DistributedSampler]:
    """Shuffled loader; call ``sampler.set_epoch(e)`` (and set ``ds.epoch``) before each epoch."""
    sampler = DistributedSampler(ds, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=False)
    loader = DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                        pin_memory=pin_memory, persistent_workers=False, drop_last=False)
    return loader, sampler


def eval_loader(ds: Dataset, batch_size: int, num_workers: int, rank: int, world_size: int) -> DataLoader:
    """This rank's strided share (rank, rank + world, ...) of ``ds`` in order, without padding."""
    indices = list(range(rank, len(ds), world_size))  # type: ignore[arg-type]
    return DataLoader(torch.utils.data.Subset(ds, indices), batch_size=batch_size, shuffle=False,
                      num_workers=num_workers)


@torch.no_grad()
def frozen_tokens(model: Classifier, ds: Dataset, batch_size: int, device: str, desc: str = "frozen features",
                  show_progress: bool = True) -> torch.Tensor:
    """Run the model's frozen prefix once over ``ds``: (N, T, D) float32 tokens on the CPU.

    Args:
        desc: label of the progress bar (one bar per split or augmented view).
        show_progress: False on the non-main DDP ranks.
    """
    out = []
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False)
    for batch in tqdm(loader, desc=desc, unit="batch", disable=not show_progress, leave=False):
        out.append(model.forward_prefix(batch["image"].to(device)).float().cpu())
    return torch.cat(out)
