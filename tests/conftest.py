"""Shared fixtures: a tiny, learnable ingest cache written through the real cache contract."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest

from medvit.data.cache import ShardWriter
from medvit.io.atomic import write_json_atomic
from medvit.data.manifest import label_column

SHARED = Path(__file__).resolve().parents[2] / "shared"
# Shared test helpers (tests/servers.py) are imported by name from conftest files.
sys.path.insert(0, str(Path(__file__).resolve().parent))


def make_tiny_cache(
    out: Path,
    *,
    n_groups: int = 24,
    per_group: int = 2,
    channels: int = 1,
    size: int = 32,
    label_names: tuple[str, ...] = ("a", "b", "c"),
    seed: int = 0,
    shard_size: int = 16,
) -> Path:
    """Write a cache whose label j brightens quadrant j: easy to learn, real shards and manifest.

    Splits are by group (60/20/20 of groups), so no group is in two splits.
    """
    rng = np.random.default_rng(seed)
    writer = ShardWriter(out, shard_size)
    rows = []
    n_train_groups = int(round(n_groups * 0.6))
    n_val_groups = int(round(n_groups * 0.2))
    for g in range(n_groups):
        split = "train" if g < n_train_groups else "val" if g < n_train_groups + n_val_groups else "test"
        for k in range(per_group):
            y = (rng.random(len(label_names)) < 0.4).astype(np.float32)
            img = rng.normal(0.3, 0.05, size=(channels, size, size)).astype(np.float32)
            half = size // 2
            for j, on in enumerate(y):
                if on:
                    r, c = divmod(j % 4, 2)
                    img[:, r * half : (r + 1) * half, c * half : (c + 1) * half] += 0.5
            img = np.clip(img, 0, 1)
            shard, index = writer.add(img)
            row = {"id": f"g{g:03d}-{k}", "group": f"g{g:03d}", "split": split,
                   "source": f"synthetic/g{g:03d}_{k}.npy", "shard": shard, "index": index}
            row.update({label_column(n): int(v) for n, v in zip(label_names, y)})
            rows.append(row)
    writer.flush()
    pd.DataFrame(rows).to_csv(out / "manifest.csv", index=False)
    write_json_atomic(out / "labels.json", {"label_names": list(label_names)})
    write_json_atomic(out / "stats.json", {"mean": [0.45] * channels, "std": [0.25] * channels,
                                           "channels": [f"ch{i}" for i in range(channels)], "size": [size, size]})
    (out / "rejects.csv").write_text("source,reason\n")
    (out / "report.json").write_text(json.dumps({"n_input": len(rows), "n_ingested": len(rows), "n_rejected": 0}))
    return out


@pytest.fixture
def tiny_cache(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``tiny_cache(**kwargs)`` writes a fresh tiny cache under tmp_path and returns its folder."""
    counter = iter(range(1000))

    def _make(**kwargs: object) -> Path:
        return make_tiny_cache(tmp_path / f"cache{next(counter)}", **kwargs)  # type: ignore[arg-type]

    return _make


@pytest.fixture
def shared_geotiff() -> Path:
    """../shared/data/geotiff (real CC0 rasters); skips with the reason when it is not beside the repo."""
    path = SHARED / "data" / "geotiff"
    if not path.is_dir():
        pytest.skip(f"{path} not found: the shared reference data must sit beside the repo (../shared)")
    return path
