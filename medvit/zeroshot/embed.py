"""Frozen CLIP image embeddings of cache splits, computed once and cached on disk.

The cache key covers everything the embeddings depend on: the model's weights
identity, its preprocessing, the RGB mapping, and the manifest digest. Prompts are
not part of it, so a re-run with new prompts (or the linear probe) reuses the
embeddings and never calls the image encoder. The folder lives outside the DVC
outputs (``$MEDVIT_CACHE_DIR`` or ``<repo>/.cache/medvit``, git- and DVC-ignored)::

    <root>/embeddings/<key>/{train,val,test}.npy   (N, D) float32, L2-normalised
    <root>/embeddings/<key>/{train,val,test}.ids   one id per line, manifest order
    <root>/embeddings/<key>/key.json               what the key was computed from
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from tqdm import tqdm

from medvit.data.dataset import CacheDataset
from medvit.hashing import sha256_json
from medvit.io.atomic import atomic_open
from medvit.zeroshot.backends import ClipBackend
from medvit.zeroshot.preprocess import RgbMapping

log = logging.getLogger(__name__)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def cache_key(backend: ClipBackend, rgb: RgbMapping, data_hash: str) -> dict[str, Any]:
    """The inputs that determine an image embedding."""
    return {"version": 1, "weights": backend.fingerprint, "preprocess": backend.preprocess.spec(),
            "rgb": rgb.spec(), "data_hash": data_hash}


class EmbeddingCache:
    """On-disk (N, D) embeddings per split under one key folder."""

    def __init__(self, root: str | Path, key: Mapping[str, Any]) -> None:
        digest = sha256_json(key, 20)
        self.key = dict(key)
        self.dir = Path(root) / "embeddings" / digest

    def load(self, split: str, ids: Sequence[str]) -> np.ndarray | None:
        """Cached embeddings of ``split`` if present and for exactly ``ids`` (else None)."""
        emb, id_file = self.dir / f"{split}.npy", self.dir / f"{split}.ids"
        if not (emb.is_file() and id_file.is_file()):
            return None
        if id_file.read_text().split("\n")[:-1] != list(ids):
            return None
        return np.load(emb)

    def save(self, split: str, ids: Sequence[str], emb: np.ndarray) -> None:
        """Write atomically (temporary file + rename), so a killed run leaves no partial entry."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with atomic_open(self.dir / "key.json", "w") as f:
            f.write(json.dumps(self.key, indent=2, sort_keys=True))
        for name, write in ((f"{split}.npy", lambda f: np.save(f, emb)),
                            (f"{split}.ids", lambda f: f.write("".join(f"{i}\n" for i in ids).encode()))):
            with atomic_open(self.dir / name, "wb") as f:
                write(f)


def embed_dataset(backend: ClipBackend, dataset: CacheDataset, rgb: RgbMapping, batch_size: int,
                  desc: str = "embed") -> np.ndarray:
    """(N, D) float32 L2-normalised image embeddings of a cache split, batched under inference_mode."""
    chunks = []
    n = len(dataset)
    with torch.inference_mode():
        for start in tqdm(range(0, n, batch_size), desc=desc, file=sys.stderr, unit="batch",
                          disable=n <= batch_size):
            idx = range(start, min(start + batch_size, n))
            batch = torch.from_numpy(np.stack([dataset.image(i) for i in idx]))  # (B, C, H, W) cache values
            pixels = backend.preprocess(rgb(batch))  # (B, 3, S, S)
            chunks.append(backend.encode_images(pixels).float().numpy())
    if not chunks:
        return np.zeros((0, backend.embed_dim), np.float32)
    return l2_normalize(np.concatenate(chunks)).astype(np.float32)


def split_embeddings(backend: ClipBackend, datasets: Mapping[str, CacheDataset], rgb: RgbMapping,
                     batch_size: int, cache: EmbeddingCache | None) -> tuple[dict[str, np.ndarray], dict[str, bool]]:
    """Embeddings per split, from ``cache`` when present; returns (embeddings, reused per split)."""
    out: dict[str, np.ndarray] = {}
    reused: dict[str, bool] = {}
    for split, ds in datasets.items():
        emb = cache.load(split, ds.ids) if cache is not None else None
        reused[split] = emb is not None
        if emb is None:
            emb = embed_dataset(backend, ds, rgb, batch_size, desc=f"embed {split}")
            if cache is not None:
                cache.save(split, ds.ids, emb)
        else:
            log.info("zeroshot: %s image embeddings reused from %s", split, cache.dir)  # type: ignore[union-attr]
        out[split] = emb
    return out, reused
