"""The one preprocessing path from a raw file to model input, shared by ingest, finetune and the served model.

A :class:`Preprocessor` holds plain params only (no pickle): ingest builds it from
its params and the train statistics and writes ``preprocess.json`` into the cache,
finetune adds the model-input part (img_size, mean, std, interpolation) and saves
it in ``meta.json``, and the served model (``medvit.tracking.pyfunc``) rebuilds it
from there. Every step is the function ingest and finetune call themselves:

* medical: DICOM through ``medvit.io.dicom.read_frames`` (the PS3.3 intensity
  chain and grey conversion, ``medvit.io.dicom_intensity``), PNG/JPEG through
  ``medvit.io.image`` (bit-depth scaling, BT.601 grey); then :func:`letterbox` to
  the cache size (``ingest.medical.image_size``);
* satellite: ``medvit.io.geotiff`` probe and strip reads (band selection,
  reflectance scaling, nodata and NaN masks), the scene's chip grid
  (``medvit.data.layout.tile_grid``), :func:`cut_chip` (the nodata-fraction
  rule) and :func:`fill_nodata` with the train-split band mean, as the cache holds
  it after ingest's fill;
* both: :meth:`Preprocessor.to_model_input`, the evaluation transform of
  ``medvit.data.transforms`` (resize to img_size, ``(x - mean) / std``).

Raw bytes are written to a private temporary file and read by the same
path-based readers, so a served file and an ingested file take the same code.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch

from medvit.config import IngestConfig
from medvit.data.layout import tile_grid, tile_id
from medvit.data.transforms import eval_transform
from medvit.io.atomic import write_json_atomic

if TYPE_CHECKING:  # the readers load pydicom and rasterio: imported where a file is decoded, so that
    # finetune (which only copies these params into meta.json) never imports them (DESIGN: decode once)
    from medvit.io.dicom import DicomFile, DicomOptions
    from medvit.io.geotiff import SceneInfo

PREPROCESS_FILE = "preprocess.json"  # in the ingest cache, beside stats.json
FORMAT = 1  # version of the JSON layout below; bumped on an incompatible change
DOMAINS = ("medical", "satellite")


def letterbox(image: np.ndarray, size: int) -> np.ndarray:
    """Resize (C, H, W) to fit ``size`` x ``size`` keeping the aspect ratio, zero (black) padding, centred.

    Downscaling is anti-aliased in two steps: an exact box average over whole
    k x k blocks (k = the integer part of the ratio; edge rows/columns repeated
    to fill the last block), then bilinear for the remaining ratio below 2. Its
    values stay within ~0.001 (mean) of a one-pass area resample, at a tenth of
    the cost: the one-pass filter was the ingest's most expensive step.
    Upscaling is bilinear.
    """
    c, h, w = image.shape
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    out = np.zeros((c, size, size), dtype=np.float32)
    top, left = (size - nh) // 2, (size - nw) // 2
    kh, kw = max(1, h // nh), max(1, w // nw)
    ph, pw = (-h % kh, -w % kw) if kh > 1 or kw > 1 else (0, 0)
    for k in range(c):
        plane = np.ascontiguousarray(image[k], dtype=np.float32)
        if kh > 1 or kw > 1:
            # Integer factors take OpenCV's exact block-average path for INTER_AREA.
            plane = _block_average(plane, kh, kw, ph, pw)
        if ph or pw:
            # The last block holds repeated edge pixels: map output pixel centres onto the
            # h / kh x w / kw of real content, not onto the padded block grid.
            sy, sx = h / kh / nh, w / kw / nw
            inverse = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5]])
            plane = cv2.warpAffine(plane, inverse, (nw, nh), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                   borderMode=cv2.BORDER_REPLICATE)
        elif plane.shape != (nh, nw):
            plane = cv2.resize(plane, (nw, nh), interpolation=cv2.INTER_LINEAR)
        out[k, top:top + nh, left:left + nw] = plane
    return np.clip(out, 0.0, 1.0, out=out)


def _block_average(plane: np.ndarray, kh: int, kw: int, ph: int, pw: int) -> np.ndarray:
    """INTER_AREA kh x kw block means of ``plane`` padded by ``ph`` rows, ``pw`` columns of repeated edges.

    Bit for bit as padding the whole plane (``cv2.copyMakeBorder``), but only the last partial block row
    and column are padded: copying the plane was ~3 % of a 2,500 x 3,000 radiograph's ingest CPU time.
    """
    h, w = plane.shape
    if (kh, kw) == (2, 2):  # OpenCV's SIMD 2 x 2 path sums in another order than its tail: keep one width
        if ph or pw:
            plane = cv2.copyMakeBorder(plane, 0, ph, 0, pw, cv2.BORDER_REPLICATE)
        return cv2.resize(plane, ((w + pw) // kw, (h + ph) // kh), interpolation=cv2.INTER_AREA)
    h0, w0 = h - (kh - ph if ph else 0), w - (kw - pw if pw else 0)  # the whole blocks (>= 1 each way)
    m, n = h0 // kh, w0 // kw
    out = np.empty(((h + ph) // kh, (w + pw) // kw), np.float32)
    out[:m, :n] = cv2.resize(plane[:h0, :w0], (n, m), interpolation=cv2.INTER_AREA)
    if pw:
        right = cv2.copyMakeBorder(plane[:h0, w0:], 0, 0, 0, pw, cv2.BORDER_REPLICATE)
        out[:m, n:] = cv2.resize(right, (1, m), interpolation=cv2.INTER_AREA)
    if ph:
        bottom = cv2.copyMakeBorder(plane[h0:], 0, ph, 0, pw, cv2.BORDER_REPLICATE)
        out[m:] = cv2.resize(bottom, (out.shape[1], 1), interpolation=cv2.INTER_AREA)
    return out


@dataclass(frozen=True)
class Chip:
    """One satellite chip cut from a scene's strip: cache-scaled pixels before the nodata fill."""

    image: np.ndarray           # (C, t, t) float32, nodata samples 0
    valid: np.ndarray           # (C, t, t) bool
    pixel_ok: np.ndarray        # (t, t): every selected band valid
    nodata_fraction: float


def cut_chip(values: np.ndarray, valid: np.ndarray, r: int, x: int, size: int) -> Chip:
    """The ``size`` x ``size`` chip at strip row ``r``, column ``x`` of (C, h, W) ``values`` and ``valid``."""
    ok = valid[:, r:r + size, x:x + size]
    pixel_ok = ok.all(0)
    return Chip(np.ascontiguousarray(values[:, r:r + size, x:x + size]), ok, pixel_ok,
                float(1.0 - pixel_ok.mean()))


def fill_nodata(image: np.ndarray, valid: np.ndarray, mean: Sequence[float]) -> np.ndarray:
    """A copy of (C, H, W) ``image`` with its invalid samples set to the per-band ``mean`` (float32, as ingest)."""
    value = np.asarray(mean, dtype=np.float32)[:, None, None]
    return np.where(valid, image, np.broadcast_to(value, image.shape)).astype(np.float32)


@dataclass(frozen=True)
class Item:
    """One model input decoded from a file: a DICOM frame, an image, or a satellite chip."""

    id: str                     # "" for a single image, "frame:<k>" for a multi-frame DICOM, the tile id of a chip
    image: np.ndarray | None    # (C, H, W) cache-scaled float32; None with ``error``
    bounds: str = ""            # chip bounds (left bottom right top, in ``crs``); "" for images
    crs: str = ""
    error: str = ""             # the reject reason ingest gives, "" when usable


@dataclass(frozen=True)
class Preprocessor:
    """Raw file -> cache-scaled (C, H, W) -> normalised model input, from plain params.

    Attributes:
        domain: ``medical`` or ``satellite``.
        size: the cache's image side (``ingest.medical.image_size`` or ``ingest.satellite.tile_size``).
        dicom: ``ingest.medical`` decode params (``DicomOptions`` fields); empty for satellite.
        bands: selected bands, 1-based indexes or band names (satellite; ``ingest.satellite.bands``).
        scale: reflectance scale, None for the dtype default (satellite).
        stride: chip grid step (satellite).
        max_nodata_fraction: chips above it are dropped by ingest (satellite).
        fill: train-split band mean that nodata samples are filled with (satellite; ``stats.json``).
        model: ``img_size``, ``in_chans``, ``mean``, ``std``, ``interpolation``; empty before finetune.
    """

    domain: str
    size: int
    dicom: dict[str, Any] = field(default_factory=dict)
    bands: tuple[int | str, ...] = ()
    scale: float | None = None
    stride: int = 0
    max_nodata_fraction: float = 1.0
    fill: tuple[float, ...] = ()
    model: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ building and saving
    @classmethod
    def from_params(cls, cfg: IngestConfig, domain: str, stats: Mapping[str, Any] | None = None) -> Preprocessor:
        """The decode part from ``ingest.<domain>`` (only that section is read) and the cache's ``stats``."""
        if domain == "medical":
            from medvit.io.dicom import DicomOptions

            m = cfg.medical
            opts = DicomOptions(voi=m.voi, window=m.window, percentiles=m.percentiles, multiframe=m.multiframe,
                                allow_burned_in=m.allow_burned_in)
            return cls(domain, m.image_size, dicom=_plain(asdict(opts)))
        if domain == "satellite":
            s = cfg.satellite
            fill = tuple(float(v) for v in stats["mean"]) if stats and "mean" in stats else ()
            return cls(domain, s.tile_size, bands=tuple(s.bands), scale=s.scale, stride=s.stride,
                       max_nodata_fraction=s.max_nodata_fraction, fill=fill)
        raise ValueError(f"unknown domain {domain!r}; expected one of {DOMAINS}")

    def with_model(self, img_size: int, mean: Sequence[float], std: Sequence[float],
                   interpolation: str = "bilinear") -> Preprocessor:
        """This preprocessor with the classifier's input transform (finetune's evaluation transform)."""
        return replace(self, model={"img_size": int(img_size), "in_chans": len(mean),
                                    "mean": [float(v) for v in mean], "std": [float(v) for v in std],
                                    "interpolation": str(interpolation)})

    def to_json(self) -> dict[str, Any]:
        """Plain JSON params (the cache's ``preprocess.json``, the ``preprocess`` entry of meta.json)."""
        return {"format": FORMAT, **_plain(asdict(self))}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Preprocessor:
        """Rebuild from :meth:`to_json` output.

        Raises:
            ValueError: an unknown layout version or domain.
        """
        data = dict(data)
        if data.pop("format", None) != FORMAT:
            raise ValueError(f"preprocess params of an unknown format (this code reads format {FORMAT}); "
                             "re-run ingest and finetune")
        if data.get("domain") not in DOMAINS:
            raise ValueError(f"preprocess params of unknown domain {data.get('domain')!r}")
        return cls(**{**data, "dicom": _plain(dict(data.get("dicom") or {})), "bands": tuple(data.get("bands", ())),
                      "fill": tuple(data.get("fill", ()))})

    # ------------------------------------------------------------------ medical
    @property
    def dicom_options(self) -> DicomOptions:
        """The ``read_frames`` options (``ingest.medical``)."""
        from medvit.io.dicom import DicomOptions

        opts = dict(self.dicom)
        if opts.get("window") is not None:
            opts["window"] = tuple(opts["window"])
        if "percentiles" in opts:
            opts["percentiles"] = tuple(opts["percentiles"])
        return DicomOptions(**opts)

    def read_dicom(self, path: str | Path) -> tuple[DicomFile, Iterator[tuple[int, np.ndarray]]]:
        """Header and lazy (frame, (1, H, W) [0, 1]) iterator of a DICOM file, as ingest decodes it.

        Raises:
            DicomReject: the file's reject reason.
        """
        return _io("dicom").read_frames(path, self.dicom_options)

    def to_cache(self, image: np.ndarray) -> np.ndarray:
        """A decoded (C, H, W) [0, 1] medical image letterboxed to the cache size."""
        return letterbox(image, self.size)

    def too_small(self, height: int, width: int) -> str | None:
        """The error for an image with a side under half the model's input size (a 1 x 1 image would be
        upscaled and scored like any other), else None; never for a preprocessor without a model part (ingest)."""
        size = int(self.model.get("img_size", 0))
        if min(height, width) * 2 >= size:
            return None
        return f"too small: {height}x{width} pixels, at least half the model's input size {size} per side"

    # ------------------------------------------------------------------ satellite
    def probe(self, path: str | Path) -> SceneInfo:
        """A scene's header, checked for the selected bands.

        Raises:
            RasterReject: not a raster, band count mismatch, mixed dtypes.
        """
        return _io("geotiff").probe(path, self.bands, self.scale)

    def size_reject(self, info: SceneInfo) -> str | None:
        """Ingest's reject reason for a scene smaller than one chip, else None."""
        if info.height < self.size or info.width < self.size:
            return (f"smaller than a tile: {info.height}x{info.width} pixels, "
                    f"ingest.satellite.tile_size is {self.size}")
        return None

    def read_strip(self, path: str | Path, info: SceneInfo, row0: int, row1: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows [row0, row1) of the selected bands, scaled, with the valid mask (see ``medvit.io.geotiff``)."""
        return _io("geotiff").read_strip(path, info.bands, row0, row1, info.scale)

    def too_much_nodata(self, chip: Chip) -> bool:
        """Whether ingest drops ``chip`` (``ingest.satellite.max_nodata_fraction``)."""
        return chip.nodata_fraction > self.max_nodata_fraction

    def chips(self, path: str | Path, stem: str = "scene") -> list[Item] | str:
        """Every chip of a whole scene (or one chip-sized file) on ingest's grid, nodata filled; or the reject.

        A chip ingest would drop for nodata comes back with an ``error``, so a
        caller answers every grid cell.
        """
        geotiff = _io("geotiff")
        try:
            info = self.probe(path)
            if (reason := self.size_reject(info)) is not None:
                return reason
            values, valid = self.read_strip(path, info, 0, info.height)
        except geotiff.RasterReject as err:
            return str(err)
        except MemoryError:  # a few MB of sparse tiles can declare a scene of terabytes
            return "too large to decode: MemoryError"
        if not self.fill:
            return "model has no nodata fill values: re-run ingest and finetune"
        if not valid.all(0).any():
            return "all nodata: every pixel of the selected bands is nodata or NaN"
        items = []
        for y, x in tile_grid(info.height, info.width, self.size, self.stride):
            chip = cut_chip(values, valid, y, x, self.size)
            geometry = geotiff.chip_geometry(info, y, x, self.size)
            cid = tile_id(stem, y, x)
            if self.too_much_nodata(chip):
                items.append(Item(cid, None, geometry["bounds"], geometry["crs"],
                                  f"too much nodata: {chip.nodata_fraction:.0%} of the chip, "
                                  f"ingest.satellite.max_nodata_fraction is {self.max_nodata_fraction:g}"))
                continue
            image = fill_nodata(chip.image, chip.valid, self.fill)
            items.append(Item(cid, image, geometry["bounds"], geometry["crs"]))
        return items

    # ------------------------------------------------------------------ raw bytes
    def decode(self, data: bytes, name: str = "") -> list[Item] | str:
        """Cache-scaled items of one raw file, or the reject reason ingest gives for it.

        Medical: PNG/JPEG (sniffed) or DICOM Part 10, one item per kept frame.
        Satellite: a GeoTIFF chip or scene, one item per chip (``chips``).
        """
        if not data:
            return "empty file"
        if self.domain == "satellite":
            with _spooled(data, ".tif") as path:
                return self.chips(path, Path(name).stem or "scene")
        if sniff_format_bytes(data) is not None:
            image_io = _io("image")
            try:
                image, _ = image_io.decode_image(data)
            except image_io.ImageReject as err:
                return str(err)
            return self.too_small(*image.shape[1:]) or [Item("", self.to_cache(image))]
        with _spooled(data, ".dcm") as path:
            try:
                info, frames = self.read_dicom(path)
                many = info.n_frames > 1 and self.dicom_options.multiframe == "all"
                return [Item(f"frame:{k}" if many else "", None, error=small)
                        if (small := self.too_small(*img.shape[1:])) else
                        Item(f"frame:{k}" if many else "", self.to_cache(img)) for k, img in frames]
            except _io("dicom").DicomReject as err:
                return str(err)
            except MemoryError:
                return "too large to decode: MemoryError"
            except Exception as err:  # noqa: BLE001 - as ingest: one bad file never fails the batch
                return f"decode failed: unexpected {type(err).__name__}"

    # ------------------------------------------------------------------ model input
    def to_model_input(self, images: np.ndarray) -> torch.Tensor:
        """(N, C, H, W) or (C, H, W) cache-scaled float32 -> (N, C, img_size, img_size) normalised tensor.

        Raises:
            ValueError: no model part (a preprocessor straight from ingest).
        """
        if not self.model:
            raise ValueError("this preprocessor has no model input part; build it with with_model()")
        m = self.model
        transform = eval_transform(int(m["img_size"]), m["mean"], m["std"], m.get("interpolation", "bilinear"))
        x = np.asarray(images, dtype=np.float32)
        x = x[None] if x.ndim == 3 else x
        return torch.from_numpy(np.stack([transform(img) for img in x])) if len(x) else torch.zeros(
            (0, len(m["mean"]), int(m["img_size"]), int(m["img_size"])))


def sniff_format_bytes(data: bytes) -> str | None:
    """``PNG`` or ``JPEG`` from a file's first bytes, else None (``medvit.io.image`` signatures)."""
    from medvit.io.image import JPEG_SIGNATURE, PNG_SIGNATURE

    if data.startswith(PNG_SIGNATURE):
        return "PNG"
    if data.startswith(JPEG_SIGNATURE):
        return "JPEG"
    return None


def _io(name: str) -> Any:
    """``medvit.io.<name>``, imported on first use (see the TYPE_CHECKING block)."""
    import importlib

    return importlib.import_module(f"medvit.io.{name}")


@contextmanager
def _spooled(data: bytes, suffix: str) -> Iterator[str]:
    """``data`` in a private temporary file (mode 0600), deleted on exit."""
    fd, path = tempfile.mkstemp(prefix="medvit-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        yield path
    finally:
        os.unlink(path)


def _plain(value: Any) -> Any:
    """Tuples to lists, recursively (JSON)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def write_preprocessor(cache_dir: str | Path, prep: Preprocessor) -> Path:
    """Write ``prep`` as ``<cache_dir>/preprocess.json`` (plain JSON)."""
    path = Path(cache_dir) / PREPROCESS_FILE
    write_json_atomic(path, prep.to_json())
    return path


def read_preprocessor(cache_dir: str | Path) -> Preprocessor | None:
    """The cache's preprocessor, or None for a cache written before ingest saved one."""
    path = Path(cache_dir) / PREPROCESS_FILE
    if not path.is_file():
        return None
    return Preprocessor.from_json(json.loads(path.read_text()))
