"""Polygon label layers: reading (GeoJSON, GeoPackage), fatal label errors, reprojection, supersampled coverage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fiona
import numpy as np
import pytest
from rasterio.warp import transform_geom

from medvit.errors import UserError
from medvit.io.geotiff import RasterReject, SceneInfo
from medvit.io.vector import SUPERSAMPLE, PixelPolygon, chip_coverage, read_polygons, scene_polygons

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # rasterio's own Affine use

SCENE = SceneInfo(height=64, width=64, count=1, dtype="uint16", crs="EPSG:32633",
                  transform=(10.0, 0.0, 500_000.0, 0.0, -10.0, 4_000_000.0), scale=1e-4)  # 10 m UTM 33N pixels


def rect(col0: float, row0: float, col1: float, row1: float) -> dict[str, Any]:
    """A rectangle given in SCENE's pixel coordinates, as a UTM 33N polygon."""
    x0, x1 = 500_000 + 10 * col0, 500_000 + 10 * col1
    y0, y1 = 4_000_000 - 10 * row0, 4_000_000 - 10 * row1
    return {"type": "Polygon", "coordinates": [[(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]]}


def write_layer(path: Path, features: list[tuple[dict[str, Any] | None, dict[str, Any]]], crs: str = "EPSG:32633",
                fields: dict[str, str] | None = None, layer: str | None = None) -> Path:
    """Features (geometry in EPSG:32633, properties) written as GeoJSON or GPKG in ``crs``."""
    driver = "GPKG" if path.suffix == ".gpkg" else "GeoJSON"
    schema = {"geometry": "Unknown", "properties": fields or {"class": "str", "note": "str"}}
    with fiona.open(path, "w", driver=driver, crs=crs, schema=schema, layer=layer) as dst:
        for geom, props in features:
            if geom is not None and crs != "EPSG:32633":
                geom = transform_geom("EPSG:32633", crs, geom)
            dst.write(fiona.Feature.from_dict(geometry=geom, properties=props))
    return path


@pytest.mark.parametrize("name,crs", [("l.geojson", "EPSG:4326"), ("l.gpkg", "EPSG:4326"), ("l.gpkg", "EPSG:32633")])
def test_polygons_land_on_the_scene_pixels_from_any_crs(tmp_path: Path, name: str, crs: str) -> None:
    path = write_layer(tmp_path / name, [(rect(2, 3, 18.5, 40), {"class": "forest", "note": "x"}),
                                         (rect(-10, -10, -2, -2), {"class": "water", "note": ""}),   # off the scene
                                         (None, {"class": "water", "note": "no geometry"})], crs=crs)
    layer = read_polygons(path, "class", ("water", "forest"))
    assert list(layer.classes) == [1, 0] and layer.n_empty == 1
    placed = scene_polygons(layer, SCENE)
    assert [(p.index, p.cls) for p in placed] == [(0, 1)]
    np.testing.assert_allclose(placed[0].bbox, (3, 2, 40, 18.5), atol=1e-6)  # row0, col0, row1, col1 in pixels
    cov = chip_coverage(placed, 2, 0, 0, 64)
    # 16.5 columns x 37 rows of forest; the half column is exact on the supersampled grid.
    assert cov[1].sum() == pytest.approx(16.5 * 37, abs=1e-3) and cov[0].sum() == 0
    np.testing.assert_array_equal(cov[2], cov[1])


def test_coverage_is_supersampled_not_pixel_centres_nor_all_touched() -> None:
    poly = PixelPolygon(0, 0, {"type": "Polygon", "coordinates": [[(0, 0), (16.4, 0), (16.4, 64), (0, 64), (0, 0)]]},
                        (0, 0, 64, 16.4))
    cov = chip_coverage([poly], 1, 0, 0, 64)
    # Pixel column 16 is 0.4 covered; sub-pixel centres at (j + 0.5) / 8 give 3/8 of it. Pixel-centre sampling
    # would give 0 and all_touched 1 for that column.
    np.testing.assert_allclose(cov[0][:, :16], 1.0)
    np.testing.assert_allclose(cov[0][:, 16], 3 / SUPERSAMPLE)
    assert (cov[0][:, 17:] == 0).all()
    # Chip origin moves the window: the same polygon over the chip at x=16 covers one partial column.
    np.testing.assert_allclose(chip_coverage([poly], 1, 0, 16, 16)[0].sum(), 16 * 3 / SUPERSAMPLE)


def test_overlapping_polygons_count_per_class_and_once_within_a_class() -> None:
    def box(c0: float, c1: float, cls: int, i: int) -> PixelPolygon:
        g = {"type": "Polygon", "coordinates": [[(c0, 0), (c1, 0), (c1, 8), (c0, 8), (c0, 0)]]}
        return PixelPolygon(i, cls, g, (0, c0, 8, c1))

    cov = chip_coverage([box(0, 4, 0, 0), box(2, 6, 0, 1), box(3, 5, 1, 2)], 2, 0, 0, 8)
    assert cov[0].sum() == 6 * 8          # union of columns 0-6, not 4 + 4
    assert cov[1].sum() == 2 * 8
    assert cov[2].sum() == 6 * 8          # covered by any class: columns 0-6


def test_class_field_missing_names_file_field_and_fields(tmp_path: Path) -> None:
    path = write_layer(tmp_path / "l.gpkg", [(rect(0, 0, 4, 4), {"landcover": "water", "note": ""})],
                       fields={"landcover": "str", "note": "str"})
    with pytest.raises(UserError) as err:
        read_polygons(path, "class", ("water",))
    msg = str(err.value)
    assert str(path) in msg and "'class'" in msg and "['landcover', 'note']" in msg and "vector_class_field" in msg


def test_unknown_or_empty_class_names_value_and_feature(tmp_path: Path) -> None:
    path = write_layer(tmp_path / "l.geojson", [(rect(0, 0, 4, 4), {"class": "water", "note": ""}),
                                                (rect(4, 0, 8, 4), {"class": "lava", "note": ""})])
    with pytest.raises(UserError, match=r"feature 1: class 'lava' in field 'class' is not one of"):
        read_polygons(path, "class", ("water", "forest"))
    path = write_layer(tmp_path / "n.geojson", [(rect(0, 0, 4, 4), {"class": None, "note": ""})])
    with pytest.raises(UserError, match=r"feature 0: class None"):
        read_polygons(path, "class", ("water",))


def test_non_polygons_several_layers_and_no_crs_are_fatal(tmp_path: Path) -> None:
    line = {"type": "LineString", "coordinates": [(500_000, 4_000_000), (500_100, 3_999_900)]}
    path = write_layer(tmp_path / "l.gpkg", [(line, {"class": "water", "note": ""})])
    with pytest.raises(UserError, match=r"feature 1: geometry type LineString"):
        read_polygons(path, "class", ("water",))
    two = tmp_path / "two.gpkg"
    write_layer(two, [(rect(0, 0, 4, 4), {"class": "water", "note": ""})], layer="a")
    write_layer(two, [(rect(0, 0, 4, 4), {"class": "water", "note": ""})], layer="b")
    with pytest.raises(UserError, match=r"2 layers \['a', 'b'\]"):
        read_polygons(two, "class", ("water",))
    (tmp_path / "junk.gpkg").write_text("not a geopackage")
    with pytest.raises(UserError, match="not a readable GeoJSON or GeoPackage"):
        read_polygons(tmp_path / "junk.gpkg", "class", ("water",))
    with pytest.raises(FileNotFoundError, match="--labels"):
        read_polygons(tmp_path / "missing.gpkg", "class", ("water",))


def test_a_scene_without_crs_cannot_take_polygons(tmp_path: Path) -> None:
    layer = read_polygons(write_layer(tmp_path / "l.gpkg", [(rect(0, 0, 4, 4), {"class": "water", "note": ""})]),
                          "class", ("water",))
    with pytest.raises(RasterReject) as err:
        scene_polygons(layer, SceneInfo(64, 64, 1, "uint16", "", SCENE.transform, 1e-4))
    assert err.value.reason == "no CRS"


def test_other_supersampling_factors_pool_the_same_way(monkeypatch: pytest.MonkeyPatch) -> None:
    import medvit.io.vector as vector

    poly = PixelPolygon(0, 0, {"type": "Polygon", "coordinates": [[(0, 0), (2.4, 0), (2.4, 3.5), (0, 3.5), (0, 0)]]},
                        (0, 0, 3.5, 2.4))
    eight = chip_coverage([poly], 1, 0, 0, 4)
    monkeypatch.setattr(vector, "SUPERSAMPLE", 4)
    four = chip_coverage([poly], 1, 0, 0, 4)
    # Column 2 is 0.4 covered: 3/8 of the sub-columns at 8x, 2/4 at 4x; row 3 half covered at both.
    np.testing.assert_allclose(eight[0][:3, 2], 3 / 8)
    np.testing.assert_allclose(four[0][:3, 2], 2 / 4)
    np.testing.assert_allclose(eight[0][3, :2], 0.5)
    np.testing.assert_allclose(four[0][3, :2], 0.5)
    np.testing.assert_allclose(four[0][:3, :2], 1.0)
