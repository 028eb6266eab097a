"""Satellite source: GeoTIFF scenes under ``<raw>/scenes`` (or ``<raw>``) with label rasters, ``tiles.csv`` or polygons.

The label sources and the area-fraction rule that turns a chip's label pixels or
polygon coverage into labels live in ``medvit.ingest.scene_labels``.

Each scene is first probed (header, band count, label grid; polygons placed on
it), then read as full-width row strips (several tasks per large scene, each under
``STRIP_BYTES``); chips are streamed into shards by the main process, and their
nodata is filled later with the train mean. A scene whose later strip hits a
corrupt block is rejected as a whole; chips of its earlier strips may stay in a
shard as unreferenced rows (counted in report.json as
``unreferenced_cache_rows``), never in the manifest.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medvit.config import IngestConfig, IngestSatellite
from medvit.data.layout import LABEL_NODATA, tile_grid, tile_id
from medvit.data.preprocess import Preprocessor, cut_chip
from medvit.errors import UserError
from medvit.ingest.pixels import channel_sums
from medvit.ingest.scene_labels import (TileLabels, VectorLabels, coverage_chip_labels, default_labels,
                                        raster_chip_labels, read_tile_labels)
from medvit.ingest.pool import parallel_map, worker_count, worker_state
from medvit.ingest.source import CacheInfo, Collected, Plan, Sample, Source, TaskResult, find_files, relative_keys
from medvit.ingest.writers import NodataMasks, StreamingShardWriter
from medvit.io.geotiff import RasterReject, SceneInfo, chip_geometry, label_grid_differs, read_label_strip
from medvit.io.vector import PixelPolygon, chip_coverage

log = logging.getLogger(__name__)

STRIP_BYTES = 64 << 20  # per-task strip budget (values + mask + native copy)


# --------------------------------------------------------------------------- workers
@dataclass(frozen=True)
class ScenesWorkerState:
    """What every satellite worker needs, installed once per process."""

    cfg: IngestSatellite
    label_names: tuple[str, ...]
    prep: Preprocessor          # band selection, scaling, chip rule (ingest.satellite), shared with the served model


@dataclass(frozen=True)
class SceneProbe:
    """One scene to check before planning its strips."""

    key: str                        # path relative to raw
    path: str
    label_path: str | None          # its label raster; None with tiles.csv or polygons


@dataclass(frozen=True)
class StripTask:
    """Rows [row0, row1) of one scene and the chip origins (y, x) it owns."""

    key: str
    path: str
    label_path: str | None
    scene: SceneInfo
    row0: int
    row1: int
    chips: tuple[tuple[int, int], ...]
    tile_labels: dict[tuple[int, int], np.ndarray] | None  # tiles.csv labels of ``chips``; None: raster, polygons
    polygons: tuple[PixelPolygon, ...] | None = None        # polygons reaching into the strip (label_source: vector)


def probe_scene(task: SceneProbe) -> tuple[str, SceneInfo | None, str | None]:
    """Header check of one scene (and its label raster's grid): (key, SceneInfo or None, reject)."""
    prep = worker_state(ScenesWorkerState).prep
    try:
        info = prep.probe(task.path)
        if task.label_path is not None:
            if not Path(task.label_path).is_file():
                return task.key, None, "no labels: no label raster with the same name"
            label_grid_differs(info, task.label_path)  # rejects grids that cannot be warped onto the scene
        reason = prep.size_reject(info)
        return task.key, None if reason else info, reason
    except RasterReject as err:
        return task.key, None, str(err)


def decode_strip(task: StripTask) -> TaskResult:
    """Read one strip of a scene, cut its chips, label them, drop mostly-nodata chips."""
    state = worker_state(ScenesWorkerState)
    cfg, n_classes = state.cfg, len(state.label_names)
    t = cfg.tile_size
    stem = Path(task.key).stem
    result = TaskResult(key=task.key, source=task.key)
    try:
        values, valid = state.prep.read_strip(task.path, task.scene, task.row0, task.row1)
        label_strip = None
        if task.label_path is not None:
            warp = label_grid_differs(task.scene, task.label_path)
            label_strip = read_label_strip(task.label_path, task.row0, task.row1, task.scene if warp else None)
    except RasterReject as err:
        result.reject = str(err)
        return result
    result.counters["valid_pixels"] += int(valid.all(0).sum())
    if label_strip is not None:
        bad = np.unique(label_strip[(label_strip != LABEL_NODATA) & (label_strip >= n_classes)])
        if bad.size:
            result.reject = (f"label value out of range: class index {int(bad[0])} in the label raster, "
                             f"ingest.satellite.label_names has {n_classes} ({LABEL_NODATA} = nodata)")
            return result
    for y, x in task.chips:
        chip = cut_chip(values, valid, y - task.row0, x, t)
        r, ok, pixel_ok = y - task.row0, chip.valid, chip.pixel_ok  # pixel_ok (t, t): all selected bands valid
        if state.prep.too_much_nodata(chip):
            result.counters["chips_dropped_nodata"] += 1
            continue
        # Pixel nodata counts as label nodata: a class's share is of the pixels the model sees.
        if label_strip is not None:
            labels = raster_chip_labels(label_strip[r:r + t, x:x + t], pixel_ok, n_classes, cfg.min_label_fraction)
        elif task.polygons is not None:
            coverage = chip_coverage(task.polygons, n_classes, y, x, t)
            labels = coverage_chip_labels(coverage, pixel_ok, cfg.min_label_fraction)
        else:
            labels = task.tile_labels[(y, x)]  # type: ignore[index]
        if labels is None:
            result.counters["chips_dropped_unlabelled"] += 1
            continue
        image = chip.image
        mask = None if ok.all() else np.packbits(~ok).tobytes()
        # Split group: the scene, or its spatial block (chips overlapping a block edge when stride <
        # tile_size can share border pixels with the neighbouring block; use block >> tile_size).
        block = cfg.group_block
        group = stem if block is None else f"{stem}_b{y // block:03d}_{x // block:03d}"
        meta = {"id": tile_id(stem, y, x), "group": group, "source": task.key, "scene": stem,
                "y": y, "x": x, **chip_geometry(task.scene, y, x, t), "scale": task.scene.scale,
                "nodata_fraction": round(float(1.0 - pixel_ok.mean()), 6), "month": task.scene.month}
        result.samples.append(Sample(image=image, meta=meta, labels=labels, sums=channel_sums(image, ok), mask=mask))
    return result


def plan_strips(key: str, path: str, label_path: str | None, info: SceneInfo, t: int, stride: int,
                tile_labels: dict[tuple[int, int], np.ndarray] | None, n_bands: int,
                polygons: tuple[PixelPolygon, ...] | None = None) -> list[StripTask]:
    """Partition a scene's rows into strips of bounded size; each strip owns the chips starting in it."""
    chips = tile_grid(info.height, info.width, t, stride) if tile_labels is None else sorted(tile_labels)
    rows_budget = max(t, STRIP_BYTES // max(1, info.width * n_bands * 8))
    step = max(stride, rows_budget // stride * stride)
    tasks = []
    for row0 in range(0, info.height, step):
        row1 = min(info.height, row0 + step)
        owned = tuple((y, x) for y, x in chips if row0 <= y < row1)
        read1 = min(info.height, max([row1, *(y + t for y, _ in owned)]))
        labels = {c: tile_labels[c] for c in owned} if tile_labels is not None else None
        near = None if polygons is None else tuple(p for p in polygons if p.bbox[2] > row0 and p.bbox[0] < read1)
        tasks.append(StripTask(key, path, label_path, info, row0, read1, owned, labels, near))
    return tasks


# --------------------------------------------------------------------------- the source
@dataclass
class _Scene:
    """A scene's strips collected so far (the main process keeps it until its last strip is in)."""

    done: int = 0
    reject: str | None = None
    counters: Counter = field(default_factory=Counter)
    written: list[tuple[dict[str, Any], np.ndarray, np.ndarray, tuple[int, int]]] = field(default_factory=list)


class ScenesSource(Source):
    """Multi-band GeoTIFF scenes plus label rasters (``label_source: raster``), ``tiles.csv`` (``csv``) or polygons
    (``vector``)."""

    desc = "ingest satellite"

    def __init__(self, raw: Path, labels: Path, tmp: Path, cfg: IngestConfig) -> None:
        super().__init__(raw, labels, tmp, cfg)
        self.writer = StreamingShardWriter(tmp, cfg.shard_size)
        self.masks = NodataMasks(tmp / "masks.tmp")
        self.scenes: dict[str, _Scene] = {}        # scenes with strips still out, by key
        self.strips: Counter[str] = Counter()       # strip tasks per scene key
        self.counters: Counter[str] = Counter()     # report counts (chips dropped, tiles ignored, orphans)

    @classmethod
    def default_labels(cls, raw: Path, cfg: IngestConfig) -> Path:
        """``<raw>/labels/`` (rasters), ``<raw>/tiles.csv`` (csv), ``<raw>/labels.gpkg`` or ``.geojson`` (vector)."""
        return default_labels(raw, cfg.satellite.label_source)

    def list_inputs(self) -> list[Path]:
        """Every non-hidden file under ``<raw>/scenes`` (or ``<raw>``), labels excluded.

        Raises:
            UserError: no scene, or two scenes with the same file stem (chip ids are keyed by it).
        """
        self.root = self.raw / "scenes" if (self.raw / "scenes").is_dir() else self.raw
        self.files = find_files(self.root, exclude=[self.labels, self.raw / "labels", self.raw / "tiles.csv"])
        if not self.files:
            raise UserError(f"{self.root}: no scene files found")
        stems = Counter(p.stem for p in self.files)
        clash = sorted(s for s, n in stems.items() if n > 1)
        if clash:
            raise UserError(f"{self.root}: several scenes share the name(s) {clash[:5]}; chip ids and label files "
                            "are keyed by file stem, so rename them")
        return self.files

    def read_labels(self) -> tuple[str, ...]:
        """``tiles.csv``, or check the label-raster folder and the class names in params."""
        scfg = self.cfg.satellite
        self.tile_table: TileLabels | None = None
        self.vector: VectorLabels | None = None
        if scfg.label_source == "csv":
            self.tile_table = read_tile_labels(self.labels, scfg.label_names)
            return self.tile_table.label_names
        if not scfg.label_names:
            raise UserError(f"ingest.satellite.label_names is empty: label {scfg.label_source} data hold class "
                            "indexes or names, so params must name the classes (in index order for rasters)")
        if scfg.label_source == "vector":
            self.vector = VectorLabels(self.labels, scfg.vector_class_field, scfg.label_names)
            return scfg.label_names
        if not self.labels.is_dir():
            raise FileNotFoundError(f"{self.labels}: label-raster folder not found; pass --labels DIR "
                                    "(or set ingest.satellite.label_source: csv or vector and pass its file)")
        return scfg.label_names

    def _label_raster(self, scene: Path) -> str | None:
        if self.tile_table is not None or self.vector is not None:
            return None
        hits = sorted(self.labels.glob(scene.stem + ".tif*")) or sorted(self.labels.glob(scene.stem + ".*"))
        return str(hits[0]) if hits else str(self.labels / (scene.stem + ".tif"))

    def plan(self, col: Collected) -> Plan:
        """Probe every scene (in the pool), reject the unusable ones, cut the rest into row strips."""
        scfg = self.cfg.satellite
        keys = relative_keys(self.files, self.raw)
        label_names = self.tile_table.label_names if self.tile_table is not None else scfg.label_names
        state = ScenesWorkerState(scfg, label_names, Preprocessor.from_params(self.cfg, "satellite"))
        workers = worker_count(self.cfg.workers, len(self.files))
        probes = [SceneProbe(k, str(p), self._label_raster(p)) for k, p in zip(keys, self.files)]
        tasks: list[StripTask] = []
        for k, info, reject in parallel_map(probe_scene, probes, workers, state, "probe scenes",
                                            lambda t, e: (t.key, None, "not a raster: reader crashed")):
            stem = Path(k).stem
            if reject is None and self.tile_table is not None and stem not in self.tile_table.by_scene:
                reject = "no labels: scene not listed in tiles.csv"
            if reject is not None:
                col.reject(k, reject)
                continue
            assert info is not None
            polygons = None
            if self.vector is not None:
                try:
                    polygons = self.vector.for_scene(info)
                except RasterReject as err:
                    col.reject(k, str(err))
                    continue
            tl = self.tile_table.by_scene[stem] if self.tile_table is not None else None
            if tl is not None:
                outside = [c for c in tl if c[0] + scfg.tile_size > info.height or c[1] + scfg.tile_size > info.width]
                if outside:
                    self.counters["tiles_outside_scene"] += len(outside)
                    tl = {c: v for c, v in tl.items() if c not in outside}
            strips = plan_strips(k, str(self.raw / k), self._label_raster(Path(k)), info, scfg.tile_size,
                                 scfg.stride, tl, len(scfg.bands), polygons)
            self.strips[k] = len(strips)
            tasks.extend(strips)
        if self.tile_table is not None:
            present = {Path(k).stem for k in keys}
            self.counters["labels_without_images"] = sum(len(v) for s, v in self.tile_table.by_scene.items()
                                                         if s not in present)
            if self.counters["labels_without_images"]:
                log.warning("%s: %d tile(s) of scenes not found under %s (ignored)", self.labels,
                            self.counters["labels_without_images"], self.root)
        if self.vector is not None:
            self.counters.update(self.vector.counts())
            if self.counters["polygons_outside_scenes"]:
                log.warning("%s: %d polygon(s) outside every scene (ignored)", self.labels,
                            self.counters["polygons_outside_scenes"])
        if self.counters["tiles_outside_scene"]:
            log.warning("%s: %d tile(s) extend beyond their scene (ignored)", self.labels,
                        self.counters["tiles_outside_scene"])
        # One strip per task: a strip is already up to STRIP_BYTES of pixels.
        return Plan(tasks, decode_strip, state, self.isolate, workers, max_chunk=1)

    @staticmethod
    def isolate(task: StripTask, err: BaseException) -> TaskResult:
        """The reject of a strip that killed its worker."""
        return TaskResult(key=task.key, source=task.key, reject="unreadable block: reader crashed")

    def collect(self, res: TaskResult, col: Collected) -> None:
        """Write the strip's chips; once the scene's last strip is in, keep or reject the scene."""
        scene = self.scenes.setdefault(res.key, _Scene())
        scene.done += 1
        scene.counters.update(res.counters)
        if scene.reject is None and res.reject is not None:
            scene.reject = res.reject
        if scene.reject is None:
            for s in res.samples:
                loc = self.writer.add(s.image)  # type: ignore[arg-type]
                if s.mask is not None:
                    self.masks.add(loc, s.mask)
                scene.written.append(({**s.meta, "shard": loc[0], "index": loc[1]}, s.labels, s.sums, loc))
        if scene.done == self.strips[res.key]:
            self._close_scene(res.key, scene, col)
            del self.scenes[res.key]

    def _close_scene(self, key: str, scene: _Scene, col: Collected) -> None:
        counters, reject = scene.counters, scene.reject
        if reject is None and not scene.written:
            if counters["valid_pixels"] == 0:
                reject = "all nodata: every pixel of the selected bands is nodata or NaN"
            else:
                reject = (f"no usable chips: {counters['chips_dropped_nodata']} chip(s) over "
                          f"ingest.satellite.max_nodata_fraction, {counters['chips_dropped_unlabelled']} unlabelled")
        if reject is not None:
            col.reject(key, reject)
            self.counters["orphans"] += len(scene.written)
            for *_, loc in scene.written:
                self.masks.discard(loc)
            return
        col.n_ingested += 1
        # Chip counts of ingested scenes only; a rejected scene is accounted for by its reason.
        self.counters.update({k: v for k, v in counters.items() if k != "valid_pixels"})
        for row, labels, sums, _ in scene.written:
            col.add(row, labels, sums)

    def cache_info(self, col: Collected) -> CacheInfo:
        """The selected bands; report extras: chips dropped, tiles ignored, unreferenced cache rows."""
        self.writer.flush()
        extra = {"chips_dropped_nodata": self.counters["chips_dropped_nodata"],
                 "chips_dropped_unlabelled": self.counters["chips_dropped_unlabelled"],
                 "tiles_outside_scene": self.counters["tiles_outside_scene"],
                 "labels_without_images": self.counters["labels_without_images"],
                 "polygons_outside_scenes": self.counters["polygons_outside_scenes"],
                 "polygons_without_geometry": self.counters["polygons_without_geometry"],
                 "unreferenced_cache_rows": self.counters["orphans"],
                 "nodata_fill": "train-split band mean (normalises to 0)"}
        return CacheInfo(channels=list(self.cfg.satellite.channel_names), size=self.cfg.satellite.tile_size, extra=extra)

    def fill_nodata(self, mean: np.ndarray) -> None:
        """Set the masked pixels of the cached chips to the train-split band ``mean``."""
        if len(self.masks):
            self.masks.fill(self.tmp, mean)

    def close(self) -> None:
        """Delete the temporary masks file."""
        self.masks.close()
