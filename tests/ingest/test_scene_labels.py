"""Scene labels through the ingest stage: polygons (GeoJSON / GeoPackage, any CRS) and label rasters on other
grids give the chip labels of label rasters on the scene's grid; the area-fraction rule at its boundary; fatal
label errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import fiona
import numpy as np
import pandas as pd
import pytest
import rasterio
from ingest_inputs import SAT, check_conservation, ingest_cfg, satellite_raw, write_scene
from rasterio.enums import Resampling
from rasterio.transform import from_origin
from rasterio.warp import calculate_default_transform, reproject, transform_geom

from medvit.cli import main
from medvit.data.manifest import read_manifest
from medvit.errors import UserError
from medvit.ingest import ingest
from medvit.ingest.scene_labels import coverage_chip_labels, default_labels

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # rasterio's own Affine use

N_SCENES = 3


def box(i: int, col0: float, row0: float, col1: float, row1: float) -> dict[str, Any]:
    """A rectangle in pixel coordinates of satellite_raw's scene ``i`` (UTM 33N, 10 m), as a polygon."""
    ox = 500_000 + 1000 * i
    x0, x1, y0, y1 = ox + 10 * col0, ox + 10 * col1, 4_000_000 - 10 * row0, 4_000_000 - 10 * row1
    return {"type": "Polygon", "coordinates": [[(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]]}


def write_polygons(path: Path, features: list[tuple[dict[str, Any], str]], crs: str) -> Path:
    """(UTM 33N geometry, class) features as GeoJSON or GeoPackage in ``crs`` (vertices reprojected)."""
    schema = {"geometry": "Polygon", "properties": {"id": "int", "landcover": "str"}}
    driver = "GPKG" if path.suffix == ".gpkg" else "GeoJSON"
    with fiona.open(path, "w", driver=driver, crs=crs, schema=schema) as dst:
        for n, (geom, cls) in enumerate(features):
            g = transform_geom("EPSG:32633", crs, geom) if crs != "EPSG:32633" else geom
            dst.write(fiona.Feature.from_dict(geometry=g, properties={"id": n, "landcover": cls}))
    return path


# Label layout of scene i (rows, columns; edges even so that a 20 m raster holds it exactly): class 1 + i % 3 in
# columns 38-63, urban (3) in two boxes (8 pixels: 3 % of a chip, below min_label_fraction; 16 pixels: 6 %),
# class 0 elsewhere, rows 60-63 unlabelled. Chips of columns 32-47 are mixed (10/16 vs 6/16).
SMALL, LARGE = (2, 2, 6, 4), (20, 20, 24, 24)  # col0, row0, col1, row1


def label_raster(i: int) -> np.ndarray:
    label = np.zeros((64, 64), np.uint8)
    label[:, 38:] = 1 + i % 3
    for c0, r0, c1, r1 in (SMALL, LARGE):
        label[r0:r1, c0:c1] = 3
    label[60:, :] = 255
    return label


def raster_equivalent(i: int) -> list[tuple[dict[str, Any], str]]:
    """``label_raster(i)`` as polygons: class 0 with two holes where the urban boxes are."""
    names = SAT["label_names"]
    holes = [box(i, *b)["coordinates"][0][::-1] for b in (SMALL, LARGE)]
    background = {"type": "Polygon", "coordinates": [box(i, 0, 0, 38, 60)["coordinates"][0], *holes]}
    return [(background, names[0]), (box(i, 38, 0, 64, 60), names[1 + i % 3]),
            (box(i, *SMALL), names[3]), (box(i, *LARGE), names[3])]


def labels_by_id(out: Path) -> dict[str, tuple[int, ...]]:
    manifest = read_manifest(out)
    return {i: tuple(int(v) for v in y) for i, y in zip(manifest.frame["id"], manifest.labels())}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, tuple[int, ...]]]:
    """satellite_raw with label rasters on the scenes' grid, ingested: the chip labels to match."""
    root = tmp_path_factory.mktemp("reference")
    raw = satellite_raw(root / "raw", n_scenes=N_SCENES)
    for i in range(N_SCENES):
        write_scene(raw / "labels" / f"tile{i}.tif", label_raster(i)[None], 500_000 + 1000 * i, nodata=255)
    _, cfg = ingest_cfg(root, max_reject_fraction=1.0, satellite=SAT)
    ingest("satellite", raw, raw / "labels", root / "out", cfg)
    return raw, labels_by_id(root / "out")


@pytest.mark.parametrize("name,crs", [("labels.geojson", "EPSG:4326"), ("labels.gpkg", "EPSG:4326"),
                                      ("labels.gpkg", "EPSG:32633"), ("labels.geojson", "EPSG:32633")])
def test_polygons_give_the_chip_labels_of_the_equivalent_label_rasters(
        tmp_path: Path, reference: tuple[Path, dict[str, tuple[int, ...]]], name: str, crs: str) -> None:
    raw, expected = reference
    assert len(expected) == N_SCENES * 16 - 2
    assert expected["tile1_00000_00032"] == (1, 0, 1, 0) and expected["tile0_00016_00016"] == (1, 0, 0, 1)
    assert expected["tile1_00000_00000"] == (1, 0, 0, 0)  # the 8-pixel urban box is under the fraction
    features = [f for i in range(N_SCENES) for f in raster_equivalent(i)]
    features.append((box(0, 200, 200, 230, 230), "urban"))  # 1.3 km east of scene 0: outside every scene
    labels = write_polygons(tmp_path / name, features, crs)
    sat = {**SAT, "label_source": "vector", "vector_class_field": "landcover"}
    _, cfg = ingest_cfg(tmp_path, max_reject_fraction=1.0, satellite=sat)
    report = ingest("satellite", raw, labels, tmp_path / "out", cfg)
    assert labels_by_id(tmp_path / "out") == expected
    assert report["polygons_outside_scenes"] == 1 and report["polygons_without_geometry"] == 0
    # Scenes the polygons miss are rejected with a reason; nothing is lost.
    keys = [p.relative_to(raw).as_posix() for p in (raw / "scenes").iterdir()]
    check_conservation(keys, tmp_path / "out")
    rejects = dict(pd.read_csv(tmp_path / "out" / "rejects.csv").itertuples(index=False))
    assert rejects["scenes/void.tif"].startswith("all nodata")
    assert json.loads((tmp_path / "out" / "report.json").read_text())["polygons_outside_scenes"] == 1


def test_area_fraction_rule_at_the_boundary(tmp_path: Path) -> None:
    """A class labels a chip above min_label_fraction of its labelled area: 0.25 exactly is out, 0.2559 is in."""
    raw = tmp_path / "raw"
    (raw / "scenes").mkdir(parents=True)
    rng = np.random.default_rng(1)
    write_scene(raw / "scenes" / "a.tif", rng.integers(100, 9000, (4, 16, 64)).astype(np.uint16), 500_000)
    # Chip x=0: forest covers exactly 4 of 16 columns (share 0.25); chip x=16: 4.4 columns, i.e. 4 + 3/8 on the
    # 8x supersampled grid (share 0.2734); chip x=32: 3.6 columns (0.2266); water covers the rest of each chip.
    features = [(box(0, 0, 0, 4, 16), "forest"), (box(0, 4, 0, 16, 16), "water"),
                (box(0, 16, 0, 20.4, 16), "forest"), (box(0, 20.4, 0, 32, 16), "water"),
                (box(0, 32, 0, 35.6, 16), "forest"), (box(0, 35.6, 0, 48, 16), "water"),
                (box(0, 48, 0, 64, 8), "forest")]                 # chip x=48: half covered, all forest
    labels = write_polygons(raw / "labels.gpkg", features, "EPSG:4326")
    sat = {**SAT, "label_source": "vector", "vector_class_field": "landcover", "min_label_fraction": 0.25}
    params, _ = ingest_cfg(tmp_path, max_reject_fraction=1.0, satellite=sat)
    assert default_labels(raw, "vector") == labels
    # Through the CLI, without --labels: the stage finds <raw>/labels.gpkg.
    assert main(["ingest", "--domain", "satellite", "--params", str(params), "--raw", str(raw),
                 "--out", str(tmp_path / "out")]) == 0
    got = labels_by_id(tmp_path / "out")
    assert got["a_00000_00000"] == (1, 0, 0, 0)   # forest at exactly 0.25: not above the fraction
    assert got["a_00000_00016"] == (1, 1, 0, 0)
    assert got["a_00000_00032"] == (1, 0, 0, 0)
    assert got["a_00000_00048"] == (0, 1, 0, 0)   # share of the labelled (covered) half, as raster nodata


def test_coverage_rule_counts_only_valid_pixels() -> None:
    coverage = np.zeros((3, 4, 4), np.float32)
    coverage[0, :, :2] = 1.0
    coverage[1, :, 2:] = 1.0
    coverage[2] = 1.0
    ok = np.ones((4, 4), bool)
    assert list(coverage_chip_labels(coverage, ok, 0.4)) == [1, 1]
    ok[:, 2:] = False                               # class 1 lies under nodata pixels only
    assert list(coverage_chip_labels(coverage, ok, 0.4)) == [1, 0]
    assert coverage_chip_labels(np.zeros((3, 4, 4), np.float32), ok, 0.4) is None


def test_polygon_layer_problems_are_fatal(tmp_path: Path) -> None:
    raw = satellite_raw(tmp_path / "raw", n_scenes=1)
    labels = write_polygons(tmp_path / "l.gpkg", raster_equivalent(0) + [(box(0, 0, 0, 8, 8), "lava")], "EPSG:4326")
    sat = {**SAT, "label_source": "vector", "vector_class_field": "class"}
    _, cfg = ingest_cfg(tmp_path, satellite=sat)
    with pytest.raises(UserError) as err:
        ingest("satellite", raw, labels, tmp_path / "out", cfg)
    assert str(labels) in str(err.value) and "'class'" in str(err.value) and "['id', 'landcover']" in str(err.value)
    _, cfg = ingest_cfg(tmp_path, satellite={**sat, "vector_class_field": "landcover"})
    with pytest.raises(UserError, match=r"feature 5: class 'lava'"):
        ingest("satellite", raw, labels, tmp_path / "out", cfg)
    assert not (tmp_path / "out").exists()


def _warp_labels(src: Path, dst: Path, crs: str, resolution: tuple[float, float]) -> None:
    """``src`` (a label raster on its scene's grid) resampled with nearest neighbour onto a grid in ``crs``."""
    with rasterio.open(src) as s:
        transform, width, height = calculate_default_transform(s.crs, crs, s.width, s.height, *s.bounds,
                                                               resolution=resolution)
        out = np.full((1, height, width), 255, np.uint8)
        reproject(rasterio.band(s, 1), out, src_nodata=255, dst_transform=transform, dst_crs=crs, dst_nodata=255,
                  resampling=Resampling.nearest)
    with rasterio.open(dst, "w", driver="GTiff", width=width, height=height, count=1, dtype="uint8", crs=crs,
                       transform=transform, nodata=255) as d:
        d.write(out)


@pytest.mark.parametrize("grid", ["half-resolution", "EPSG:4326"])
def test_label_rasters_on_another_grid_are_warped_not_rejected(
        tmp_path: Path, reference: tuple[Path, dict[str, tuple[int, ...]]], grid: str) -> None:
    raw, expected = reference
    labels = tmp_path / "labels"
    labels.mkdir()
    for src in sorted((raw / "labels").glob("tile*.tif")):
        if grid == "half-resolution":  # 20 m pixels: class edges (columns 32, rows 60) fall on 20 m pixel edges
            with rasterio.open(src) as s:
                half = s.read(1)[::2, ::2]
                t = s.transform
            write_scene(labels / src.name, half[None], t.c, transform=from_origin(t.c, t.f, 20, 20), nodata=255)
        else:  # ~2.5 m in lon/lat: nearest neighbour there and back moves no edge past a 10 m pixel centre
            _warp_labels(src, labels / src.name, "EPSG:4326", (2.8e-5, 2.2e-5))
    with rasterio.open(labels / "tile0.tif") as ds:
        assert ds.crs.to_string() == ("EPSG:32633" if grid == "half-resolution" else "EPSG:4326")
    _, cfg = ingest_cfg(tmp_path, max_reject_fraction=1.0, satellite=SAT)
    ingest("satellite", raw, labels, tmp_path / "out", cfg)
    assert labels_by_id(tmp_path / "out") == expected
    rejects = pd.read_csv(tmp_path / "out" / "rejects.csv")
    assert not rejects["reason"].str.contains("grid").any()
