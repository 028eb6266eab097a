"""Per-scene prediction maps that open in QGIS: a score GeoTIFF and a GeoJSON of the positive chips.

* ``<stem>.scores.tif``: one float32 band per label (band description = label
  name), one pixel per chip of ingest's chip grid, in the scene's CRS. With
  ``stride == tile_size`` a pixel is exactly its chip's footprint; with
  overlapping chips (``stride < tile_size``) a pixel is ``stride`` scene pixels
  wide and centred on its chip's centre (the transform is shifted by
  ``(tile_size - stride) / 2`` scene pixels), so the map never claims a chip
  covers ground its neighbour scored. Chips the model did not score (too much
  nodata, or off the grid's last full row/column) are NaN, the nodata value.
  Rotated scene transforms carry over (the map is a scaled copy of the scene grid).
* ``<stem>.positive.geojson``: one Polygon feature per (chip, label) with
  score >= threshold, properties ``id``, ``label``, ``score``, ``threshold``.
  Coordinates are WGS 84 longitude/latitude, as RFC 7946 section 4 requires
  (no ``crs`` member; QGIS and web maps read it as EPSG:4326): the chip's four
  corners are reprojected from the scene CRS with ``rasterio.warp.transform_geom``.
  Chips are small, so their straight edges stay within a fraction of a pixel of
  the reprojected ones. A scene without a CRS gets no GeoJSON (there is nothing to
  reproject from); the score GeoTIFF is still written on the pixel grid.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.warp import transform_geom

from medvit.io.atomic import atomic_open, atomic_path

GEOJSON_CRS = "EPSG:4326"


@dataclass(frozen=True)
class MapFiles:
    """What ``write_prediction_map`` wrote; ``geojson`` is None for a scene without a CRS."""

    scores: Path
    geojson: Path | None
    positives: int


def map_grid(height: int, width: int, tile_size: int, stride: int) -> tuple[int, int]:
    """(rows, cols) of the chip grid ingest cuts from a ``height`` x ``width`` scene."""
    return (max(0, (height - tile_size) // stride + 1), max(0, (width - tile_size) // stride + 1))


def map_transform(scene: Affine, tile_size: int, stride: int) -> Affine:
    """The map's affine transform: pixel (i, j) centred on the chip at scene pixel (i * stride, j * stride)."""
    shift = (tile_size - stride) / 2
    return scene @ Affine.translation(shift, shift) @ Affine.scale(stride)


def write_prediction_map(
    scene_path: str | Path,
    out_dir: str | Path,
    ids: Sequence[str],
    origins: Sequence[tuple[int, int]],
    scores: np.ndarray,
    label_names: Sequence[str],
    thresholds: Sequence[float],
    tile_size: int,
    stride: int,
    tags: Mapping[str, str] | None = None,
) -> MapFiles:
    """Write ``<stem>.scores.tif`` and ``<stem>.positive.geojson`` of one scene into ``out_dir``.

    Args:
        scene_path: the scene (only its header is read: size, CRS, transform).
        out_dir: output folder.
        ids: chip ids (the feature ``id``).
        origins: top-left (y, x) scene pixel of each scored chip, on the ``stride`` grid.
        scores: (N, L) scores of those chips.
        label_names: the L labels (band descriptions, feature ``label``).
        thresholds: (L,) positive when score >= threshold.
        tile_size: chip side in scene pixels.
        stride: chip grid step in scene pixels.
        tags: GeoTIFF metadata tags (model name and version).

    Raises:
        ValueError: an origin off the grid, or shapes that disagree.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(origins), len(label_names)) or len(thresholds) != len(label_names) or len(ids) != len(origins):
        raise ValueError(f"scores {scores.shape} for {len(origins)} chips, {len(label_names)} labels, "
                         f"{len(thresholds)} thresholds")
    with rasterio.open(scene_path) as ds:
        height, width, crs, transform = ds.height, ds.width, ds.crs, ds.transform
    rows, cols = map_grid(height, width, tile_size, stride)
    grid = np.full((len(label_names), rows, cols), np.nan, dtype=np.float32)
    for (y, x), s in zip(origins, scores):
        i, j = divmod(y, stride)[0], divmod(x, stride)[0]
        if y % stride or x % stride or not (0 <= i < rows and 0 <= j < cols):
            raise ValueError(f"chip origin ({y}, {x}) is not on the {stride}-pixel grid of a {height}x{width} scene")
        grid[:, i, j] = s
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(scene_path).stem
    tif = out_dir / f"{stem}.scores.tif"
    profile = {"driver": "GTiff", "width": cols, "height": rows, "count": len(label_names), "dtype": "float32",
               "nodata": float("nan"), "transform": map_transform(transform, tile_size, stride)}
    if crs is not None:
        profile["crs"] = crs
    with atomic_path(tif) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(grid)
        for band, name in enumerate(label_names, start=1):
            dst.set_band_description(band, name)
        dst.update_tags(**{k: str(v) for k, v in (tags or {}).items()},
                        thresholds=json.dumps(dict(zip(label_names, map(float, thresholds)))),
                        rule="pixel = score of the chip centred on it; NaN = not scored")
    positives = int((scores >= np.asarray(thresholds, dtype=np.float64)).sum())
    if crs is None:
        return MapFiles(tif, None, positives)
    features = _positive_features(ids, origins, scores, label_names, thresholds, transform, crs, tile_size)
    geojson = out_dir / f"{stem}.positive.geojson"
    with atomic_open(geojson, "w") as f:
        json.dump({"type": "FeatureCollection", "features": features}, f)
    return MapFiles(tif, geojson, positives)


def _positive_features(ids: Sequence[str], origins: Sequence[tuple[int, int]], scores: np.ndarray,
                       label_names: Sequence[str], thresholds: Sequence[float], transform: Affine, crs: object,
                       size: int) -> list[dict]:
    features = []
    for cid, (y, x), s in zip(ids, origins, scores):
        positive = [k for k, t in enumerate(thresholds) if s[k] >= t]
        if not positive:
            continue
        ring = [transform @ (col, row) for col, row in ((x, y), (x + size, y), (x + size, y + size), (x, y + size))]
        geometry = transform_geom(crs, GEOJSON_CRS, {"type": "Polygon", "coordinates": [[*ring, ring[0]]]})
        for k in positive:
            features.append({"type": "Feature", "geometry": geometry,
                             "properties": {"id": cid, "label": label_names[k],
                                            "score": float(s[k]), "threshold": float(thresholds[k])}})
    return features
