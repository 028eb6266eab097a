"""Shared machinery of the patch sources (BigEarthNet, EuroSAT): one sample per patch, no chipping.

A patch is one or more GeoTIFFs holding its bands (BigEarthNet: one file per
band at 10, 20 or 60 m; EuroSAT: one 13-band file). A worker reads the selected
bands, checks they cover the same ground, resamples every band bilinearly
(reflectance) onto the grid of the finest selected band and writes the image
into its block's part files, as the medical source does: no pixels cross the
result pipe, and the main process renames parts into shards in input order, so
the cache is byte-identical for any number of workers. A subclass lists the
patches, reads their labels and turns each into a :class:`PatchTask`, or a
reject reason.
"""

from __future__ import annotations

import os
from abc import abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from medvit.config import IngestConfig
from medvit.data.cache import SHARD_DIR
from medvit.ingest.pixels import channel_sums
from medvit.ingest.pool import worker_count, worker_state
from medvit.ingest.source import CacheInfo, Collected, Plan, Sample, Source, TaskResult
from medvit.ingest.writers import NodataMasks, adopt_parts, block_size, decode_into_parts
from medvit.io.geotiff import BandStack, RasterReject, SceneInfo, chip_geometry, gdal_session, read_bands

# Band footprints agree when their bounds differ by less than this fraction of the finest pixel.
EXTENT_TOLERANCE = 0.01


@dataclass(frozen=True)
class BandFile:
    """Where one selected band of a patch lies (found by the worker)."""

    name: str                       # canonical band name (B02, B8A, ...)
    path: str
    index: int = 1                  # 1-based band in the file


@dataclass(frozen=True)
class PatchTask:
    """One patch to decode into one sample."""

    key: str                        # the patch (folder or file) relative to raw: the source column
    path: str                       # the patch folder (one file per band) or its one multi-band file
    labels: np.ndarray              # (L,) 0/1
    meta: dict[str, Any]            # id, group and provenance columns (country, month, class, ...)


@dataclass(frozen=True)
class PatchWorkerState:
    """What every patch worker needs, installed once per process."""

    shard_dir: str
    shard_size: int
    size: int                       # output grid: the finest selected band's patch size (pixels)
    scale: float | None             # DN -> reflectance; None: by dtype
    fmt: str                        # the format's name, for messages
    bands: tuple[str, ...]          # the selected bands' names, in channel order
    indexes: tuple[int, ...] | None  # their 1-based bands in a patch's one file; None: ``<patch>_<band>.tif`` each


@dataclass(frozen=True)
class PatchBlock:
    """Consecutive patches one worker decodes and writes as its own shard part(s)."""

    name: str
    tasks: tuple[PatchTask, ...]


@dataclass
class PatchBlockResult:
    """A block's per-patch results (no pixels) and the part files holding its images, in order."""

    results: list[TaskResult]
    parts: list[tuple[str, int]] = field(default_factory=list)


def _bounds(stack: BandStack) -> tuple[float, float, float, float]:
    a, _, c, _, e, f = stack.transform
    h, w = stack.values.shape[1:]
    return c, f, c + a * w, f + e * h


def _resample(values: np.ndarray, valid: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(h, w) band -> (size, size): bilinear values; a pixel stays valid only if all its source pixels were."""
    if values.shape == (size, size):
        return values, valid
    out = cv2.resize(values, (size, size), interpolation=cv2.INTER_LINEAR)
    ok = cv2.resize(valid.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR) >= 1.0 - 1e-6
    return out, ok


def locate_bands(task: PatchTask, state: PatchWorkerState) -> list[BandFile]:
    """The selected bands' files: the patch's one file, or ``<patch>_<band>.tif`` in its folder.

    Raises:
        RasterReject: band files missing (named).
    """
    if state.indexes is not None:
        return [BandFile(b, task.path, i) for b, i in zip(state.bands, state.indexes)]
    patch = os.path.basename(task.path)
    present = set(os.listdir(task.path))
    found, missing = [], []
    for band in state.bands:
        name = next((n for n in (f"{patch}_{band}{ext}" for ext in (".tif", ".tiff", ".TIF")) if n in present), None)
        if name is None:
            missing.append(band)
        else:
            found.append(BandFile(band, os.path.join(task.path, name)))
    if missing:
        raise RasterReject("missing band", f"{', '.join(missing)} (no {patch}_{missing[0]}.tif)")
    return found


def read_patch(task: PatchTask, state: PatchWorkerState) -> tuple[np.ndarray, np.ndarray, BandStack]:
    """(C, size, size) values and valid mask of a patch's selected bands, and the finest band's read.

    Raises:
        RasterReject: an unreadable band file, a missing band, bands on different footprints or CRSs,
            or a finest band that is not ``size`` x ``size``.
    """
    files = locate_bands(task, state)
    by_path: dict[str, list[BandFile]] = {}
    for band in files:
        by_path.setdefault(band.path, []).append(band)
    planes: dict[str, tuple[np.ndarray, np.ndarray, BandStack]] = {}
    for path, bands in by_path.items():
        try:
            stack = read_bands(path, tuple(b.index for b in bands), state.scale, tuple(b.name for b in bands))
        except RasterReject as err:
            # Name the band a one-band-per-file layout failed on.
            which = bands[0].name if len(by_path) > 1 else ""
            raise RasterReject(err.reason, f"{which} {err.detail}".strip()) from None
        for k, band in enumerate(bands):
            planes[band.name] = (stack.values[k], stack.valid[k], stack)
    finest = max(planes.values(), key=lambda p: p[0].size)[2]
    h, w = finest.values.shape[1:]
    if (h, w) != (state.size, state.size):
        raise RasterReject("unexpected size", f"{h}x{w} px, {state.fmt} patches of the selected bands are "
                                              f"{state.size}x{state.size}")
    pixel = abs(finest.transform[0]) or 1.0
    ref = _bounds(finest)
    for name, (_, _, stack) in planes.items():
        if stack.crs != finest.crs:
            raise RasterReject("band grid mismatch", f"{name} has CRS {stack.crs or 'none'}, not {finest.crs}")
        if max(abs(p - q) for p, q in zip(_bounds(stack), ref)) > EXTENT_TOLERANCE * pixel:
            raise RasterReject("band grid mismatch", f"{name} covers other ground than the finest band")
    values = np.empty((len(files), state.size, state.size), np.float32)   # (C, H, W)
    valid = np.empty(values.shape, bool)
    for c, band in enumerate(files):
        values[c], valid[c] = _resample(*planes[band.name][:2], state.size)
    return values, valid, finest


def decode_patch(task: PatchTask) -> TaskResult:
    """Read one patch into one sample (or its reject reason)."""
    state = worker_state(PatchWorkerState)
    result = TaskResult(key=task.key, source=task.key)
    try:
        image, valid, finest = read_patch(task, state)
    except RasterReject as err:
        result.reject = str(err)
        return result
    except (OSError, ValueError, MemoryError) as err:  # e.g. the patch folder vanished
        result.reject = f"decode failed: {type(err).__name__}"
        return result
    if not valid.any():
        result.reject = "all nodata: every pixel of the selected bands is nodata or NaN"
        return result
    scene = SceneInfo(state.size, state.size, finest.count, "", finest.crs, finest.transform, 1.0)
    meta = {**task.meta, "source": task.key, **chip_geometry(scene, 0, 0, state.size),
            "nodata_fraction": round(float(1.0 - valid.all(0).mean()), 6)}
    mask = None if valid.all() else np.packbits(~valid).tobytes()
    result.samples.append(Sample(image=image, meta=meta, labels=task.labels, sums=channel_sums(image, valid),
                                 mask=mask))
    return result


def decode_patch_block(block: PatchBlock) -> PatchBlockResult:
    """Decode every patch of ``block`` and write its images into part files in the shard folder."""
    state = worker_state(PatchWorkerState)
    with gdal_session():
        return PatchBlockResult(*decode_into_parts(Path(state.shard_dir), state.shard_size, block.name,
                                                   block.tasks, decode_patch))


def split_patch_block(block: PatchBlock) -> list[PatchBlock]:
    """One block per patch, for re-running a block whose worker died."""
    return [PatchBlock(f"{block.name}-{i:05d}", (task,)) for i, task in enumerate(block.tasks)]


class PatchSource(Source):
    """A data set of small multi-band patches, one sample each; subclasses list, label and locate the bands."""

    fmt: str = ""                       # the format's name (messages)

    def __init__(self, raw: Path, labels: Path, tmp: Path, cfg: IngestConfig) -> None:
        super().__init__(raw, labels, tmp, cfg)
        self.masks = NodataMasks(tmp / "masks.tmp")
        self.official: dict[str, str] = {}     # patch id -> official split, with use_official_split
        self.row_splits: list[str] = []
        self.counters: dict[str, int] = {}

    @property
    @abstractmethod
    def band_names(self) -> tuple[str, ...]:
        """The selected bands' canonical names, in channel order."""

    def file_indexes(self) -> tuple[int, ...] | None:
        """The selected bands' 1-based indexes in a patch's one file; None: one file per band."""
        return None

    @abstractmethod
    def patch_size(self) -> int:
        """The output grid (pixels): the size of the finest selected band's patch."""

    @abstractmethod
    def tasks(self) -> list[PatchTask | tuple[str, str]]:
        """Per listed input, in order: its task, or (source, reject reason) when it cannot be decoded."""

    def plan(self, col: Collected) -> Plan:
        """Blocks of consecutive patches, decoded and written by the workers."""
        tasks: list[PatchTask] = []
        for item in self.tasks():
            if isinstance(item, PatchTask):
                tasks.append(item)
            else:
                col.reject(*item)
        self.shard_dir = self.tmp / SHARD_DIR
        self.shard_dir.mkdir(parents=True, exist_ok=True)
        state = PatchWorkerState(str(self.shard_dir), self.cfg.shard_size, self.patch_size(),
                                 self.cfg.satellite.scale, self.fmt, tuple(self.band_names), self.file_indexes())
        step = block_size(len(tasks), self.cfg.shard_size)
        blocks = [PatchBlock(f"{i // step:06d}", tuple(tasks[i:i + step])) for i in range(0, len(tasks), step)]
        self.next_shard = 0
        return Plan(blocks, decode_patch_block, state, self.isolate, worker_count(self.cfg.workers, len(blocks)),
                    max_chunk=1, split=split_patch_block, files=lambda b: len(b.tasks))

    @staticmethod
    def isolate(block: PatchBlock, err: BaseException) -> PatchBlockResult:
        """The reject of a patch that killed its worker (crashed blocks are re-run one patch each)."""
        (task,) = block.tasks
        return PatchBlockResult([TaskResult(key=task.key, source=task.key,
                                            reject="not a raster: reader crashed")])

    def collect(self, block: PatchBlockResult, col: Collected) -> None:
        """Number the block's parts as the next shards (input order), then keep its rows and masks."""
        shards = adopt_parts(block.parts, self.shard_dir, self.tmp, self.next_shard)
        self.next_shard += len(shards)
        for res in block.results:
            if res.reject is not None or not res.samples:
                col.reject(res.source, res.reject or "no samples")
                continue
            col.n_ingested += 1
            for sample in res.samples:
                part, index = sample.loc  # type: ignore[misc]
                loc = (shards[part], index)
                if sample.mask is not None:
                    self.masks.add(loc, sample.mask)
                col.add({**sample.meta, "shard": loc[0], "index": loc[1]}, sample.labels, sample.sums)
                if self.cfg.satellite.use_official_split:
                    self.row_splits.append(self.official[sample.meta["id"]])

    def cache_info(self, col: Collected) -> CacheInfo:
        """The selected bands; the official split per row when asked for; report extras."""
        for leftover in self.shard_dir.glob(".part-*"):  # parts of a block whose worker died
            leftover.unlink()
        extra: dict[str, Any] = {"format": self.fmt, **self.counters,
                                 "split_source": "official" if self.cfg.satellite.use_official_split else "ingest",
                                 "nodata_fill": "train-split band mean (normalises to 0)"}
        splits = tuple(self.row_splits) if self.cfg.satellite.use_official_split else None
        return CacheInfo(channels=list(self.band_names), size=self.patch_size(), extra=extra, splits=splits)

    def fill_nodata(self, mean: np.ndarray) -> None:
        """Set the masked pixels of the cached patches to the train-split band ``mean``."""
        if len(self.masks):
            self.masks.fill(self.tmp, mean)

    def close(self) -> None:
        """Delete the temporary masks file."""
        self.masks.close()
