"""Writers of BigEarthNet v1/v2 and EuroSAT layouts, as the data sets document them (UTM, 10/20/60 m grids)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
from rasterio.transform import from_origin

from medvit.ingest.bands import BIGEARTHNET_BANDS, EUROSAT_BANDS, RESOLUTION_M

CRS = "EPSG:32634"   # UTM 34N, as Sentinel-2 tiles over Finland/Serbia in BigEarthNet
ORIGIN = (500_000.0, 7_000_000.0)


def write_tif(path: Path, data: np.ndarray, left: float, top: float, res: float, crs: str = CRS) -> None:
    """A (C, H, W) GeoTIFF on a north-up grid with ``res`` m pixels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                       dtype=data.dtype, crs=crs, transform=from_origin(left, top, res, res)) as ds:
        ds.write(data)


def band_values(patch_index: int, band: str) -> np.ndarray:
    """The (h, w) uint16 digital numbers of one band of patch ``patch_index``: a ramp along x, band-specific.

    Value = 1000 + 100 * band position + 10 * patch + 3 * column, so that every band and patch differs and
    bilinear resampling of a coarse band is checkable in closed form.
    """
    size = 1200 // RESOLUTION_M[band]
    col = np.arange(size, dtype=np.int64)
    row = 1000 + 100 * BIGEARTHNET_BANDS.index(band) + 10 * patch_index + 3 * col
    return np.broadcast_to(row, (size, size)).astype(np.uint16)


def patch_name(tile: int, row: int, col: int, month: int = 6, v2: bool = False) -> str:
    """A real-looking patch name: ``S2A_MSIL2A_2017MMDDT101031[_N9999_R022_T34VER]_<row>_<col>``."""
    base = f"S2A_MSIL2A_2017{month:02d}{10 + tile:02d}T101031"
    return f"{base}_N9999_R022_T34V{'ABCDEFG'[tile]}R_{row}_{col}" if v2 else f"{base}_{row}_{col}"


def write_patch(folder: Path, name: str, index: int, bands: tuple[str, ...] = BIGEARTHNET_BANDS) -> None:
    """One BigEarthNet patch folder: ``<name>_<band>.tif`` per band, every band covering the same 1.2 km."""
    left, top = ORIGIN[0] + 1200 * index, ORIGIN[1]
    for band in bands:
        write_tif(folder / f"{name}_{band}.tif", band_values(index, band)[None], left, top, RESOLUTION_M[band])


def bigearthnet_v1(root: Path, labels: dict[str, list[str]]) -> list[str]:
    """``<root>/<patch>/`` folders with band files and ``<patch>_labels_metadata.json``; return the names, in order."""
    names = sorted(labels)
    for i, name in enumerate(names):
        write_patch(root / name, name, i)
        meta = {"labels": labels[name], "coordinates": {"ulx": ORIGIN[0] + 1200 * i, "uly": ORIGIN[1]},
                "projection": CRS, "tile_source": name.rsplit("_", 2)[0], "acquisition_date": "2017-06-13 10:10:31"}
        (root / name / f"{name}_labels_metadata.json").write_text(json.dumps(meta))
    return names


def bigearthnet_v2(root: Path, rows: list[dict]) -> Path:
    """``<root>/<tile>/<patch>/`` band folders plus ``metadata.parquet`` of ``rows``; return the parquet path."""
    for i, row in enumerate(sorted(rows, key=lambda r: r["patch_id"])):
        pid = row["patch_id"]
        write_patch(root / pid.rsplit("_", 2)[0] / pid, pid, i)
    frame = pd.DataFrame([{"s1_name": "S1A_IW_GRDH_1SDV_" + r["patch_id"][-5:], "contains_seasonal_snow": False,
                           "contains_cloud_or_shadow": False, **r} for r in rows])
    path = root / "metadata.parquet"
    frame.to_parquet(path)
    return path


def eurosat_values(index: int) -> np.ndarray:
    """(13, 64, 64) uint16 of image ``index``, in EuroSAT's file band order: band k is 500 + 100 k + index."""
    return np.stack([np.full((64, 64), 500 + 100 * k + index, np.uint16) for k in range(len(EUROSAT_BANDS))])


def eurosat(root: Path, per_class: dict[str, int]) -> list[str]:
    """``<root>/<Class>/<Class>_<n>.tif`` 13-band 64x64 images; return their keys, in order."""
    keys, index = [], 0
    for cls in sorted(per_class):
        for n in range(1, per_class[cls] + 1):
            path = root / cls / f"{cls}_{n}.tif"
            write_tif(path, eurosat_values(index), ORIGIN[0] + 640 * index, ORIGIN[1], 10.0)
            keys.append(path.relative_to(root).as_posix())
            index += 1
    return keys
