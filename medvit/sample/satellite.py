"""Satellite sample files: Sentinel-2-like GeoTIFF scenes, their land-cover rasters and tiles.csv.

Layout under ``out`` (what ``medvit.ingest`` reads for the satellite domain):

* ``scenes/<stem>.tif``: tiled, deflate-compressed uint16 GeoTIFF on a north-up 10 m WGS 84 / UTM
  grid, band descriptions set to the band names, nodata 0;
* ``labels/<stem>.tif``: uint8 land-cover class index on the same grid, ``LABEL_NODATA`` = no class;
* ``tiles.csv`` (``tile``, ``labels``, ``scene``): the per-tile label variant (BigEarthNet derived
  its tile labels from CORINE rasters the same way), on ``medvit.data.layout``'s tile grid and ids.

This module writes GeoTIFFs, so it imports rasterio although only medvit/io reads them.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin
from tqdm import tqdm

from medvit.config import SampleSatellite
from medvit.data.layout import LABEL_NODATA, chip_labels, tile_grid, tile_id
from medvit.errors import UserError
from medvit.sample.landcover import BANDS, SIGNATURES, land_cover_scene
from medvit.sample.output import SampleSummary, staging

SATELLITE_ENTRIES = frozenset({"scenes", "labels", "tiles.csv"})
# Where the scenes lie: (EPSG code of a WGS 84 / UTM zone, upper-left easting, northing).
_PLACES: tuple[tuple[int, float, float], ...] = (
    (32632, 680_000.0, 5_340_000.0),  # 32N, Bavaria
    (32630, 440_000.0, 4_480_000.0),  # 30N, central Spain
    (32610, 620_000.0, 4_260_000.0),  # 10N, Central Valley
    (32755, 300_000.0, 6_260_000.0),  # 55S, New South Wales
    (32633, 500_000.0, 5_800_000.0),  # 33N, Poland
    (32736, 260_000.0, 9_860_000.0),  # 36S, Kenya
    (32644, 410_000.0, 3_100_000.0),  # 44N, Uttar Pradesh
    (32721, 330_000.0, 6_150_000.0),  # 21S, Pampas
    (32617, 580_000.0, 4_830_000.0),  # 17N, Ontario
    (32631, 450_000.0, 5_410_000.0),  # 31N, northern France
)
_PIXEL_M = 10.0
_COLOURS: dict[str, tuple[int, int, int]] = {"water": (30, 90, 200), "forest": (20, 110, 40),
                                             "cropland": (230, 200, 60), "urban": (200, 40, 40),
                                             "bare": (170, 130, 90)}


def _check_satellite(cfg: SampleSatellite) -> None:
    """A UserError unless the classes and bands are distinct names the scene phantom knows."""
    bad_classes = [c for c in cfg.classes if c not in SIGNATURES]
    if bad_classes or not cfg.classes or len(set(cfg.classes)) != len(cfg.classes):
        raise UserError(f"sample.satellite.classes: {list(cfg.classes)} must be distinct names out of "
                        f"{', '.join(SIGNATURES)} (unknown: {bad_classes})")
    bad_bands = [b for b in cfg.band_names if b not in BANDS]
    if bad_bands or not cfg.band_names:
        raise UserError(f"sample.satellite.band_names: unknown Sentinel-2 band(s) {bad_bands}; "
                        f"use names out of {', '.join(BANDS)}")


def _write_scene(folder: Path, stem: str, refl: np.ndarray, labels: np.ndarray, place: tuple[int, float, float],
                 date: dt.date, cfg: SampleSatellite) -> None:
    """Write ``scenes/<stem>.tif`` (reflectance) and ``labels/<stem>.tif`` (classes) on one grid."""
    epsg, east, north = place
    size = refl.shape[-1]
    block = 128 if size >= 256 else 64
    profile = {"driver": "GTiff", "width": size, "height": size, "crs": CRS.from_epsg(epsg),
               "transform": from_origin(east, north, _PIXEL_M, _PIXEL_M), "tiled": True,
               "blockxsize": block, "blockysize": block, "compress": "deflate"}
    with rasterio.open(folder / "scenes" / f"{stem}.tif", "w", count=len(cfg.band_names), dtype="uint16",
                       nodata=0, predictor=2, interleave="pixel", **profile) as dst:
        dst.write(np.round(refl).astype(np.uint16))
        for b, name in enumerate(cfg.band_names, start=1):
            dst.set_band_description(b, name)
        dst.update_tags(ACQUISITION_DATE=f"{date:%Y-%m-%d}", PROCESSING_LEVEL="synthetic L2A",
                        QUANTIFICATION_VALUE="10000")
    with rasterio.open(folder / "labels" / f"{stem}.tif", "w", count=1, dtype="uint8", nodata=LABEL_NODATA,
                       **profile) as dst:
        # The palette goes in before the pixels: GDAL cannot change the TIFF's photometric tag after.
        dst.write_colormap(1, {k: (*_COLOURS[c], 255) for k, c in enumerate(cfg.classes)})
        dst.write(labels[None])
        dst.set_band_description(1, "land cover")
        dst.update_tags(CLASS_NAMES="|".join(cfg.classes))


def _tile_rows(stem: str, labels: np.ndarray, cfg: SampleSatellite) -> list[tuple[str, list[int]]]:
    """(tile id, class indices) of each grid chip that is at most ``max_nodata_fraction`` nodata."""
    rows = []
    for y, x in tile_grid(*labels.shape, cfg.tile_size, cfg.stride):
        chip = labels[y:y + cfg.tile_size, x:x + cfg.tile_size]
        if np.mean(chip == LABEL_NODATA) > cfg.max_nodata_fraction:
            continue
        rows.append((tile_id(stem, y, x), chip_labels(chip, len(cfg.classes), cfg.min_label_fraction)))
    return rows


def write_satellite(out: Path, cfg: SampleSatellite, seed: int) -> SampleSummary:
    """Write ``scenes/<stem>.tif``, ``labels/<stem>.tif`` and ``tiles.csv`` into ``out``.

    Scenes are tiled (so windowed reads touch few blocks). Label rasters carry a colour map.
    tiles.csv lists every chip of the ``tile_size`` / ``stride`` grid that is at most
    ``max_nodata_fraction`` nodata, with the classes covering more than ``min_label_fraction`` of
    its valid pixels (``chip_labels``).
    """
    start = time.perf_counter()
    _check_satellite(cfg)
    size = cfg.scene_size
    rows: list[dict[str, str]] = []
    tiles_per_class = np.zeros(len(cfg.classes), int)
    with staging(out, SATELLITE_ENTRIES) as tmp:
        (tmp / "scenes").mkdir()
        (tmp / "labels").mkdir()
        for i in tqdm(range(cfg.n_scenes), desc="sample satellite", unit="scene"):
            srng = np.random.default_rng([seed, 2, i])  # one stream per scene
            epsg, east, north = _PLACES[i % len(_PLACES)]
            east += (i // len(_PLACES)) * size * _PIXEL_M * 2  # repeats of a place sit side by side
            stem = f"scene{i:02d}-utm{epsg % 100}{'N' if epsg // 100 == 326 else 'S'}"
            refl, labels = land_cover_scene(srng, size, cfg.classes, cfg.band_names, swath_edge=i % 3 != 2)
            date = dt.date(2023, 4, 1) + dt.timedelta(days=int(srng.integers(0, 180)))
            _write_scene(tmp, stem, refl, labels, (epsg, east, north), date, cfg)
            for tile, present in _tile_rows(stem, labels, cfg):
                tiles_per_class[present] += 1
                rows.append({"tile": tile, "labels": "|".join(cfg.classes[c] for c in present), "scene": stem})
        pd.DataFrame(rows, columns=["tile", "labels", "scene"]).to_csv(tmp / "tiles.csv", index=False,
                                                                       lineterminator="\n")
    detail = f"{len(rows)} tiles; " + ", ".join(f"{c} {n}" for c, n in zip(cfg.classes, tiles_per_class))
    places = min(cfg.n_scenes, len(_PLACES))
    return SampleSummary("satellite", out, cfg.n_scenes, "scenes", places, "places", detail,
                         time.perf_counter() - start)
