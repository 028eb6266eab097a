"""The satellite source (GeoTIFF scenes + label rasters or tiles.csv) through the ingest stage."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from ingest_inputs import SAT, check_conservation, ingest_cfg, satellite_raw, write_csv, write_scene

from medvit.cli import main
from medvit.data.cache import ShardReader, read_stats
from medvit.data.manifest import read_manifest
from medvit.errors import UserError
from medvit.ingest import ingest, scenes

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # rasterio's own Affine use


def test_satellite_raster_labels_end_to_end(tmp_path: Path) -> None:
    raw = satellite_raw(tmp_path / "raw")
    params, cfg = ingest_cfg(tmp_path, max_reject_fraction=0.5, satellite=SAT)
    out = tmp_path / "cache"
    assert main(["ingest", "--domain", "satellite", "--params", str(params), "--raw", str(raw),
                 "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    keys = [p.relative_to(raw).as_posix() for p in (raw / "scenes").iterdir()]
    check_conservation(keys, out)
    rejects = dict(pd.read_csv(out / "rejects.csv").itertuples(index=False))
    assert rejects["scenes/void.tif"].startswith("all nodata")
    assert rejects["scenes/rgb.tif"].startswith("band count mismatch")
    assert rejects["scenes/broken.tif"].startswith("unreadable block")
    assert report["chips_dropped_nodata"] == 2 and report["n_samples"] == 6 * 16 - 2

    manifest = read_manifest(out)
    frame = manifest.frame.set_index("id")
    assert frame.groupby("group")["split"].nunique().max() == 1
    row = frame.loc["tile2_00016_00032"]
    assert row["crs"] == "EPSG:32633" and row["group"] == "tile2"
    assert str(row["month"]) == "8" and str(frame.loc["tile1_00048_00000", "month"]) == "unknown"
    assert [float(v) for v in row["transform"].split()] == [10, 0, 502_000 + 320, 0, -10, 4_000_000 - 160]
    assert [float(v) for v in row["bounds"].split()] == [502_320, 4_000_000 - 320, 502_480, 4_000_000 - 160]
    # Labels: class 1 + i % 3 on the right half, class 0 on the left; 255 rows ignored.
    labels = manifest.labels()
    ids = list(manifest.frame["id"])
    assert list(labels[ids.index("tile2_00016_00032")]) == [0, 0, 0, 1]
    assert list(labels[ids.index("tile1_00048_00000")]) == [1, 0, 0, 0]

    # Stats: valid pixels of train chips only, straight from the rasters.
    train = manifest.split("train")
    sums, count = np.zeros(4), 0
    for _, r in train.iterrows():
        with rasterio.open(raw / r["source"]) as ds:
            block = ds.read(window=rasterio.windows.Window(r["x"], r["y"], 16, 16)).astype(np.float64) * 1e-4
        valid = block.all(0)
        sums += block[:, valid].sum(1)
        count += valid.sum()
    stats = read_stats(out)
    np.testing.assert_allclose(stats["mean"], sums / count, rtol=1e-6)
    assert stats["channels"] == ["B2", "B3", "B4", "B8"] and stats["size"] == [16, 16]

    # The partly-nodata chip is kept; its nodata pixels hold the train mean, so they normalise to 0.
    part = frame.loc["tile0_00016_00000"]
    assert 0 < float(part["nodata_fraction"]) <= 0.5
    img = np.asarray(ShardReader(out).get(int(part["shard"]), int(part["index"])))
    normalised = (img - np.array(stats["mean"])[:, None, None]) / np.array(stats["std"])[:, None, None]
    np.testing.assert_allclose(normalised[:, :4, :], 0.0, atol=1e-5)
    assert np.abs(normalised[:, 4:, :]).max() > 0.1


def test_satellite_tiles_csv(tmp_path: Path) -> None:
    raw = satellite_raw(tmp_path / "raw", n_scenes=4)
    rows = [{"tile": f"tile{i}_{y:05d}_{x:05d}", "labels": "water|urban" if (x + y + i) % 32 == 0 else "forest",
             "scene": f"tile{i}.tif"} for i in range(3) for y in (0, 32) for x in (0, 16, 32, 48)]
    write_csv(raw / "tiles.csv", rows)
    sat = {**SAT, "label_source": "csv"}
    _, cfg = ingest_cfg(tmp_path, max_reject_fraction=1.0, satellite=sat)
    report = ingest("satellite", raw, raw / "tiles.csv", tmp_path / "out", cfg)
    manifest = read_manifest(tmp_path / "out")
    assert manifest.label_names == ("water", "forest", "cropland", "urban")
    expected = {r["tile"]: r["labels"] for r in rows}
    kept = set(manifest.frame["id"])
    assert "tile0_00000_00000" not in kept and "tile0_00000_00016" not in kept  # all-nodata chips dropped
    assert report["chips_dropped_nodata"] == 2
    for tile, y in zip(manifest.frame["id"], manifest.labels()):
        names = {n for n, v in zip(manifest.label_names, y) if v}
        assert names == set(expected[tile].split("|")), tile
    rejects = dict(pd.read_csv(tmp_path / "out" / "rejects.csv").itertuples(index=False))
    assert rejects["scenes/tile3.tif"].startswith("no labels")
    write_csv(raw / "bad.csv", rows + [{"tile": "tile0_00016_00016", "labels": "lava", "scene": "tile0.tif"}])
    with pytest.raises(UserError, match=r"unknown label name\(s\) \['lava'\]"):
        ingest("satellite", raw, raw / "bad.csv", tmp_path / "out2", cfg)


def test_shared_geotiffs_through_the_stage(tmp_path: Path, shared_geotiff: Path) -> None:
    raw = tmp_path / "raw"
    (raw / "scenes").mkdir(parents=True)
    (raw / "labels").mkdir()
    names = ("all-nodata.tif", "float_nan.tif", "float_raster_with_nodata.tif", "rotated.tif", "cogeo.tif")
    for name in names:
        shutil.copy(shared_geotiff / name, raw / "scenes" / name)
        with rasterio.open(shared_geotiff / name) as src:
            profile = dict(driver="GTiff", width=src.width, height=src.height, count=1, dtype="uint8",
                           transform=src.transform, nodata=255, **({"crs": src.crs} if src.crs else {}))
        with rasterio.open(raw / "labels" / name, "w", **profile) as dst:
            dst.write(np.zeros((1, profile["height"], profile["width"]), np.uint8))
    sat = {"bands": [1], "band_names": ["B1"], "tile_size": 8, "stride": 64, "label_names": ["a", "b"]}
    _, cfg = ingest_cfg(tmp_path, max_reject_fraction=1.0, satellite=sat)
    report = ingest("satellite", raw, raw / "labels", tmp_path / "out", cfg)
    check_conservation([f"scenes/{n}" for n in names], tmp_path / "out")
    rejects = dict(pd.read_csv(tmp_path / "out" / "rejects.csv").itertuples(index=False))
    assert rejects["scenes/all-nodata.tif"].startswith("all nodata")
    assert rejects["scenes/float_nan.tif"].startswith("smaller than a tile")
    frame = read_manifest(tmp_path / "out").frame.set_index("id")
    assert report["n_samples"] == len(frame) == 1 + 1 + 16 * 16
    assert pd.isna(frame.loc["rotated_00000_00000", "crs"])  # rotated.tif has no CRS: recorded as empty
    rotated = [float(v) for v in frame.loc["rotated_00000_00000", "transform"].split()]
    assert rotated[1] != 0 and rotated[3] != 0  # the rotated geotransform is kept
    reader = ShardReader(tmp_path / "out")
    for chip in ("float_raster_with_nodata_00000_00000", "rotated_00000_00000"):
        img = reader.get(int(frame.loc[chip, "shard"]), int(frame.loc[chip, "index"]))
        assert np.isfinite(img).all() and np.abs(img).max() < 1e6  # the -3.4e38 nodata never reached the cache


def test_scene_in_several_strips_with_a_corrupt_later_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = satellite_raw(tmp_path / "raw")
    # A tiny strip budget: every 16-row chip row becomes its own task (bounded memory for huge scenes).
    monkeypatch.setattr(scenes, "STRIP_BYTES", 64 * 4 * 8 * 16)
    _, cfg = ingest_cfg(tmp_path, max_reject_fraction=0.5, satellite=SAT)
    report = ingest("satellite", raw, raw / "labels", tmp_path / "out", cfg)
    rejects = dict(pd.read_csv(tmp_path / "out" / "rejects.csv").itertuples(index=False))
    assert rejects["scenes/broken.tif"].startswith("unreadable block: rows 48-64")
    # Its first three strips were written before the bad block was met: cached but never in the manifest.
    assert report["unreferenced_cache_rows"] == 12
    frame = read_manifest(tmp_path / "out").frame
    assert not frame["source"].eq("scenes/broken.tif").any()
    assert report["n_samples"] == len(frame) == 6 * 16 - 2
    reader = ShardReader(tmp_path / "out")
    for shard, index in zip(frame["shard"], frame["index"]):
        assert reader.get(int(shard), int(index)).shape == (4, 16, 16)


def test_chip_labels_count_only_pixels_whose_bands_are_valid(tmp_path: Path) -> None:
    # The top half of each chip is band nodata: a class there is not seen by the model, so it is no label,
    # and class shares are of the valid half (8 of 128 pixels is 6.25% > 5%; of all 256 it would be 3.1%).
    raw = tmp_path / "raw"
    (raw / "scenes").mkdir(parents=True)
    (raw / "labels").mkdir()
    data = np.full((4, 16, 16), 500, np.uint16)
    data[:, :8] = 0                                   # nodata (the scene's nodata value)
    label = np.zeros((16, 16), np.uint8)             # water
    label[:8] = 3                                     # urban, under band nodata only
    label[8, :8] = 2                                  # cropland: 8 valid pixels
    label[9, :4] = 1                                  # forest: 4 valid pixels (3.1%)
    for i in range(3):
        write_scene(raw / "scenes" / f"s{i}.tif", data, 500_000 + 1000 * i)
        write_scene(raw / "labels" / f"s{i}.tif", label[None], 500_000 + 1000 * i, nodata=255)
    _, cfg = ingest_cfg(tmp_path, satellite=SAT)
    report = ingest("satellite", raw, raw / "labels", tmp_path / "out", cfg)
    manifest = read_manifest(tmp_path / "out")
    assert report["n_samples"] == 3 and report["chips_dropped_unlabelled"] == 0
    assert manifest.labels().astype(int).tolist() == [[1, 0, 1, 0]] * 3
