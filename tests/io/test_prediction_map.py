"""Prediction maps read back with rasterio: CRS, transform, band count and names, values equal to the scores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform as warp_points

from medvit.io.prediction_map import map_grid, write_prediction_map

LABELS = ["water", "forest", "urban"]
THRESHOLDS = [0.5, 0.6, 0.7]
SCENE_TRANSFORM = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 4200000.0)  # 10 m UTM pixels


def _scene(path: Path, height: int = 96, width: int = 128, crs: str | None = "EPSG:32633",
           transform: Affine = SCENE_TRANSFORM) -> Path:
    data = np.random.default_rng(0).integers(0, 10000, (4, height, width), dtype=np.uint16)
    with rasterio.open(path, "w", driver="GTiff", height=height, width=width, count=4, dtype="uint16",
                       crs=CRS.from_string(crs) if crs else None, transform=transform) as ds:
        ds.write(data)
    return path


def _chips(height: int, width: int, t: int, stride: int, skip: int = 1) -> tuple[list[str], list[tuple[int, int]]]:
    origins = [(y, x) for y in range(0, height - t + 1, stride) for x in range(0, width - t + 1, stride)]
    origins = [o for k, o in enumerate(origins) if k != skip]  # one chip unscored (e.g. too much nodata)
    return [f"scene_{y:05d}_{x:05d}" for y, x in origins], origins


def test_scores_geotiff_reads_back_in_the_scene_crs(tmp_path: Path) -> None:
    scene = _scene(tmp_path / "scene.tif")
    ids, origins = _chips(96, 128, 32, 32)
    scores = np.random.default_rng(1).random((len(origins), len(LABELS)))
    files = write_prediction_map(scene, tmp_path / "out", ids, origins, scores, LABELS, THRESHOLDS, 32, 32,
                                 tags={"model": "medvit-satellite", "version": "4"})
    with rasterio.open(files.scores) as ds:
        assert ds.crs == CRS.from_epsg(32633)
        assert ds.transform == SCENE_TRANSFORM @ Affine.scale(32)  # one pixel = one chip
        assert (ds.count, ds.height, ds.width) == (3, *map_grid(96, 128, 32, 32)) == (3, 3, 4)
        assert list(ds.descriptions) == LABELS
        assert ds.tags()["version"] == "4"
        grid = ds.read()
    for (y, x), s in zip(origins, scores):
        np.testing.assert_array_equal(grid[:, y // 32, x // 32], s.astype(np.float32))
    assert np.isnan(grid[:, 0, 1]).all()  # the unscored chip is nodata
    assert np.isfinite(grid).sum() == scores.size


def test_geojson_holds_the_positive_chips_in_wgs84(tmp_path: Path) -> None:
    scene = _scene(tmp_path / "scene.tif")
    ids, origins = _chips(96, 128, 32, 32)
    scores = np.random.default_rng(2).random((len(origins), len(LABELS)))
    files = write_prediction_map(scene, tmp_path, ids, origins, scores, LABELS, THRESHOLDS, 32, 32)
    collection = json.loads(files.geojson.read_text())
    assert "crs" not in collection  # RFC 7946: WGS 84 implied
    expected = {(ids[i], LABELS[k]) for i in range(len(ids)) for k in range(3) if scores[i, k] >= THRESHOLDS[k]}
    got = {(f["properties"]["id"], f["properties"]["label"]) for f in collection["features"]}
    assert got == expected and files.positives == len(expected) > 0
    feature = collection["features"][0]
    i, k = ids.index(feature["properties"]["id"]), LABELS.index(feature["properties"]["label"])
    assert feature["properties"]["score"] == pytest.approx(scores[i, k])
    y, x = origins[i]
    corner = SCENE_TRANSFORM @ (x, y)  # the chip's top-left corner, in UTM 33N
    lon, lat = warp_points("EPSG:32633", "EPSG:4326", [corner[0]], [corner[1]])
    assert feature["geometry"]["coordinates"][0][0] == pytest.approx([lon[0], lat[0]])
    assert 14.9 < lon[0] < 15.1 and 37.9 < lat[0] < 38.0  # lon/lat order, near the UTM 33N false origin


def test_overlapping_chips_map_pixels_centre_on_their_chips(tmp_path: Path) -> None:
    scene = _scene(tmp_path / "scene.tif")
    ids, origins = _chips(96, 128, 32, 16)
    scores = np.random.default_rng(3).random((len(origins), len(LABELS)))
    files = write_prediction_map(scene, tmp_path, ids, origins, scores, LABELS, THRESHOLDS, 32, 16)
    with rasterio.open(files.scores) as ds:
        assert (ds.height, ds.width) == (5, 7)
        y, x = origins[-1]
        centre = SCENE_TRANSFORM @ (x + 16, y + 16)
        row, col = ds.index(*centre)
        assert (row, col) == (y // 16, x // 16)
        assert ds.xy(row, col) == pytest.approx(centre)
        np.testing.assert_array_equal(ds.read()[:, row, col], scores[-1].astype(np.float32))


def test_scene_without_crs_gets_a_pixel_grid_map_and_no_geojson(tmp_path: Path) -> None:
    scene = _scene(tmp_path / "plain.tif", crs=None, transform=Affine(2.0, 0.0, 100.0, 0.0, -2.0, 500.0))
    ids, origins = _chips(96, 128, 32, 32)
    files = write_prediction_map(scene, tmp_path, ids, origins, np.ones((len(ids), 3)), LABELS, THRESHOLDS, 32, 32)
    assert files.geojson is None and files.positives == 3 * len(ids)
    assert not (tmp_path / "plain.positive.geojson").exists()
    with rasterio.open(files.scores) as ds:
        assert ds.crs is None and ds.transform == Affine(64.0, 0.0, 100.0, 0.0, -64.0, 500.0)


def test_an_origin_off_the_grid_is_an_error(tmp_path: Path) -> None:
    scene = _scene(tmp_path / "scene.tif")
    with pytest.raises(ValueError, match=r"\(5, 0\) is not on the 32-pixel grid"):
        write_prediction_map(scene, tmp_path, ["a"], [(5, 0)], np.zeros((1, 3)), LABELS, THRESHOLDS, 32, 32)
