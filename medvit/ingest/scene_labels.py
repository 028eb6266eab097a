"""Labels of satellite scenes (``ingest.satellite.label_source``) and the area-fraction rule for chips.

* ``raster``: a folder of label rasters named like their scenes (uint8 class index
  per pixel, 255 = nodata); one on another grid or CRS is warped onto the scene's
  grid with nearest neighbour (``medvit.io.geotiff.label_grid_differs``).
* ``csv``: ``tiles.csv`` (``tile,labels,scene``, tile ids as ``medvit.data.layout.tile_id``).
* ``vector``: a GeoJSON or GeoPackage polygon layer in any CRS whose attribute
  ``ingest.satellite.vector_class_field`` names the class; polygons are reprojected
  onto each scene and rasterized per chip (``medvit.io.vector``).

The area-fraction rule is the same for rasters and polygons: a class labels a chip
when its share of the chip's labelled area is above ``min_label_fraction``, the
labelled area being the part covered by some class (not label nodata, inside some
polygon) under pixels whose selected bands are all valid. Overlapping polygons of
different classes each count their full area, as multi-label data says. A chip
with no labelled area is dropped (``chips_dropped_unlabelled``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medvit.data.layout import LABEL_NODATA, chip_labels, parse_tile_id
from medvit.errors import UserError
from medvit.ingest.labels import csv_rows, multi_hot, read_csv, vocabulary
from medvit.io.geotiff import SceneInfo
from medvit.io.vector import PixelPolygon, read_polygons, scene_polygons

log = logging.getLogger(__name__)

VECTOR_FILES = ("labels.gpkg", "labels.geojson", "labels.json")  # looked for in <raw>, in this order


def default_labels(raw: Path, label_source: str) -> Path:
    """``<raw>/labels/`` (rasters), ``<raw>/tiles.csv`` (csv) or the first of ``VECTOR_FILES`` in ``<raw>``."""
    if label_source == "csv":
        return raw / "tiles.csv"
    if label_source == "vector":
        return next((raw / n for n in VECTOR_FILES if (raw / n).is_file()), raw / VECTOR_FILES[0])
    return raw / "labels"


# --------------------------------------------------------------------------- tiles.csv
@dataclass
class TileLabels:
    """tiles.csv: per scene stem, {(y, x): labels}."""

    label_names: tuple[str, ...]
    by_scene: dict[str, dict[tuple[int, int], np.ndarray]]


def read_tile_labels(path: Path, label_names: tuple[str, ...]) -> TileLabels:
    """Read ``tiles.csv`` (``tile,labels,scene``; tile id ``{scene_stem}_{y:05d}_{x:05d}``).

    Raises:
        UserError: missing columns, duplicate or malformed tile ids, unknown label names.
    """
    frame = read_csv(path, ("tile", "labels", "scene"))
    tiles = frame["tile"].str.strip()
    dup = tiles.duplicated(keep=False)
    if dup.any():
        raise UserError(f"{path}: duplicate tile ids on rows {csv_rows(np.flatnonzero(dup))}")
    names = vocabulary(frame["labels"], label_names, path, "labels")
    by_scene: dict[str, dict[tuple[int, int], np.ndarray]] = {}
    bad = []
    for i, (tile, cell, scene) in enumerate(zip(tiles, frame["labels"], frame["scene"])):
        parsed = parse_tile_id(tile)
        stem = Path(scene.strip()).stem
        if parsed is None or parsed[0] != stem:
            bad.append(i)
            continue
        by_scene.setdefault(stem, {})[parsed[1:]] = multi_hot(cell, names)
    if bad:
        raise UserError(f"{path}: rows {csv_rows(bad)} have a tile id that is not '{{scene_stem}}_{{y:05d}}_{{x:05d}}' "
                        "of their scene")
    return TileLabels(names, by_scene)


# --------------------------------------------------------------------------- polygons
class VectorLabels:
    """A polygon layer placed on scene after scene; remembers which polygons reached a scene.

    Raises (at construction):
        UserError: see ``medvit.io.vector.read_polygons`` (missing class field, unknown class, ...).
    """

    def __init__(self, path: Path, class_field: str, label_names: tuple[str, ...]) -> None:
        self.layer = read_polygons(path, class_field, label_names)
        self.placed = np.zeros(len(self.layer.classes), dtype=bool)

    def for_scene(self, scene: SceneInfo) -> tuple[PixelPolygon, ...]:
        """The polygons reaching into ``scene``, in its pixel coordinates.

        Raises:
            RasterReject: the scene has no CRS.
        """
        polygons = scene_polygons(self.layer, scene)
        self.placed[[p.index for p in polygons]] = True
        return tuple(polygons)

    def counts(self) -> dict[str, int]:
        """report.json counts: polygons outside every probed scene, features without geometry.

        A polygon counts as outside when its bounding box, reprojected onto each scene's pixel grid, misses
        the scene (a polygon whose box overlaps a scene while its area does not is counted as placed).
        """
        return {"polygons_outside_scenes": int((~self.placed).sum()),
                "polygons_without_geometry": self.layer.n_empty}


# --------------------------------------------------------------------------- the rule
def raster_chip_labels(label_chip: np.ndarray, pixel_ok: np.ndarray, num_classes: int,
                       min_fraction: float) -> np.ndarray | None:
    """(L,) uint8 labels of a (t, t) label-raster chip under the valid pixels; None: nothing labelled."""
    lab = np.where(pixel_ok, label_chip, LABEL_NODATA)
    if not (lab != LABEL_NODATA).any():
        return None
    labels = np.zeros(num_classes, dtype=np.uint8)
    labels[chip_labels(lab, num_classes, min_fraction)] = 1
    return labels


def coverage_chip_labels(coverage: np.ndarray, pixel_ok: np.ndarray, min_fraction: float) -> np.ndarray | None:
    """(L,) uint8 labels from per-pixel class coverage (L + 1, t, t) (last plane: any class); None: unlabelled."""
    labelled = coverage[-1][pixel_ok].sum(dtype=np.float64)
    if labelled <= 0:
        return None
    share = coverage[:-1][:, pixel_ok].sum(axis=1, dtype=np.float64) / labelled
    return (share > min_fraction).astype(np.uint8)
