"""The sample manifest written by ingest and read by every later stage.

``manifest.csv`` columns: ``id, group, split, source, shard, index``, then
provenance columns (domain specific, e.g. ``crs``, ``transform``, ``bounds``,
``frame``, ``photometric``), then one column per label, named
``label:<name>`` so a label can never collide with a fixed column, holding ``1``,
``0`` or an empty cell: unknown (an ignored uncertain or blank entry of a
CheXpert / MIMIC-CXR labels file), NaN in :meth:`Manifest.labels`; every later
stage masks it.
The label order is ``labels.json["label_names"]``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from medvit.data.layout import SUBGROUP_COLUMNS
from medvit.hashing import sha256_file

SPLITS: tuple[str, ...] = ("train", "val", "test")
FIXED_COLUMNS: tuple[str, ...] = ("id", "group", "split", "source", "shard", "index")
LABEL_PREFIX = "label:"


def label_column(name: str) -> str:
    """Manifest column name of label ``name``."""
    return f"{LABEL_PREFIX}{name}"


@dataclass(frozen=True)
class Manifest:
    """A read-only view of one cache's manifest."""

    frame: pd.DataFrame
    label_names: tuple[str, ...]
    path: Path

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def split(self, split: str) -> pd.DataFrame:
        """Rows of one split, in manifest order."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        return self.frame[self.frame["split"] == split].reset_index(drop=True)

    def labels(self, split: str | None = None) -> np.ndarray:
        """(N, L) float32 multi-hot targets, NaN where unknown (all rows when split is None)."""
        df = self.frame if split is None else self.split(split)
        return df[[label_column(n) for n in self.label_names]].to_numpy(np.float32)

    def digest(self) -> str:
        """Short sha256 of the manifest file: the data hash used in lineage tags."""
        return file_digest(self.path)


def file_digest(path: str | Path) -> str:
    """Short sha256 of a file's bytes."""
    return sha256_file(path, 12)


def read_manifest(cache_dir: str | Path) -> Manifest:
    """Load ``manifest.csv`` and ``labels.json`` from a cache directory.

    Raises:
        FileNotFoundError: naming the missing file and the stage that makes it.
        ValueError: the manifest lacks a fixed or label column.
    """
    cache_dir = Path(cache_dir)
    path, labels_path = cache_dir / "manifest.csv", cache_dir / "labels.json"
    for p in (path, labels_path):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: missing; run the ingest stage first (`dvc repro ingest`)")
    label_names = tuple(json.loads(labels_path.read_text())["label_names"])
    # Subgroup columns are text: a device model "0042" must not come back as the number 42.
    text = {c: str for c in ("id", "group", "split", "source", *SUBGROUP_COLUMNS)}
    frame = pd.read_csv(path, dtype=text)
    missing = [c for c in (*FIXED_COLUMNS, *(label_column(n) for n in label_names)) if c not in frame]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}; re-run ingest")
    return Manifest(frame=frame, label_names=label_names, path=path)
