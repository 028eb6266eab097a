"""On-disk conventions shared by the sample writer and ingest.

The sample stage writes files that ingest must read back exactly, so the
strings and grids both sides agree on live here and nowhere else.
"""

from __future__ import annotations

import re

import numpy as np

NO_FINDING = "No Finding"  # ChestX-ray14's "no label" marker in Finding Labels
LABEL_NODATA = 255  # label-raster value for "no class" (outside the scene footprint)
TILE_PATTERN = re.compile(r"^(?P<stem>.+)_(?P<y>\d+)_(?P<x>\d+)$")
# Medical manifest subgroup columns (DICOM PS3.15 Retain Patient Characteristics; medvit.ingest.demographics),
# after the provenance columns; a missing value is UNKNOWN, never empty.
SUBGROUP_COLUMNS: tuple[str, ...] = ("sex", "age_band", "view", "manufacturer", "manufacturer_model", "site")
UNKNOWN = "unknown"


def tile_grid(height: int, width: int, tile_size: int, stride: int) -> list[tuple[int, int]]:
    """Top-left (y, x) pixel offsets of the full chips on a regular grid."""
    return [(y, x) for y in range(0, height - tile_size + 1, stride) for x in range(0, width - tile_size + 1, stride)]


def tile_id(scene: str, y: int, x: int) -> str:
    """The chip id shared by tiles.csv and ingest: ``{scene}_{y:05d}_{x:05d}``."""
    return f"{scene}_{y:05d}_{x:05d}"


def parse_tile_id(tile: str) -> tuple[str, int, int] | None:
    """``(scene_stem, y, x)`` of a tile id, or None when it does not follow :func:`tile_id`."""
    m = TILE_PATTERN.match(tile)
    return (m["stem"], int(m["y"]), int(m["x"])) if m else None


def chip_labels(chip: np.ndarray, num_classes: int, min_fraction: float, nodata: int = LABEL_NODATA) -> list[int]:
    """Classes whose share of the chip's *valid* (non-nodata) pixels is above ``min_fraction``."""
    valid = chip[chip != nodata]
    if valid.size == 0:
        return []
    share = np.bincount(valid.ravel(), minlength=num_classes)[:num_classes] / valid.size
    return [int(i) for i in np.flatnonzero(share > min_fraction)]
