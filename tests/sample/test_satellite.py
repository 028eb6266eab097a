"""Satellite sample files: georeferenced scenes and label rasters, and tiles.csv on the shared tile grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio

from medvit.config import Params, SampleSatellite
from medvit.data.layout import chip_labels, tile_grid, tile_id
from medvit.sample.satellite import write_satellite

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # rasterio's own Affine use
SATELLITE = SampleSatellite(n_scenes=2, scene_size=128)


@pytest.fixture(scope="module")
def satellite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("raw") / "satellite"
    write_satellite(out, SATELLITE, seed=0)
    return out


def test_scenes_and_label_rasters_are_georeferenced(satellite: Path) -> None:
    scenes = sorted((satellite / "scenes").glob("*.tif"))
    assert len(scenes) == SATELLITE.n_scenes
    crss, any_nodata = set(), False
    for path in scenes:
        with rasterio.open(path) as src, rasterio.open(satellite / "labels" / path.name) as lab:
            assert src.count == 4 and src.dtypes == ("uint16",) * 4 and src.nodata == 0
            assert src.descriptions == SATELLITE.band_names
            assert src.crs.is_projected and src.crs.to_epsg() // 100 in (326, 327)  # WGS 84 / UTM
            assert (src.transform.a, src.transform.e, src.transform.b, src.transform.d) == (10, -10, 0, 0)
            assert src.profile["tiled"] and src.block_shapes[0] == (64, 64)
            assert src.compression.name == "deflate"
            assert (lab.crs, lab.transform, lab.shape) == (src.crs, src.transform, src.shape)
            assert lab.dtypes == ("uint8",) and lab.nodata == 255
            pixels, classes = src.read(), lab.read(1)
            window = src.read(1, window=rasterio.windows.Window(64, 0, 64, 64))  # windowed reads work
            assert np.array_equal(window, pixels[0, :64, 64:])
            assert pixels.max() <= 10000
            assert np.array_equal((pixels == 0).all(0), classes == 255)  # nodata agrees
            assert set(np.unique(classes)) <= set(range(len(SATELLITE.classes))) | {255}
            any_nodata |= bool((classes == 255).any())
            crss.add(src.crs.to_epsg())
    assert any_nodata and len(crss) == len(scenes)


def test_tiles_csv_matches_the_grid_and_the_label_rasters(satellite: Path) -> None:
    tiles = pd.read_csv(satellite / "tiles.csv", keep_default_na=False)
    assert list(tiles.columns) == ["tile", "labels", "scene"]
    size, t = SATELLITE.scene_size, SATELLITE.tile_size
    expected = []
    for path in sorted((satellite / "labels").glob("*.tif")):
        with rasterio.open(path) as lab:
            classes = lab.read(1)
        for y, x in tile_grid(size, size, t, SATELLITE.stride):
            chip = classes[y:y + t, x:x + t]
            if (chip == 255).mean() <= SATELLITE.max_nodata_fraction:
                names = [SATELLITE.classes[c] for c in chip_labels(chip, 5, SATELLITE.min_label_fraction)]
                expected.append((tile_id(path.stem, y, x), "|".join(names), path.stem))
    assert list(tiles.itertuples(index=False, name=None)) == expected
    assert tiles["tile"].iloc[0] == f"{tiles['scene'].iloc[0]}_00000_00000"
    counts = tiles["labels"].str.split("|").map(len)
    assert 1 <= counts.mean() <= 3


def test_chip_labels_use_the_valid_area() -> None:
    chip = np.full((10, 10), 255, np.uint8)
    chip[:5] = 0       # 50 valid pixels: 46 water, 4 forest (8 % of the valid area)
    chip[0, :4] = 1
    assert chip_labels(chip, 3, 0.05) == [0, 1]
    assert chip_labels(chip, 3, 0.10) == [0]
    assert chip_labels(np.full((4, 4), 255, np.uint8), 3, 0.05) == []


def test_sample_tile_grid_defaults_match_ingest() -> None:
    sample, ingest = Params().sample.satellite, Params().ingest.satellite
    for key in ("tile_size", "stride", "min_label_fraction", "max_nodata_fraction"):
        assert getattr(sample, key) == getattr(ingest, key), key
    assert sample.classes == ingest.label_names and sample.band_names == ingest.band_names
