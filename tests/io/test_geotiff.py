"""GeoTIFF reading: masks before casts, band checks, corrupt blocks, geometry, the shared rasters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from medvit.io.geotiff import (RasterReject, acquisition_month, chip_geometry, label_grid_differs, probe,
                               read_label_strip, read_strip)

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # rasterio's own Affine use


def _write(path: Path, data: np.ndarray, **profile: object) -> Path:
    base = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0], dtype=data.dtype,
                crs="EPSG:32633", transform=from_origin(500000, 4000000, 10, 10))
    base.update(profile)
    with rasterio.open(path, "w", **base) as ds:
        ds.write(data)
    return path


def test_nan_and_nodata_are_masked_before_the_cast(shared_geotiff: Path) -> None:
    info = probe(shared_geotiff / "float_nan.tif", (1,))
    values, valid = read_strip(shared_geotiff / "float_nan.tif", (1,), 0, info.height, info.scale)
    with rasterio.open(shared_geotiff / "float_nan.tif") as ds:
        raw = ds.read(1)
    assert np.isnan(raw).any()
    np.testing.assert_array_equal(valid[0], ~np.isnan(raw))
    assert np.isfinite(values).all() and (values[~valid] == 0).all()

    path = shared_geotiff / "float_raster_with_nodata.tif"
    info = probe(path, (1,))
    values, valid = read_strip(path, (1,), 0, info.height, info.scale)
    with rasterio.open(path) as ds:
        raw, nodata = ds.read(1), ds.nodata
    assert (raw == np.float32(nodata)).any()
    np.testing.assert_array_equal(valid[0], raw != np.float32(nodata))
    assert values.min() > -1e30 and np.isfinite(values).all()


def test_all_nodata_raster_has_no_valid_pixel(shared_geotiff: Path) -> None:
    info = probe(shared_geotiff / "all-nodata.tif", (1, 2, 3, 4))
    assert info.scale == pytest.approx(1e-4)  # uint16 digital numbers
    _, valid = read_strip(shared_geotiff / "all-nodata.tif", (1, 2, 3, 4), 0, 256, info.scale)
    assert not valid.any()


def test_band_count_mismatch_is_a_reject(shared_geotiff: Path) -> None:
    with pytest.raises(RasterReject) as err:
        probe(shared_geotiff / "cogeo.tif", (1, 2, 3, 4))
    assert err.value.reason == "band count mismatch" and "3 band" in err.value.detail
    info = probe(shared_geotiff / "cogeo.tif", (1, 2, 3))
    values, valid = read_strip(shared_geotiff / "cogeo.tif", (1, 2, 3), 512, 576, info.scale)
    assert values.shape == (3, 64, 1024) and valid.all() and 0 <= values.min() and values.max() <= 1


def test_rotated_chip_geometry_matches_rasterio(shared_geotiff: Path) -> None:
    path = shared_geotiff / "rotated.tif"
    info = probe(path, (1,))
    geo = chip_geometry(info, 4, 2, 5)
    with rasterio.open(path) as ds:
        expected = window_transform(Window(2, 4, 5, 5), ds.transform)
        corners = [ds.transform @ (c, r) for c, r in ((2, 4), (7, 4), (2, 9), (7, 9))]
    assert expected.b != 0  # really rotated
    np.testing.assert_allclose([float(v) for v in geo["transform"].split()], tuple(expected)[:6])
    xs, ys = zip(*corners)
    np.testing.assert_allclose([float(v) for v in geo["bounds"].split()], (min(xs), min(ys), max(xs), max(ys)))
    assert geo["crs"] == ""


def test_acquisition_month_from_the_date_tags(tmp_path: Path) -> None:
    data = np.ones((1, 8, 8), np.uint16)
    with rasterio.open(_write(tmp_path / "d.tif", data), "r+") as ds:
        ds.update_tags(ACQUISITION_DATE="2023-07-14", TIFFTAG_DATETIME="2024:01:02 10:00:00")
    assert probe(tmp_path / "d.tif", (1,)).month == 7  # the acquisition date wins over the file's own time
    assert probe(_write(tmp_path / "none.tif", data), (1,)).month == "unknown"
    assert acquisition_month({"TIFFTAG_DATETIME": "2024:11:02 10:00:00"}) == 11
    assert acquisition_month({"SENSING_TIME": "20230302T101021"}) == 3
    assert acquisition_month({"ACQUISITION_DATE": "2023-13-01"}) == "unknown"  # not a month


def test_corrupt_block_is_rejected_not_zeros(tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(1, 5000, (2, 128, 128)).astype(np.uint16)
    path = _write(tmp_path / "c.tif", data, tiled=True, blockxsize=64, blockysize=64, compress="deflate")
    with rasterio.open(path) as ds:
        offset = int(ds.get_tag_item("BLOCK_OFFSET_1_1", "TIFF", bidx=1))
    with open(path, "r+b") as f:
        f.seek(offset + 8)
        f.write(b"\xff" * 64)
    info = probe(path, (1, 2))
    values, _ = read_strip(path, (1, 2), 0, 64, info.scale)  # the intact block row still reads
    np.testing.assert_allclose(values, data[:, :64] * np.float32(1e-4), rtol=1e-6)
    with pytest.raises(RasterReject) as err:
        read_strip(path, (1, 2), 64, 128, info.scale)
    assert err.value.reason == "unreadable block"


def test_label_raster_on_another_grid_is_warped_with_nearest_neighbour(tmp_path: Path) -> None:
    scene = _write(tmp_path / "s.tif", np.ones((1, 32, 32), np.uint16))
    classes = np.arange(256, dtype=np.uint8).reshape(16, 16) % 7
    same = _write(tmp_path / "l.tif", np.kron(classes, np.ones((2, 2), np.uint8))[None])
    # Half the resolution (20 m pixels), shifted by one 20 m pixel to the east and larger than the scene.
    half = np.full((17, 17), 3, np.uint8)
    half[:16, 1:] = classes
    coarse = _write(tmp_path / "l2.tif", half[None], transform=from_origin(500000 - 20, 4000000, 20, 20), nodata=255)
    unplaced = _write(tmp_path / "l3.tif", np.zeros((1, 16, 16), np.uint8), crs=None,
                      transform=from_origin(500000, 4000000, 20, 20))
    info = probe(scene, (1,))
    assert label_grid_differs(info, same) is False
    assert label_grid_differs(info, coarse) is True
    expected = read_label_strip(same, 0, 32)
    np.testing.assert_array_equal(read_label_strip(coarse, 0, 32, info), expected)
    np.testing.assert_array_equal(read_label_strip(coarse, 10, 21, info), expected[10:21])  # windowed warp
    with pytest.raises(RasterReject) as err:
        label_grid_differs(info, unplaced)
    assert err.value.reason == "label grid mismatch" and "has no CRS" in str(err.value)


def test_warped_label_raster_is_nodata_outside_its_extent(tmp_path: Path) -> None:
    scene = _write(tmp_path / "s.tif", np.ones((1, 32, 32), np.uint16))
    small = _write(tmp_path / "l.tif", np.full((1, 8, 32), 2, np.uint8), nodata=255)  # top 8 rows only
    info = probe(scene, (1,))
    strip = read_label_strip(small, 0, 32, info)
    assert (strip[:8] == 2).all() and (strip[8:] == 255).all()


def test_not_a_raster_and_empty(tmp_path: Path) -> None:
    (tmp_path / "x.tif").write_text("hello")
    (tmp_path / "e.tif").write_bytes(b"")
    with pytest.raises(RasterReject, match="not a raster"):
        probe(tmp_path / "x.tif", (1,))
    with pytest.raises(RasterReject, match="empty file"):
        probe(tmp_path / "e.tif", (1,))
