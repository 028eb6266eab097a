"""Polygon label layers (GeoJSON, GeoPackage): read with Fiona, reproject onto a scene, rasterize per chip.

A layer is read once in the main process (``read_polygons``): each feature's
class attribute is checked against the label names, so an unknown class or a
missing class field is a fatal error naming the file and the feature. For each
scene, the polygons near its footprint are reprojected to the scene's CRS
(``rasterio.warp.transform_geom``: the vertices are transformed and the edges
stay straight between them, so densify long edges of a geographic-CRS layer
first) and then to the scene's pixel coordinates, which makes rotated scene
transforms work like any other.

Coverage (``chip_coverage``): each class is rasterized over a chip on a grid
``SUPERSAMPLE`` times finer than the pixels, with ``all_touched=False`` (a
sub-pixel is covered when its centre is inside the polygon), and averaged back
to pixels: a per-pixel covered fraction in steps of 1/SUPERSAMPLE**2. We chose
this over ``all_touched=True``, which marks every pixel an edge touches and so
inflates each class by up to one pixel row per edge, and over pixel-centre
sampling at the native resolution, whose error (up to one pixel row per edge,
1/tile_size of a chip) is of the order of ``min_label_fraction``. Supersampled,
an edge crossing a chip moves a class's share by at most 1/(tile_size x
SUPERSAMPLE) (0.2 % for 64-pixel chips); edges on pixel or half-pixel lines are
exact. Exact area fractions would need polygon clipping (GEOS) per pixel,
for a gain below that bound.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fiona
import numpy as np
from fiona.errors import FionaError
from rasterio.errors import CRSError
from rasterio.features import rasterize
from rasterio.transform import Affine
from rasterio.warp import transform_bounds, transform_geom

from medvit.errors import UserError
from medvit.io.geotiff import RasterReject, SceneInfo

SUPERSAMPLE = 8  # sub-pixels per pixel side when rasterizing polygons
POLYGONAL = ("Polygon", "MultiPolygon")
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


@dataclass(frozen=True)
class PolygonLayer:
    """The labelled polygons of one layer, in the layer's CRS."""

    path: Path
    crs: str                          # WKT of the layer's CRS
    classes: np.ndarray               # (N,) class index per polygon
    geometries: list[dict[str, Any]]  # (N) GeoJSON-like Polygon / MultiPolygon
    bounds: np.ndarray                # (N, 4) left, bottom, right, top
    n_empty: int                      # features without a geometry (they label nothing)


@dataclass(frozen=True)
class PixelPolygon:
    """One polygon in a scene's pixel coordinates (x = column, y = row, both continuous)."""

    index: int                        # position in the layer
    cls: int
    geometry: dict[str, Any]
    bbox: tuple[float, float, float, float]  # row0, col0, row1, col1


def read_polygons(path: Path, class_field: str, label_names: Sequence[str]) -> PolygonLayer:
    """Read a polygon layer and map its ``class_field`` values to indexes into ``label_names``.

    Raises:
        UserError: unreadable file, several layers, no CRS, no class field, an empty or unknown class
            value, or a geometry that is not a polygon; the message names the file and the feature.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: polygon labels not found; pass --labels FILE (a GeoJSON or GeoPackage)")
    try:
        layers = fiona.listlayers(path)
        if len(layers) != 1:
            raise UserError(f"{path}: {len(layers)} layers {layers}; keep the labelled polygons in one layer")
        with fiona.open(path) as src:
            fields = list(src.schema["properties"])
            if class_field not in fields:
                raise UserError(f"{path}: the polygon layer has no class field {class_field!r} "
                                f"(ingest.satellite.vector_class_field); its fields are {fields}. Set "
                                "vector_class_field to the field that holds the class names")
            if not src.crs:
                raise UserError(f"{path}: the polygon layer has no CRS; assign one (e.g. ogr2ogr -a_srs EPSG:4326)")
            crs = src.crs.to_wkt()
            index = {name: i for i, name in enumerate(label_names)}
            classes, geometries, n_empty = [], [], 0
            for feat in src:
                name = feat.properties[class_field]
                label = None if name is None else index.get(str(name).strip())
                if label is None:
                    raise UserError(f"{path}: feature {feat.id}: class {name!r} in field {class_field!r} is not "
                                    f"one of ingest.satellite.label_names {list(label_names)}; fix the value or "
                                    "add the class to label_names")
                geom = feat.geometry
                if geom is None or not geom.coordinates:
                    n_empty += 1
                    continue
                if geom.type not in POLYGONAL:
                    raise UserError(f"{path}: feature {feat.id}: geometry type {geom.type}; vector labels must be "
                                    "Polygon or MultiPolygon (buffer points and lines first)")
                classes.append(label)
                geometries.append({"type": geom.type, "coordinates": _plain(geom.coordinates)})
    except FionaError as err:
        raise UserError(f"{path}: not a readable GeoJSON or GeoPackage ({type(err).__name__}: {err})") from None
    bounds = np.array([_bounds(g) for g in geometries], dtype=np.float64).reshape(-1, 4)
    return PolygonLayer(path, crs, np.array(classes, dtype=np.int64), geometries, bounds, n_empty)


def scene_polygons(layer: PolygonLayer, scene: SceneInfo) -> list[PixelPolygon]:
    """The layer's polygons that reach into ``scene``, in its pixel coordinates.

    Raises:
        RasterReject: the scene has no CRS, so polygons cannot be placed on it.
    """
    if not scene.crs:
        raise RasterReject("no CRS", "vector labels need a georeferenced scene")
    forward = Affine(*scene.transform)
    to_pixel = tuple(~forward)[:6]
    corners = [_apply(tuple(forward)[:6], c) for c in ((0, 0), (scene.width, 0), (0, scene.height),
                                                        (scene.width, scene.height))]
    xs, ys = zip(*corners)
    try:
        left, bottom, right, top = transform_bounds(scene.crs, layer.crs, min(xs), min(ys), max(xs), max(ys),
                                                    densify_pts=21)
    except CRSError as err:
        raise RasterReject("no CRS", f"cannot reproject the polygons onto the scene ({err})") from None
    b = layer.bounds
    near = np.ones(len(b), dtype=bool) if left > right else (  # across the antimeridian: no pre-filter
        (b[:, 0] <= right) & (b[:, 2] >= left) & (b[:, 1] <= top) & (b[:, 3] >= bottom))
    candidates = np.flatnonzero(near)
    if not candidates.size:
        return []
    projected = transform_geom(layer.crs, scene.crs, [layer.geometries[i] for i in candidates])
    out = []
    for i, geom in zip(candidates, projected):
        pixel = {"type": geom["type"], "coordinates": _map_coords(geom["coordinates"], to_pixel)}
        col0, row0, col1, row1 = _bounds(pixel)
        if col1 > 0 and row1 > 0 and col0 < scene.width and row0 < scene.height:
            out.append(PixelPolygon(int(i), int(layer.classes[i]), pixel, (row0, col0, row1, col1)))
    return out


def chip_coverage(polygons: Iterable[PixelPolygon], num_classes: int, y: int, x: int,
                  size: int) -> np.ndarray:
    """Per-pixel covered fraction of each class over the chip at (y, x), supersampled (module docstring).

    Returns:
        (L + 1, size, size) float32 in [0, 1]: one plane per class, then the plane covered by any class.
    """
    k = SUPERSAMPLE
    by_class: dict[int, list[dict[str, Any]]] = {}
    for p in polygons:
        r0, c0, r1, c1 = p.bbox
        if r1 > y and c1 > x and r0 < y + size and c0 < x + size:
            by_class.setdefault(p.cls, []).append(p.geometry)
    out = np.zeros((num_classes + 1, size, size), dtype=np.float32)
    if not by_class:
        return out
    transform = Affine(1.0 / k, 0.0, x, 0.0, 1.0 / k, y)  # sub-pixel (col, row) -> scene pixel (x, y)
    union = np.zeros((size * k, size * k), dtype=bool)
    for cls, shapes in by_class.items():
        sub = rasterize(shapes, out_shape=(size * k, size * k), transform=transform, fill=0, default_value=1,
                        all_touched=False, dtype="uint8").astype(bool)
        union |= sub
        out[cls] = _pool(sub, size, k)
    out[num_classes] = _pool(union, size, k)
    return out


def _pool(sub: np.ndarray, size: int, k: int) -> np.ndarray:
    """(size*k, size*k) bool -> (size, size) fraction of each pixel's sub-pixels that are set."""
    if k == 8:  # one byte per pixel and sub-row: packbits + popcount is ~6x faster than a strided mean
        counts = _POPCOUNT[np.packbits(sub, axis=1)]                       # (size*k, size)
        return counts.reshape(size, k, size).sum(axis=1, dtype=np.uint16).astype(np.float32) * np.float32(1 / k**2)
    return sub.reshape(size, k, size, k).mean(axis=(1, 3), dtype=np.float32)


def _plain(coords: Any) -> Any:
    """Fiona's coordinate sequences as nested lists of (x, y) tuples (picklable, no Z)."""
    if coords and isinstance(coords[0], (int, float)):
        return (float(coords[0]), float(coords[1]))
    return [_plain(c) for c in coords]


def _apply(m: tuple[float, ...], xy: tuple[float, float]) -> tuple[float, float]:
    """The affine map with coefficients ``m`` (a, b, c, d, e, f) applied to one point."""
    a, b, c, d, e, f = m
    return a * xy[0] + b * xy[1] + c, d * xy[0] + e * xy[1] + f


def _map_coords(coords: Any, m: tuple[float, ...]) -> Any:
    if coords and isinstance(coords[0], (int, float)):
        return _apply(m, (coords[0], coords[1]))
    return [_map_coords(c, m) for c in coords]


def _bounds(geom: dict[str, Any]) -> tuple[float, float, float, float]:
    pts = np.array(list(_points(geom["coordinates"])), dtype=np.float64).reshape(-1, 2)
    if not len(pts):
        return (np.inf, np.inf, -np.inf, -np.inf)
    return (*pts.min(0), *pts.max(0))  # type: ignore[return-value]


def _points(coords: Any) -> Iterable[tuple[float, float]]:
    if coords and isinstance(coords[0], (int, float)):
        yield coords[0], coords[1]
        return
    for c in coords:
        yield from _points(c)
