"""Windowed GeoTIFF reads: band selection, nodata/NaN masks, scaling, label rasters, chip geometry.

Scenes are read in full-width row strips (``read_strip``), so memory is bounded
by strip height x width x bands whatever the scene size, and every block of
the selected bands is read once: a corrupt block makes GDAL raise, which
becomes ``RasterReject("unreadable block")`` instead of silently becoming zeros.

Values: nodata (the dataset mask: nodata value, internal mask or alpha) and
non-finite samples are masked on the native dtype **before** the cast to
float32 and the reflectance scaling (``scale``: 1/255 for 8-bit, 1/10000 for
16-bit Sentinel-2/Landsat style digital numbers, 1 for floats, unless params
set it); masked samples are returned as 0 with ``valid`` False so the caller
can fill them after the train statistics are known.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import MaskFlags, Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError, RasterioIOError
from rasterio.transform import Affine
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window


LABEL_NODATA = 255  # label-raster class index of "no class" (medvit.data.layout.LABEL_NODATA)


class RasterReject(Exception):
    """A scene that cannot be used; ``reason`` is a fixed category, ``detail`` explains."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class SceneInfo:
    """What ingest needs to plan windowed reads of one scene."""

    height: int
    width: int
    count: int
    dtype: str
    crs: str
    transform: tuple[float, float, float, float, float, float]
    scale: float
    bands: tuple[int, ...] = ()     # the selected bands as 1-based indexes (names resolved by ``probe``)
    month: int | str = "unknown"    # acquisition month 1-12 from the file's date tags (``acquisition_month``)


_S2_NAME = re.compile(r"^B(\d{1,2}|8A)$")
# Date tags, first found wins: our sample's / many L2A exports' ACQUISITION_DATE (YYYY-MM-DD...), GDAL's
# TIFFTAG_DATETIME (YYYY:MM:DD HH:MM:SS, strictly the file's own time, used only when nothing better exists).
_DATE_TAGS = ("ACQUISITION_DATE", "DATE_ACQUIRED", "SENSING_TIME", "TIFFTAG_DATETIME")
_DATE = re.compile(r"^\s*(\d{4})[-:/]?(\d{2})")


def acquisition_month(tags: dict[str, str]) -> int | str:
    """The acquisition month (1-12) from a GeoTIFF's dataset tags, else ``unknown`` (for subgroup analysis)."""
    for key in _DATE_TAGS:
        match = _DATE.match(str(tags.get(key, "")))
        if match and 1 <= int(match[2]) <= 12:
            return int(match[2])
    return "unknown"


def band_name(name: str) -> str | None:
    """The canonical Sentinel-2 name of ``name`` (``b2`` -> ``B02``, ``b8a`` -> ``B8A``), None if not one."""
    match = _S2_NAME.match(name.strip().upper())
    if match is None:
        return None
    digits = match.group(1)
    return "B8A" if digits == "8A" else f"B{int(digits):02d}"


def band_indexes(bands: tuple[int | str, ...], descriptions: tuple[str | None, ...]) -> tuple[int, ...]:
    """1-based indexes of ``bands``: indexes as given, names looked up in the file's band descriptions.

    A name matches a description equal to it (case and surrounding blanks ignored) or naming the same
    Sentinel-2 band (``B2`` = ``B02``).

    Raises:
        RasterReject: a selected band the file lacks (named).
    """
    out, missing = [], []
    keys = [(d or "").strip().upper() for d in descriptions]
    canon = [band_name(k) if k else None for k in keys]
    for band in bands:
        if isinstance(band, int):
            if not 1 <= band <= len(descriptions):
                missing.append(str(band))
            out.append(band)
            continue
        key, s2 = band.strip().upper(), band_name(band)
        hits = [i for i, k in enumerate(keys) if k == key] or [i for i, c in enumerate(canon) if s2 and c == s2]
        if len(hits) != 1:
            missing.append(band)
            continue
        out.append(hits[0] + 1)
    if missing:
        named = [d.strip() for d in descriptions if d and d.strip()]
        raise RasterReject("missing band", f"{', '.join(missing)} (file has {len(descriptions)} band(s)"
                           + (f" named {', '.join(named)})" if named else ", without band names)"))
    return tuple(out)


def default_scale(dtype: str) -> float:
    """Digital number -> ~[0, 1] reflectance factor for a dtype."""
    kind = np.dtype(dtype)
    if kind == np.uint8:
        return 1.0 / 255.0
    if kind in (np.uint16, np.int16, np.uint32, np.int32):
        return 1.0 / 10000.0  # Sentinel-2 L2A / Landsat C2 style quantification value
    return 1.0


def probe(path: str | Path, bands: tuple[int | str, ...], scale: float | None = None) -> SceneInfo:
    """Open a scene's header and check the selected bands (1-based indexes or names) exist.

    Raises:
        RasterReject: empty file, not a raster, band count mismatch, a named band missing, mixed band dtypes.
    """
    path = Path(path)
    if path.stat().st_size == 0:
        raise RasterReject("empty file")
    try:
        with _quiet(), rasterio.open(path) as ds:
            named = any(isinstance(b, str) for b in bands)
            if not named and (max(bands) > ds.count or min(bands) < 1):  # type: ignore[type-var]
                raise RasterReject("band count mismatch", f"file has {ds.count} band(s); ingest.satellite.bands "
                                   f"needs band(s) {list(bands)}")
            indexes = band_indexes(bands, tuple(ds.descriptions))
            dtypes = {ds.dtypes[b - 1] for b in indexes}
            if len(dtypes) != 1:
                raise RasterReject("mixed band dtypes", ", ".join(sorted(dtypes)))
            dtype = dtypes.pop()
            return SceneInfo(height=ds.height, width=ds.width, count=ds.count, dtype=dtype,
                             crs=ds.crs.to_string() if ds.crs else "", transform=tuple(ds.transform)[:6],
                             scale=float(scale) if scale is not None else default_scale(dtype), bands=indexes,
                             month=acquisition_month(ds.tags()))
    except RasterReject:
        raise
    except (RasterioIOError, RasterioError) as err:
        raise RasterReject("not a raster", type(err).__name__) from None


def read_strip(path: str | Path, bands: tuple[int, ...], row0: int, row1: int,
               scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Read rows [row0, row1) of the selected bands at full width.

    Returns:
        (C, h, W) float32 scaled values with masked samples set to 0, and the (C, h, W) bool valid mask.

    Raises:
        RasterReject: a block in the strip cannot be read or decoded.
    """
    try:
        with _quiet(), rasterio.open(path) as ds:
            window = Window(0, row0, ds.width, row1 - row0)
            data = ds.read(list(bands), window=window, masked=True)  # (C, h, W) native dtype
    except (RasterioIOError, RasterioError) as err:
        raise RasterReject("unreadable block", f"rows {row0}-{row1} ({type(err).__name__})") from None
    raw = np.ma.getdata(data)
    valid = ~np.ma.getmaskarray(data)
    if raw.dtype.kind == "f":
        valid &= np.isfinite(raw)  # NaN / inf masked on the native dtype, before any cast
    values = raw.astype(np.float32)
    if scale != 1.0:
        values *= np.float32(scale)
    valid &= np.isfinite(values)  # float64 values beyond float32 range
    values[~valid] = 0.0
    return values, valid


def read_label_strip(path: str | Path, row0: int, row1: int, scene: SceneInfo | None = None) -> np.ndarray:
    """Rows [row0, row1) of band 1 of a label raster, (h, W) uint8 (255 = nodata).

    Args:
        path: the label raster.
        row0: first row, on the scene's grid.
        row1: end row.
        scene: warp onto this scene's grid (see ``label_grid_differs``); None: the raster is on it.

    Raises:
        RasterReject: unreadable block, or not an 8-bit raster.
    """
    try:
        with _quiet(), rasterio.open(path) as ds:
            if ds.dtypes[0] != "uint8":
                raise RasterReject("invalid label raster", f"dtype {ds.dtypes[0]}, expected uint8 class indexes")
            if scene is None:
                return ds.read(1, window=Window(0, row0, ds.width, row1 - row0))
            with WarpedVRT(ds, crs=scene.crs, transform=Affine(*scene.transform), width=scene.width,
                           height=scene.height, resampling=Resampling.nearest, nodata=LABEL_NODATA) as vrt:
                return vrt.read(1, window=Window(0, row0, scene.width, row1 - row0))
    except RasterReject:
        raise
    except (RasterioIOError, RasterioError) as err:
        raise RasterReject("unreadable label block", f"rows {row0}-{row1} ({type(err).__name__})") from None


def label_grid_differs(scene: SceneInfo, label_path: str | Path) -> bool:
    """Whether a label raster must be warped onto the scene's grid (False: same size, transform and CRS).

    A label raster on another grid or CRS (half the resolution, EPSG:4326, a larger
    extent) is warped onto the scene's grid with nearest-neighbour resampling through
    a ``WarpedVRT`` (GDAL's warper, as ``rasterio.warp.reproject``, read strip by
    strip). Nearest neighbour keeps class indexes intact; a class boundary can move
    by up to half a label-raster pixel, so a chip's class share changes by at most
    about (boundary length x half a label pixel, in scene pixels) / tile_size**2. A
    label raster whose resolution divides the scene's, with class boundaries on its
    own pixel edges, gives the same chips exactly. Outside its extent pixels are nodata.

    Raises:
        RasterReject: unreadable label raster, or grids that differ while one of them has no CRS.
    """
    try:
        with _quiet(), rasterio.open(label_path) as ds:
            same = (ds.height, ds.width) == (scene.height, scene.width)
            same = same and np.allclose(tuple(ds.transform)[:6], scene.transform, rtol=0, atol=1e-9 + 1e-6 *
                                        max(abs(v) for v in scene.transform))
            crs = ds.crs.to_string() if ds.crs else ""
            same = same and crs == scene.crs
    except (RasterioIOError, RasterioError) as err:
        raise RasterReject("invalid label raster", type(err).__name__) from None
    if not same and not (crs and scene.crs):
        raise RasterReject("label grid mismatch", "label raster and scene grids differ and "
                           f"{'the scene' if crs else 'the label raster'} has no CRS to reproject with")
    return not same


def chip_geometry(scene: SceneInfo, y: int, x: int, size: int) -> dict[str, str]:
    """CRS, affine transform and (left, bottom, right, top) bounds of a chip (rotation-aware)."""
    a, b, c, d, e, f = scene.transform
    transform = (a, b, a * x + b * y + c, d, e, d * x + e * y + f)
    xs, ys = [], []
    for col, row in ((x, y), (x + size, y), (x, y + size), (x + size, y + size)):
        xs.append(a * col + b * row + c)
        ys.append(d * col + e * row + f)
    bounds = (min(xs), min(ys), max(xs), max(ys))
    return {"crs": scene.crs, "transform": _fmt(transform), "bounds": _fmt(bounds)}


def _fmt(values: tuple[float, ...]) -> str:
    return " ".join(repr(float(v)) if math.isfinite(v) else "nan" for v in values)


class _quiet(warnings.catch_warnings):
    """Silence rasterio's NotGeoreferencedWarning (e.g. rotated.tif has no CRS; that is recorded, not an error)."""

    def __enter__(self) -> None:
        super().__enter__()
        warnings.simplefilter("ignore", NotGeoreferencedWarning)


@dataclass(frozen=True)
class BandStack:
    """Whole-file read of some bands of one small raster (a BigEarthNet band file, a EuroSAT tile)."""

    values: np.ndarray        # (k, h, w) float32 scaled, masked samples 0
    valid: np.ndarray         # (k, h, w) bool
    crs: str
    transform: tuple[float, float, float, float, float, float]
    count: int                # bands in the file


def gdal_session() -> rasterio.Env:
    """One GDAL environment for many small reads (``rasterio.open`` would set one up per file)."""
    return rasterio.Env()


def read_bands(path: str | Path, indexes: tuple[int, ...], scale: float | None = None,
               names: tuple[str, ...] = ()) -> BandStack:
    """Read the 1-based band ``indexes`` of a whole (small) raster, masked and scaled as ``read_strip``.

    Args:
        path: the GeoTIFF.
        indexes: 1-based bands to read.
        scale: DN -> reflectance factor; None: by dtype (``default_scale``).
        names: the band names of ``indexes``, for the message of a missing band.

    Raises:
        RasterReject: empty file, not a raster, a missing band (named), unreadable block.
    """
    path = Path(path)
    if path.stat().st_size == 0:
        raise RasterReject("empty file", path.name)
    try:
        with _quiet(), rasterio.open(path) as ds:
            missing = [i for i in indexes if i > ds.count]
            if missing:
                which = [names[indexes.index(i)] if names else str(i) for i in missing]
                raise RasterReject("missing band", f"{', '.join(which)} (file has {ds.count} band(s))")
            # No nodata value and no mask band: skip GDAL's mask read and NumPy's masked array.
            plain = ds.nodata is None and all(ds.mask_flag_enums[i - 1] == [MaskFlags.all_valid] for i in indexes)
            data = ds.read(list(indexes), masked=not plain)  # (k, h, w) native dtype
            crs, transform, count = ds.crs.to_string() if ds.crs else "", tuple(ds.transform)[:6], ds.count
    except RasterReject:
        raise
    except (RasterioIOError, RasterioError) as err:
        raise RasterReject("not a raster", f"{path.name} ({type(err).__name__})") from None
    raw = np.ma.getdata(data)
    valid = np.ones(raw.shape, bool) if plain else ~np.ma.getmaskarray(data)
    if raw.dtype.kind == "f":
        valid &= np.isfinite(raw)
    values = raw.astype(np.float32)
    factor = float(scale) if scale is not None else default_scale(str(raw.dtype))
    if factor != 1.0:
        values *= np.float32(factor)
    valid &= np.isfinite(values)
    values[~valid] = 0.0
    return BandStack(values, valid, crs, transform, count)  # type: ignore[arg-type]
