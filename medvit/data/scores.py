"""Score tables: the one prediction format shared by finetune, zeroshot and evaluate.

A score table is a CSV with an ``id`` column followed by one column per label
(in ``label_names`` order) holding a probability-like score in [0, 1]::

    id,cardiomegaly,effusion,...
    a1b2c3d4e5f6-0,0.91,0.03,...

Files are named ``<out>/<split>.csv`` (split is ``val`` or ``test``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from medvit.io.atomic import atomic_open


@dataclass(frozen=True)
class ScoreTable:
    """(N, L) scores with their ids and label names."""

    ids: tuple[str, ...]
    scores: np.ndarray  # (N, L) float64
    label_names: tuple[str, ...]


def write_scores(path: str | Path, ids: Sequence[str], scores: np.ndarray, label_names: Sequence[str]) -> None:
    """Write a score table atomically.

    Raises:
        ValueError: shapes disagree or scores are not finite.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(ids), len(label_names)):
        raise ValueError(f"scores shape {scores.shape} != ({len(ids)}, {len(label_names)})")
    if not np.isfinite(scores).all():
        raise ValueError(f"{path}: scores contain NaN or inf")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(scores, columns=list(label_names))
    frame.insert(0, "id", list(ids))
    with atomic_open(path, "w", newline="") as f:
        frame.to_csv(f, index=False, float_format="%.6g")


def read_scores(path: str | Path) -> ScoreTable:
    """Read a score table.

    Raises:
        FileNotFoundError / ValueError: naming the file and what is wrong.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: score table missing; run the stage that writes it")
    frame = pd.read_csv(path, dtype={"id": str})
    if frame.columns[0] != "id":
        raise ValueError(f"{path}: first column must be 'id', got {frame.columns[0]!r}")
    label_names = tuple(frame.columns[1:])
    scores = frame[list(label_names)].to_numpy(np.float64)
    if not np.isfinite(scores).all():
        raise ValueError(f"{path}: contains NaN or non-numeric scores")
    return ScoreTable(ids=tuple(frame["id"]), scores=scores, label_names=label_names)
