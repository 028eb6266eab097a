"""Turn raw DICOM / GeoTIFF files into the de-identified, sharded ingest cache.

``ingest(domain, raw, labels, out, cfg)`` is the whole stage:

1. list the input files (recursively, hidden files skipped) and read the labels
   (ChestX-ray14-style CSV, label rasters or a per-tile CSV); label-file problems
   that would make the cache wrong are fatal ``UserError``s naming rows, not values;
2. decode in parallel worker processes (``ingest.workers``; ordered, with a
   bounded number of tasks in flight, so peak memory does not grow with the
   data set); each file ends up with >= 1 manifest rows XOR one ``rejects.csv``
   row. Medical files go in blocks of consecutive files (``block_size``, fixed
   by the file count, not the worker count); each worker writes its block's
   images into its own part files and the main process renames them into
   numbered shards in input order, so no pixels cross the result pipe and the
   cache is byte-identical for any number of workers. Satellite chips are
   streamed into ``StreamingShardWriter`` by the main process (their nodata is
   filled later with the train mean);
3. group-aware multi-label stratified splits (``medvit.data.splits``); groups
   are pseudonyms, so the splits are deterministic for ``ingest.seed`` *and* the
   de-identification key (a new key reshuffles which patient lands where);
4. train-split statistics (medical: every cached pixel, letterbox padding
   included, since the model sees it; satellite: valid pixels only, and nodata
   pixels are then filled with the train mean, so they normalise to exactly 0);
5. write everything into a temporary folder beside ``out`` and move it in with
   ``manifest.csv`` last (``publish``): a killed ingest leaves either the old
   complete outputs or no manifest, never a mix DVC or finetune would accept.

Satellite scenes are processed as full-width row strips (several tasks per
large scene). A scene whose later strip hits a corrupt block is rejected as a
whole; chips of its earlier strips may stay in a shard as unreferenced rows
(counted in report.json as ``unreferenced_cache_rows``), never in the manifest.
"""

from __future__ import annotations

import ctypes
import io
import logging
import multiprocessing as mp
import os
import re
import shutil
import tempfile
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from medvit.config import IngestConfig
from medvit.data.cache import SHARD_DIR, ShardWriter, check_cache_image, shard_path
from medvit.io.atomic import write_json_atomic
from medvit.data.manifest import FIXED_COLUMNS, SPLITS, label_column
from medvit.data.splits import group_splits
from medvit.deid import Pseudonymizer, deidentify, identifiers, load_key
from medvit.errors import UserError
from medvit.io.atomic import atomic_open, atomic_path

if TYPE_CHECKING:  # the readers are imported lazily, so a medical run never loads rasterio
    from medvit.io.geotiff import SceneInfo

log = logging.getLogger(__name__)

NO_FINDING = "No Finding"
OUTPUT_ITEMS: tuple[str, ...] = (SHARD_DIR, "labels.json", "stats.json", "rejects.csv", "report.json", "manifest.csv")
_STRIP_BYTES = 64 << 20  # per-task strip budget (values + mask + native copy)
_IN_FLIGHT_PER_WORKER = 4


# --------------------------------------------------------------------------- results
@dataclass
class Sample:
    """One decoded sample as a worker returns it."""

    image: np.ndarray | None          # (C, H, W) float32, no NaN; None once a worker wrote it (``loc``)
    meta: dict[str, Any]              # id, group, source + provenance columns
    labels: np.ndarray                # (L,) 0/1
    sums: np.ndarray                  # (3, C) float64: sum, sum of squares, count of valid pixels
    mask: bytes | None = None         # packed (C, H, W) nodata mask (satellite), None when all valid
    loc: tuple[int, int] | None = None  # (part, index) in its block's part files (medical)


@dataclass
class TaskResult:
    """What one worker task returns: samples, or the file's reject reason."""

    key: str                          # the input file (relative path)
    source: str                       # PHI-safe source column value
    samples: list[Sample] = field(default_factory=list)
    reject: str | None = None
    counters: Counter = field(default_factory=Counter)
    decoder: tuple[str, str] | None = None  # (transfer syntax name, plugin)


# --------------------------------------------------------------------------- files and labels
def find_files(root: Path, exclude: Iterable[Path] = ()) -> list[Path]:
    """Every non-hidden regular file under ``root``, sorted; ``exclude`` paths (and below) skipped.

    Paths are compared as absolute paths, not resolved (a symlink to the labels file is an input).
    """
    excluded = {os.path.abspath(p) for p in exclude}
    files = []
    for dirpath, dirnames, filenames in os.walk(os.path.abspath(root)):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                             and os.path.join(dirpath, d) not in excluded)
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            if not name.startswith(".") and full not in excluded:
                files.append(Path(full))
    return files


class StreamingShardWriter(ShardWriter):
    """``ShardWriter`` whose flush writes each image straight into the shard file.

    Same ``.npy`` bytes as ``np.save(np.stack(images))``, without the stacked
    copy: peak memory stays at one shard's images instead of two.
    """

    def flush(self) -> None:
        if not self._buf:
            return
        path = shard_path(self.cache_dir, self._shard)
        with atomic_path(path) as tmp:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32,
                                            shape=(len(self._buf), *self._buf[0].shape))
            for i, image in enumerate(self._buf):
                out[i] = image
            del out  # no msync: the rename publishes the file, the page cache writes it back
        self._buf = []
        self._shard += 1


class PartWriter:
    """Stream (C, H, W) float32 images into ``.npy`` part files of at most ``limit`` images each.

    A worker writes its block's samples itself, so no pixels cross the process
    boundary and the main process only renames finished parts into place. The
    header is written first for ``limit`` images and rewritten in place for the
    real count when the part closes (NumPy pads ``.npy`` headers so that the
    first axis can change without moving the data); the bytes equal
    ``np.save(np.stack(images))``.
    """

    def __init__(self, folder: Path, stem: str, limit: int) -> None:
        self.folder, self.stem, self.limit = folder, stem, limit
        self.parts: list[tuple[str, int]] = []   # (file name, number of images), closed parts in order
        self._file: Any = None
        self._shape: tuple[int, ...] = ()
        self._n = 0
        self._header_len = 0

    def add(self, image: np.ndarray) -> tuple[int, int]:
        """Append one image; return its (part, index)."""
        check_cache_image(image)
        if self._file is None or image.shape != self._shape or self._n >= self.limit:
            self._close_part()
            self._open(image.shape)
        self._file.write(np.ascontiguousarray(image).data)
        self._n += 1
        return len(self.parts), self._n - 1

    def close(self) -> list[tuple[str, int]]:
        """Finish the open part; return every part as (file name, number of images)."""
        self._close_part()
        return self.parts

    def abort(self) -> None:
        """Close and delete every part (the block failed; it is re-run file by file)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        for name in [*(n for n, _ in self.parts), self._name()]:
            (self.folder / name).unlink(missing_ok=True)

    def _name(self) -> str:
        return f"{self.stem}-{len(self.parts):03d}.npy"

    def _header(self, n: int) -> bytes:
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False,
                  "shape": (n, *self._shape)})
        return buf.getvalue()

    def _open(self, shape: tuple[int, ...]) -> None:
        self._shape, self._n = shape, 0
        self._file = open(self.folder / self._name(), "wb")  # noqa: SIM115 - closed by _close_part/abort
        self._header_len = self._file.write(self._header(self.limit))

    def _close_part(self) -> None:
        if self._file is None:
            return
        header = self._header(self._n)
        if len(header) != self._header_len:  # pragma: no cover - numpy always pads the shape
            raise RuntimeError("npy header length changed with the image count")
        self._file.seek(0)
        self._file.write(header)
        self._file.close()
        self._file = None
        self.parts.append((self._name(), self._n))


def _rows(indices: Iterable[int]) -> str:
    """CSV row numbers (1 = header) for messages; values may be PHI, row numbers are not."""
    rows = [str(i + 2) for i in indices]
    return ", ".join(rows[:10]) + (f" (+{len(rows) - 10} more)" if len(rows) > 10 else "")


def _split_names(text: str) -> list[str]:
    return [n.strip() for n in str(text).split("|") if n.strip() and n.strip() != NO_FINDING]


def _vocabulary(cells: pd.Series, label_names: Sequence[str], path: Path, column: str) -> tuple[str, ...]:
    """The label names: params when set (unknown names are fatal), else sorted names in the file."""
    found = sorted({n for cell in cells for n in _split_names(cell)})
    if label_names:
        unknown = sorted(set(found) - set(label_names))
        if unknown:
            bad = [i for i, cell in enumerate(cells) if set(_split_names(cell)) & set(unknown)]
            raise UserError(f"{path}: unknown label name(s) {unknown} in column '{column}' (rows {_rows(bad)}); "
                            f"add them to ingest.<domain>.label_names in params.yaml or fix the file")
        return tuple(label_names)
    if not found:
        raise UserError(f"{path}: no label names found in column '{column}' (every row is '{NO_FINDING}' or "
                        "empty); a classifier needs at least one finding")
    return tuple(found)


def _multi_hot(cell: str, names: Sequence[str], index: dict[str, int] | None = None) -> np.ndarray:
    """0/1 vector over ``names`` for a ``|``-separated cell (``index``: a prebuilt name -> position map)."""
    index = index if index is not None else {n: i for i, n in enumerate(names)}
    out = np.zeros(len(names), dtype=np.uint8)
    for n in _split_names(cell):
        out[index[n]] = 1
    return out


def _read_csv(path: Path, required: Sequence[str]) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: labels file not found; pass --labels FILE or run the sample stage")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as err:
        raise UserError(f"{path}: not a readable CSV ({type(err).__name__}); fix or regenerate the labels file")
    frame.columns = [c.strip() for c in frame.columns]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {missing}; expected {list(required)} "
                        f"(found {list(frame.columns)})")
    return frame


@dataclass
class MedicalLabels:
    """Labels CSV matched to files: per file key, its (L,) labels and labels-CSV patient id."""

    label_names: tuple[str, ...]
    by_file: dict[str, tuple[np.ndarray, str]]
    patient_ids: frozenset[str]
    without_images: int


def match_medical_labels(path: Path, files: Sequence[str], label_names: Sequence[str]) -> MedicalLabels:
    """Read a ChestX-ray14-style CSV (``Image Index``, ``Finding Labels``, optional ``Patient ID``).

    ``Image Index`` is matched against file paths relative to the image folder (or
    ``--raw``) when it contains a ``/``, else against file names.

    Raises:
        UserError: missing columns, duplicate or ambiguous ``Image Index``, empty
            ``Finding Labels``, unknown label names, or no row matching any file.
    """
    frame = _read_csv(path, ("Image Index", "Finding Labels"))
    index = frame["Image Index"].str.strip()
    dup = index.duplicated(keep=False)
    if dup.any():
        raise UserError(f"{path}: duplicate 'Image Index' on rows {_rows(np.flatnonzero(dup))}; "
                        "each image must appear once")
    empty = frame["Finding Labels"].str.strip() == ""
    if empty.any():
        raise UserError(f"{path}: empty 'Finding Labels' on rows {_rows(np.flatnonzero(empty))}; "
                        f"write '{NO_FINDING}' for an image without findings")
    names = _vocabulary(frame["Finding Labels"], label_names, path, "Finding Labels")
    pids = frame["Patient ID"].str.strip().tolist() if "Patient ID" in frame.columns else [""] * len(frame)
    by_rel = {f: f for f in files}
    by_name: dict[str, list[str]] = {}
    for f in files:
        by_name.setdefault(f.rpartition("/")[2], []).append(f)  # files are '/'-separated relative paths
    by_file: dict[str, tuple[np.ndarray, str]] = {}
    ambiguous, missing = [], 0
    positions = {n: i for i, n in enumerate(names)}
    for i, (key, cell, pid) in enumerate(zip(index.tolist(), frame["Finding Labels"].tolist(), pids)):
        if key in by_rel:  # an exact relative path wins over a bare file name
            hits = [key]
        elif "/" in key:
            hits = [f for f in files if f.endswith("/" + key)]
        else:
            hits = by_name.get(key, [])
        hits = sorted(set(hits))
        if len(hits) > 1:
            ambiguous.append(i)
        elif not hits:
            missing += 1
        else:
            by_file[hits[0]] = (_multi_hot(cell, names, positions), pid)
    if ambiguous:
        raise UserError(f"{path}: 'Image Index' on rows {_rows(ambiguous)} matches several files; "
                        "use paths relative to the image folder to disambiguate")
    if not by_file and len(frame):
        raise UserError(f"{path}: none of its {len(frame)} 'Image Index' values matches a file under the raw "
                        "folder; check --raw and --labels")
    return MedicalLabels(names, by_file, frozenset(p for p in pids if p), missing)


@dataclass
class TileLabels:
    """tiles.csv: per scene stem, {(y, x): labels}."""

    label_names: tuple[str, ...]
    by_scene: dict[str, dict[tuple[int, int], np.ndarray]]


_TILE = re.compile(r"^(?P<stem>.+)_(?P<y>\d+)_(?P<x>\d+)$")


def read_tile_labels(path: Path, label_names: Sequence[str]) -> TileLabels:
    """Read ``tiles.csv`` (``tile,labels,scene``; tile id ``{scene_stem}_{y:05d}_{x:05d}``).

    Raises:
        UserError: missing columns, duplicate or malformed tile ids, unknown label names.
    """
    frame = _read_csv(path, ("tile", "labels", "scene"))
    tiles = frame["tile"].str.strip()
    dup = tiles.duplicated(keep=False)
    if dup.any():
        raise UserError(f"{path}: duplicate tile ids on rows {_rows(np.flatnonzero(dup))}")
    names = _vocabulary(frame["labels"], label_names, path, "labels")
    by_scene: dict[str, dict[tuple[int, int], np.ndarray]] = {}
    bad = []
    for i, (tile, cell, scene) in enumerate(zip(tiles, frame["labels"], frame["scene"])):
        m = _TILE.match(tile)
        stem = Path(scene.strip()).stem
        if not m or m["stem"] != stem:
            bad.append(i)
            continue
        by_scene.setdefault(stem, {})[(int(m["y"]), int(m["x"]))] = _multi_hot(cell, names)
    if bad:
        raise UserError(f"{path}: rows {_rows(bad)} have a tile id that is not '{{scene_stem}}_{{y:05d}}_{{x:05d}}' "
                        "of their scene")
    return TileLabels(names, by_scene)


# --------------------------------------------------------------------------- workers
_STATE: dict[str, Any] = {}


def tune_malloc() -> None:
    """Let glibc reuse freed image-sized buffers instead of a fresh mmap per array.

    Every decoded frame and its float copies are a few MiB, above glibc's default
    mmap threshold, so each one was mapped, page-faulted in 4 KiB at a time and
    unmapped again: that was ~40% of ingest CPU time. Raising the thresholds
    (mallopt M_MMAP_THRESHOLD / M_TRIM_THRESHOLD) keeps them in the heap; peak
    memory is unchanged. A no-op where the C library is not glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: heap-allocate blocks up to 32 MiB
        libc.mallopt(-1, 64 << 20)  # M_TRIM_THRESHOLD: keep up to 64 MiB of free heap top
    except (OSError, AttributeError):
        pass


def _init_worker(state: dict[str, Any]) -> None:
    """Per-process settings (pseudonymisation key, options); set once per worker."""
    tune_malloc()
    cv2.setNumThreads(1)  # one process per core already; OpenCV's own threads would only compete
    _STATE.clear()
    _STATE.update(state)
    _STATE["pseudo"] = Pseudonymizer(state["key"])


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
            if ph or pw:
                plane = cv2.copyMakeBorder(plane, 0, ph, 0, pw, cv2.BORDER_REPLICATE)
            # Integer factors take OpenCV's exact block-average path for INTER_AREA.
            plane = cv2.resize(plane, ((w + pw) // kw, (h + ph) // kh), interpolation=cv2.INTER_AREA)
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


def _sums(image: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """(3, C): per-channel sum, sum of squares and count of valid pixels, in float64."""
    if valid is None and image.dtype == np.float32:
        # OpenCV accumulates float32 in float64, in one pass each (NumPy would first copy to float64).
        planes = [np.ascontiguousarray(plane) for plane in image]
        return np.array([[cv2.sumElems(p)[0] for p in planes], [cv2.norm(p, cv2.NORM_L2SQR) for p in planes],
                         [float(p.size) for p in planes]], dtype=np.float64)
    x = image.reshape(image.shape[0], -1)
    if valid is not None:
        v = valid.reshape(image.shape[0], -1)
        x = np.where(v, x, np.float32(0.0))
        count = v.sum(1).astype(np.float64)
    else:
        count = np.full(x.shape[0], x.shape[1], np.float64)
    x64 = x.astype(np.float64)
    return np.stack([x64.sum(1), np.einsum("ij,ij->i", x64, x64), count])


def medical_task(task: tuple[str, str, np.ndarray | None, str]) -> TaskResult:
    """Decode one DICOM file (all its kept frames) into resized cache samples."""
    from medvit.io.dicom import DicomReject, read_frames, read_header

    key, path, labels, csv_pid = task
    pseudo: Pseudonymizer = _STATE["pseudo"]
    known_ids = [csv_pid] if csv_pid else []
    result = TaskResult(key=key, source=pseudo.source(key, known_ids))
    try:
        if labels is None:
            info = read_header(path, stop_before_pixels=True)
            result.source = pseudo.source(key, [*identifiers(info.header), *_STATE["all_pids"]])
            result.reject = "no labels: not listed in the labels file"
            return result
        info, frames = read_frames(path, _STATE["dicom"])
        ids = [*known_ids, *identifiers(info.header)]
        result.source = pseudo.source(key, ids)
        header = info.header
        # Group: labels-CSV Patient ID, else DICOM PatientID, else the study, else the file itself.
        patient = csv_pid or str(header.get("PatientID") or "").strip()
        study = str(header.get("StudyInstanceUID") or "").strip()
        group = pseudo.patient(patient if patient else f"study:{study}" if study else f"file:{key}")
        columns = deidentify(header, pseudo)
        for frame, image in frames:
            image = letterbox(image, _STATE["image_size"])
            meta = {"id": pseudo.sample(key, frame), "group": group, "source": result.source,
                    "frame": frame, **columns, "transfer_syntax": info.transfer_syntax,
                    "decoder": info.plugin, "voi": _STATE["dicom"].voi}
            result.samples.append(Sample(image=image, meta=meta, labels=labels, sums=_sums(image)))
        result.decoder = (info.transfer_syntax, info.plugin)
    except DicomReject as err:
        result.samples = []
        result.reject = str(err)
    except MemoryError:
        result.samples, result.reject = [], "too large to decode: MemoryError"
    except Exception as err:  # noqa: BLE001 - one bad file must never stop the stage
        # A failure no check above foresaw: reject the file, naming only the error type (the message
        # may quote header values, i.e. PHI, so it is not logged either).
        result.samples, result.reject = [], f"decode failed: unexpected {type(err).__name__}"
    return result


@dataclass(frozen=True)
class MedicalBlock:
    """Consecutive files one worker decodes and writes as its own shard part(s)."""

    name: str                                           # unique in the run; names the part files
    tasks: tuple[tuple[str, str, np.ndarray | None, str], ...]


@dataclass
class BlockResult:
    """A block's per-file results (no pixels) and the part files holding its images, in order."""

    results: list[TaskResult]
    parts: list[tuple[str, int]] = field(default_factory=list)  # (file name in the shard folder, images)


def medical_block(block: MedicalBlock) -> BlockResult:
    """Decode every file of ``block`` and write its samples into part files in the shard folder.

    A file's samples are written only once the whole file decoded, so a rejected
    multi-frame file leaves no rows behind.
    """
    writer = PartWriter(Path(_STATE["shard_dir"]), f".part-{block.name}", _STATE["shard_size"])
    try:
        results = []
        for task in block.tasks:
            res = medical_task(task)
            for sample in res.samples:
                sample.loc = writer.add(sample.image)  # type: ignore[arg-type]
                sample.image = None
            results.append(res)
        return BlockResult(results, writer.close())
    except BaseException:
        writer.abort()
        raise


def split_block(block: MedicalBlock) -> list[MedicalBlock]:
    """One block per file, for re-running a block whose worker died."""
    return [MedicalBlock(f"{block.name}-{i:05d}", (task,)) for i, task in enumerate(block.tasks)]


def block_size(n_files: int, shard_size: int) -> int:
    """Files per medical block: ~64 blocks per run (load balance), 8 to ``shard_size`` files each.

    It depends on the data and params only, never on the worker count, so the
    cache is byte-identical whatever machine runs the stage.
    """
    return max(1, min(shard_size, max(8, -(-n_files // 64))))


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
    tile_labels: dict[tuple[int, int], np.ndarray] | None


def satellite_task(task: StripTask) -> TaskResult:
    """Read one strip of a scene, cut its chips, label them, drop mostly-nodata chips."""
    from medvit.io.geotiff import RasterReject, chip_geometry, read_label_strip, read_strip

    cfg = _STATE["satellite"]
    t, names = cfg.tile_size, _STATE["label_names"]
    stem = Path(task.key).stem
    result = TaskResult(key=task.key, source=task.key)
    try:
        values, valid = read_strip(task.path, cfg.bands, task.row0, task.row1, task.scene.scale)
        label_strip = read_label_strip(task.label_path, task.row0, task.row1) if task.label_path else None
    except RasterReject as err:
        result.reject = str(err)
        return result
    result.counters["valid_pixels"] += int(valid.all(0).sum())
    if label_strip is not None:
        bad = np.unique(label_strip[(label_strip != 255) & (label_strip >= len(names))])
        if bad.size:
            result.reject = (f"label value out of range: class index {int(bad[0])} in the label raster, "
                             f"ingest.satellite.label_names has {len(names)} (255 = nodata)")
            return result
    for y, x in task.chips:
        r = y - task.row0
        img = values[:, r:r + t, x:x + t]
        ok = valid[:, r:r + t, x:x + t]
        pixel_ok = ok.all(0)                                  # (t, t) all selected bands valid
        if 1.0 - pixel_ok.mean() > cfg.max_nodata_fraction:
            result.counters["chips_dropped_nodata"] += 1
            continue
        if label_strip is not None:
            lab = label_strip[r:r + t, x:x + t]
            usable = (lab != 255) & pixel_ok
            if not usable.any():
                result.counters["chips_dropped_unlabelled"] += 1
                continue
            frac = np.bincount(lab[usable], minlength=len(names))[: len(names)] / usable.sum()
            labels = (frac > cfg.min_label_fraction).astype(np.uint8)
        else:
            labels = task.tile_labels[(y, x)]  # type: ignore[index]
        image = np.ascontiguousarray(img)
        mask = None if ok.all() else np.packbits(~ok).tobytes()
        # Split group: the scene, or its spatial block (chips overlapping a block edge when stride <
        # tile_size can share border pixels with the neighbouring block; use block >> tile_size).
        block = cfg.group_block
        group = stem if block is None else f"{stem}_b{y // block:03d}_{x // block:03d}"
        meta = {"id": f"{stem}_{y:05d}_{x:05d}", "group": group, "source": task.key, "scene": stem,
                "y": y, "x": x, **chip_geometry(task.scene, y, x, t), "scale": task.scene.scale,
                "nodata_fraction": round(float(1.0 - pixel_ok.mean()), 6)}
        result.samples.append(Sample(image=image, meta=meta, labels=labels, sums=_sums(image, ok), mask=mask))
    return result


def probe_task(task: tuple[str, str, str | None]) -> tuple[str, SceneInfo | None, str | None]:
    """Header check of one scene (and its label raster's grid): (key, SceneInfo or None, reject)."""
    from medvit.io.geotiff import RasterReject, check_label_grid, probe

    key, path, label_path = task
    cfg = _STATE["satellite"]
    try:
        info = probe(path, cfg.bands, cfg.scale)
        if label_path is not None:
            if not Path(label_path).is_file():
                return key, None, "no labels: no label raster with the same name"
            check_label_grid(info, label_path)
        if info.height < cfg.tile_size or info.width < cfg.tile_size:
            return key, None, (f"smaller than a tile: {info.height}x{info.width} pixels, "
                               f"ingest.satellite.tile_size is {cfg.tile_size}")
        return key, info, None
    except RasterReject as err:
        return key, None, str(err)


# --------------------------------------------------------------------------- parallel map
def _run_chunk(fn: Callable[[Any], Any], chunk: list[Any]) -> list[Any]:
    return [fn(task) for task in chunk]


def parallel_map(fn: Callable[[Any], Any], tasks: Sequence[Any], workers: int, state: dict[str, Any],
                 desc: str, isolate: Callable[[Any, BaseException], Any], max_chunk: int = 8,
                 split: Callable[[Any], list[Any]] | None = None,
                 files: Callable[[Any], int] | None = None) -> Iterator[Any]:
    """Ordered map over worker processes with a bounded number of chunks in flight.

    Ordered results make the cache byte-identical between runs; the bounded window
    keeps memory flat however many files there are; small chunks amortise the
    inter-process round trip. A chunk that kills its worker (a decoder segfault) is
    re-run one task at a time in a fresh pool (each task first cut into
    ``split(task)`` when given, so a block of files is re-run file by file); a task
    that kills that one too gets ``isolate(task, error)`` as its result.
    ``files(task)`` is the number of input files a task stands for (the progress bar).
    """
    count = files or (lambda task: 1)
    bar = tqdm(total=sum(count(t) for t in tasks), desc=desc, unit="file", mininterval=0.5, dynamic_ncols=True)
    try:
        if workers <= 1:
            threads = cv2.getNumThreads()
            _init_worker(state)
            try:
                for task in tasks:
                    yield fn(task)
                    bar.update(count(task))
            finally:
                cv2.setNumThreads(threads)  # this is the caller's process: leave OpenCV as it was
            return
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        size = max(1, min(max_chunk, len(tasks) // (workers * 16)))
        chunks = [list(tasks[i:i + size]) for i in range(0, len(tasks), size)]
        run = partial(_run_chunk, fn)
        pending: deque[tuple[list[Any], Future]] = deque()
        it = iter(chunks)

        def new_pool(n: int) -> ProcessPoolExecutor:
            return ProcessPoolExecutor(n, mp_context=ctx, initializer=_init_worker, initargs=(state,))

        pool = new_pool(workers)
        try:
            while True:
                while len(pending) < workers * _IN_FLIGHT_PER_WORKER:
                    chunk = next(it, None)
                    if chunk is None:
                        break
                    pending.append((chunk, pool.submit(run, chunk)))
                if not pending:
                    break
                chunk, future = pending.popleft()
                try:
                    results = future.result()
                except BrokenProcessPool:
                    pool.shutdown(wait=False, cancel_futures=True)
                    retry = [t for c in (chunk, *(c for c, _ in pending)) for t in c]
                    retry = [piece for t in retry for piece in split(t)] if split else retry
                    pending.clear()
                    for task in retry:  # one at a time in a fresh process, so the culprit is known
                        single = new_pool(1)
                        try:
                            yield single.submit(fn, task).result()
                        except BrokenProcessPool as err:
                            yield isolate(task, err)
                        finally:
                            single.shutdown(wait=True)
                        bar.update(count(task))
                    pool = new_pool(workers)
                    continue
                for result in results:
                    yield result
                bar.update(sum(count(t) for t in chunk))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    finally:
        bar.close()


# --------------------------------------------------------------------------- main
@dataclass
class _Collected:
    """Everything the main process keeps per sample (small: no pixels)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)
    sums: list[np.ndarray] = field(default_factory=list)
    masks: dict[tuple[int, int], tuple[int, int]] = field(default_factory=dict)  # (shard, index) -> (offset, len)
    rejects: list[tuple[str, str]] = field(default_factory=list)
    counters: Counter = field(default_factory=Counter)
    decoders: Counter = field(default_factory=Counter)
    n_input: int = 0
    n_ingested: int = 0


def _worker_count(requested: int, n_tasks: int) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(requested or cores, n_tasks))


def ingest(domain: str, raw: Path, labels: Path, out: Path, cfg: IngestConfig,
           key_dir: Path | None = None) -> dict[str, Any]:
    """Run the ingest stage; returns report.json's content.

    Raises:
        UserError: label-file problems, too many rejects, nothing ingested.
        FileNotFoundError: ``raw`` or ``labels`` missing.
    """
    raw, labels, out = Path(os.path.abspath(raw)), Path(labels), Path(out)
    if not raw.is_dir():
        raise FileNotFoundError(f"{raw}: raw input folder not found; run the sample stage or pass --raw DIR")
    out.parent.mkdir(parents=True, exist_ok=True)
    tune_malloc()
    # Leftovers of a killed earlier run (never accepted by DVC: they are not outputs).
    for stale in [*out.parent.glob(f".{out.name}.ingest-*"), *out.glob(f".{SHARD_DIR}.old-*")]:
        log.info("removing %s left by an interrupted ingest", stale)
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.ingest-", dir=out.parent))
    try:
        if domain == "medical":
            report = _ingest_medical(raw, labels, tmp, cfg, key_dir)
        else:
            report = _ingest_satellite(raw, labels, tmp, cfg)
        publish(tmp, out)
        return report
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _ingest_medical(raw: Path, labels_path: Path, tmp: Path, cfg: IngestConfig,
                    key_dir: Path | None) -> dict[str, Any]:
    from medvit.io.decoders import syntax_name
    from medvit.io.dicom import DicomOptions

    mcfg = cfg.medical
    root = raw / "images" if (raw / "images").is_dir() else raw
    files = find_files(root, exclude=[labels_path])
    if not files:
        raise UserError(f"{root}: no input files found")
    # Relative paths by slicing: every file lies under ``root`` (find_files keeps the absolute prefix).
    raw_prefix, root_prefix = len(os.path.join(raw, "")), len(os.path.join(root, ""))
    keys = [str(p)[raw_prefix:].replace(os.sep, "/") for p in files]
    root_keys = [str(p)[root_prefix:].replace(os.sep, "/") for p in files]
    table = match_medical_labels(labels_path, root_keys, mcfg.label_names)
    key, key_source = load_key(key_dir)
    pseudo = Pseudonymizer(key)
    tasks = []
    for k, rk, p in zip(keys, root_keys, files):
        lab, pid = table.by_file.get(rk, (None, ""))
        tasks.append((k, str(p), lab, pid))
    shard_dir = tmp / SHARD_DIR
    shard_dir.mkdir(parents=True, exist_ok=True)
    state = {"key": key, "image_size": mcfg.image_size, "all_pids": sorted(table.patient_ids),
             "shard_dir": str(shard_dir), "shard_size": cfg.shard_size,
             "dicom": DicomOptions(voi=mcfg.voi, window=mcfg.window, percentiles=mcfg.percentiles,
                                   multiframe=mcfg.multiframe, allow_burned_in=mcfg.allow_burned_in)}
    if table.without_images:
        log.warning("%s: %d labelled image(s) not found under %s (ignored; counted in report.json)",
                    labels_path, table.without_images, root)

    def isolate(block: MedicalBlock, err: BaseException) -> BlockResult:
        ((k, _, _, pid),) = block.tasks  # crashed blocks are re-run one file each
        return BlockResult([TaskResult(key=k, source=pseudo.source(k, [pid, *table.patient_ids]),
                                       reject="decoder crashed: the worker process died on this file")])

    col = _Collected(n_input=len(tasks))
    step = block_size(len(tasks), cfg.shard_size)
    blocks = [MedicalBlock(f"{i // step:06d}", tuple(tasks[i:i + step])) for i in range(0, len(tasks), step)]
    workers = _worker_count(cfg.workers, len(blocks))
    next_shard = 0
    for block in parallel_map(medical_block, blocks, workers, state, "ingest medical", isolate, max_chunk=1,
                              split=split_block, files=lambda b: len(b.tasks)):
        # Workers wrote the images; number their parts in input order (deterministic shards).
        shards = []
        for name, _ in block.parts:
            os.replace(shard_dir / name, shard_path(tmp, next_shard))
            shards.append(next_shard)
            next_shard += 1
        for res in block.results:
            for sample in res.samples:
                part, index = sample.loc  # type: ignore[misc]
                sample.loc = (shards[part], index)
            _collect(res, None, col, None)
    for leftover in shard_dir.glob(".part-*"):  # parts of a block whose worker died (re-run file by file)
        leftover.unlink()
    extra = {"labels_without_images": table.without_images,
             "deid": {"key_source": key_source, "key_fingerprint": pseudo.fingerprint,
                      "sources_pseudonymised": sum(1 for r in col.rows if r["source"].startswith("pseudo:"))
                      + sum(1 for s, _ in col.rejects if s.startswith("pseudo:"))},
             "decoders": {f"{syntax_name(ts)}: {pl}": n for (ts, pl), n in sorted(col.decoders.items())}}
    return _finish(tmp, col, table.label_names, cfg, channels=["gray"], size=mcfg.image_size,
                   extra=extra, fill=False, workers=workers)


def _plan_strips(key: str, path: str, label_path: str | None, info: SceneInfo, t: int, stride: int,
                 tile_labels: dict[tuple[int, int], np.ndarray] | None, n_bands: int) -> list[StripTask]:
    """Partition a scene's rows into strips of bounded size; each strip owns the chips starting in it."""
    if tile_labels is None:
        ys = range(0, info.height - t + 1, stride)
        xs = list(range(0, info.width - t + 1, stride))
        chips = [(y, x) for y in ys for x in xs]
    else:
        chips = sorted(tile_labels)
    rows_budget = max(t, _STRIP_BYTES // max(1, info.width * n_bands * 8))
    step = max(stride, rows_budget // stride * stride)
    tasks = []
    for row0 in range(0, info.height, step):
        row1 = min(info.height, row0 + step)
        owned = tuple((y, x) for y, x in chips if row0 <= y < row1)
        read1 = min(info.height, max([row1, *(y + t for y, _ in owned)]))
        labels = {c: tile_labels[c] for c in owned} if tile_labels is not None else None
        tasks.append(StripTask(key, path, label_path, info, row0, read1, owned, labels))
    return tasks


def _ingest_satellite(raw: Path, labels_path: Path, tmp: Path, cfg: IngestConfig) -> dict[str, Any]:
    scfg = cfg.satellite
    root = raw / "scenes" if (raw / "scenes").is_dir() else raw
    files = find_files(root, exclude=[labels_path, raw / "labels", raw / "tiles.csv"])
    if not files:
        raise UserError(f"{root}: no scene files found")
    keys = [p.relative_to(raw).as_posix() for p in files]
    stems = Counter(p.stem for p in files)
    clash = sorted(s for s, n in stems.items() if n > 1)
    if clash:
        raise UserError(f"{root}: several scenes share the name(s) {clash[:5]}; chip ids and label files are "
                        "keyed by file stem, so rename them")
    tile_table: TileLabels | None = None
    if scfg.label_source == "csv":
        tile_table = read_tile_labels(labels_path, scfg.label_names)
        label_names = tile_table.label_names
    else:
        if not labels_path.is_dir():
            raise FileNotFoundError(f"{labels_path}: label-raster folder not found; pass --labels DIR "
                                    "(or set ingest.satellite.label_source: csv and pass tiles.csv)")
        if not scfg.label_names:
            raise UserError("ingest.satellite.label_names is empty: label rasters hold class indexes, so "
                            "params must name the classes in index order")
        label_names = scfg.label_names
    state = {"key": b"", "satellite": scfg, "label_names": label_names}
    workers = _worker_count(cfg.workers, len(files))
    col = _Collected(n_input=len(files))

    def label_raster(p: Path) -> str | None:
        if tile_table is not None:
            return None
        hits = sorted(labels_path.glob(p.stem + ".tif*")) or sorted(labels_path.glob(p.stem + ".*"))
        return str(hits[0]) if hits else str(labels_path / (p.stem + ".tif"))

    probes = [(k, str(p), label_raster(p)) for k, p in zip(keys, files)]
    tasks: list[StripTask] = []
    scene_tasks: Counter = Counter()
    for k, info, reject in parallel_map(probe_task, probes, workers, state, "probe scenes",
                                        lambda t, e: (t[0], None, "not a raster: reader crashed")):
        p = Path(k)
        if reject is None and tile_table is not None and p.stem not in tile_table.by_scene:
            reject = "no labels: scene not listed in tiles.csv"
        if reject is not None:
            col.rejects.append((k, reject))
            continue
        tl = tile_table.by_scene[p.stem] if tile_table is not None else None
        if tl is not None:
            outside = [c for c in tl if c[0] + scfg.tile_size > info.height or c[1] + scfg.tile_size > info.width]
            if outside:
                col.counters["tiles_outside_scene"] += len(outside)
                tl = {c: v for c, v in tl.items() if c not in outside}
        strips = _plan_strips(k, str(raw / k), label_raster(p), info, scfg.tile_size, scfg.stride, tl,
                              len(scfg.bands))
        scene_tasks[k] = len(strips)
        tasks.extend(strips)
    if tile_table is not None:
        present = {Path(k).stem for k in keys}
        col.counters["labels_without_images"] = sum(len(v) for s, v in tile_table.by_scene.items()
                                                    if s not in present)
        if col.counters["labels_without_images"]:
            log.warning("%s: %d tile(s) of scenes not found under %s (ignored)", labels_path,
                        col.counters["labels_without_images"], root)
    if col.counters["tiles_outside_scene"]:
        log.warning("%s: %d tile(s) extend beyond their scene (ignored)", labels_path,
                    col.counters["tiles_outside_scene"])

    writer = StreamingShardWriter(tmp, cfg.shard_size)
    masks = open(tmp / "masks.tmp", "w+b")  # packed nodata masks, read back when filling
    scene: dict[str, Any] = {}
    try:
        for res in parallel_map(satellite_task, tasks, workers, state, "ingest satellite",
                                lambda t, e: TaskResult(key=t.key, source=t.key,
                                                        reject="unreadable block: reader crashed"),
                                max_chunk=1):  # a strip is already up to _STRIP_BYTES of pixels
            st = scene.setdefault(res.key, {"done": 0, "rows": [], "reject": None, "counters": Counter(),
                                            "written": []})
            st["done"] += 1
            st["counters"].update(res.counters)
            if st["reject"] is None and res.reject is not None:
                st["reject"] = res.reject
            if st["reject"] is None:
                st["written"].extend(_write_samples(res.samples, writer, masks, col))
            if st["done"] == scene_tasks[res.key]:
                _close_scene(res.key, st, col)
                del scene[res.key]
        writer.flush()
        extra = {"chips_dropped_nodata": col.counters["chips_dropped_nodata"],
                 "chips_dropped_unlabelled": col.counters["chips_dropped_unlabelled"],
                 "tiles_outside_scene": col.counters["tiles_outside_scene"],
                 "labels_without_images": col.counters["labels_without_images"],
                 "unreferenced_cache_rows": col.counters["orphans"],
                 "nodata_fill": "train-split band mean (normalises to 0)"}
        return _finish(tmp, col, label_names, cfg, channels=list(scfg.band_names), size=scfg.tile_size,
                       extra=extra, fill=True, workers=workers, masks=masks)
    finally:
        masks.close()
        (tmp / "masks.tmp").unlink(missing_ok=True)


def _write_samples(samples: list[Sample], writer: ShardWriter | None, masks: Any,
                   col: _Collected) -> list[tuple[dict[str, Any], np.ndarray, np.ndarray, tuple[int, int]]]:
    """Queue each sample's image in ``writer`` (None: a worker already wrote it at ``sample.loc``)."""
    written = []
    for s in samples:
        loc = writer.add(s.image) if writer is not None else s.loc  # type: ignore[arg-type]
        assert loc is not None
        if s.mask is not None:
            masks.seek(0, os.SEEK_END)
            col.masks[loc] = (masks.tell(), len(s.mask))
            masks.write(s.mask)
        written.append(({**s.meta, "shard": loc[0], "index": loc[1]}, s.labels, s.sums, loc))
    return written


def _close_scene(key: str, st: dict[str, Any], col: _Collected) -> None:
    counters = st["counters"]
    reject = st["reject"]
    if reject is None and not st["written"]:
        if counters["valid_pixels"] == 0:
            reject = "all nodata: every pixel of the selected bands is nodata or NaN"
        else:
            reject = (f"no usable chips: {counters['chips_dropped_nodata']} chip(s) over "
                      f"ingest.satellite.max_nodata_fraction, {counters['chips_dropped_unlabelled']} unlabelled")
    if reject is not None:
        col.rejects.append((key, reject))
        col.counters["orphans"] += len(st["written"])
        for *_, loc in st["written"]:
            col.masks.pop(loc, None)
        return
    col.n_ingested += 1
    # Chip counts of ingested scenes only; a rejected scene is accounted for by its reason.
    col.counters.update({k: v for k, v in counters.items() if k != "valid_pixels"})
    for row, labels, sums, _ in st["written"]:
        col.rows.append(row)
        col.labels.append(labels)
        col.sums.append(sums)


def _collect(res: TaskResult, writer: ShardWriter | None, col: _Collected, masks: Any) -> None:
    if res.reject is not None or not res.samples:
        col.rejects.append((res.source, res.reject or "no samples"))
        return
    col.n_ingested += 1
    if res.decoder is not None:
        col.decoders[res.decoder] += 1
    for row, labels, sums, _ in _write_samples(res.samples, writer, masks, col):
        col.rows.append(row)
        col.labels.append(labels)
        col.sums.append(sums)


def _finish(tmp: Path, col: _Collected, label_names: Sequence[str], cfg: IngestConfig, *, channels: list[str],
            size: int, extra: dict[str, Any], fill: bool, workers: int, masks: Any = None) -> dict[str, Any]:
    """Check reject fraction, split, compute stats, fill nodata, write manifest and friends into ``tmp``."""
    n_rejected = len(col.rejects)
    reasons = Counter(r.split(":")[0] for _, r in col.rejects)
    frac = n_rejected / max(1, col.n_input)
    if frac > cfg.max_reject_fraction:
        top = ", ".join(f"{r} ({n})" for r, n in reasons.most_common(5))
        raise UserError(f"ingest rejected {n_rejected} of {col.n_input} input files ({frac:.0%}), more than "
                        f"ingest.max_reject_fraction = {cfg.max_reject_fraction:g}. Top reasons: {top}. Fix the "
                        "inputs, or raise max_reject_fraction in params.yaml if this is expected.")
    if not col.rows:
        raise UserError(f"nothing was ingested from {col.n_input} input file(s); reasons: {dict(reasons)}")
    ids = [r["id"] for r in col.rows]
    if len(set(ids)) != len(ids):
        raise UserError("two samples got the same id (duplicate files or scene names); remove the duplicates")
    y = np.stack(col.labels).astype(np.uint8)                                    # (N, L)
    groups = [r["group"] for r in col.rows]
    splits = group_splits(groups, y, cfg.split_fractions.model_dump(), cfg.seed)
    sums = np.stack(col.sums)                                                    # (N, 3, C)
    train = splits == "train"
    total = sums[train].sum(0)
    count = np.maximum(total[2], 1.0)
    mean = total[0] / count
    std = np.sqrt(np.maximum(total[1] / count - mean**2, 0.0))
    std = np.where(std > 1e-8, std, 1.0)
    if fill and col.masks:
        _fill_nodata(tmp, col.masks, masks, mean.astype(np.float32))
    frame = pd.DataFrame(col.rows)
    frame["split"] = splits
    fixed = list(FIXED_COLUMNS)
    provenance = [c for c in frame.columns if c not in fixed]
    for j, name in enumerate(label_names):
        frame[label_column(name)] = y[:, j]
    frame = frame[fixed + provenance + [label_column(n) for n in label_names]]
    frame.to_csv(tmp / "manifest.tmp", index=False)
    write_json_atomic(tmp / "labels.json", {"label_names": list(label_names)})
    write_json_atomic(tmp / "stats.json", {"mean": mean.tolist(), "std": std.tolist(), "channels": channels,
                                           "size": [size, size], "count": int(total[2].sum())})
    pd.DataFrame(col.rejects, columns=["source", "reason"]).to_csv(tmp / "rejects.csv", index=False)
    report = {
        "n_input": col.n_input, "n_ingested": col.n_ingested, "n_rejected": n_rejected,
        "n_samples": len(frame), "reject_fraction": round(frac, 6),
        "rejects_by_reason": dict(sorted(reasons.items())),
        "splits": {s: int((splits == s).sum()) for s in SPLITS},
        "groups": {s: int(frame.loc[frame["split"] == s, "group"].nunique()) for s in SPLITS},
        "labels": {n: int(y[:, j].sum()) for j, n in enumerate(label_names)},
        "labels_per_split": {s: {n: int(y[splits == s, j].sum()) for j, n in enumerate(label_names)}
                             for s in SPLITS},
        "workers": workers, **extra,
    }
    if report["n_input"] != report["n_ingested"] + report["n_rejected"]:
        raise AssertionError("ingest lost track of a file")  # conservation of counts; a bug if it fires
    write_json_atomic(tmp / "report.json", report)
    os.replace(tmp / "manifest.tmp", tmp / "manifest.csv")
    return report


def _fill_nodata(tmp: Path, locs: dict[tuple[int, int], tuple[int, int]], masks: Any, fill: np.ndarray) -> None:
    """Set masked pixels to the train mean, one shard at a time (bounded memory)."""
    by_shard: dict[int, list[tuple[int, tuple[int, int]]]] = {}
    for (shard, index), span in locs.items():
        by_shard.setdefault(shard, []).append((index, span))
    for shard, items in sorted(by_shard.items()):
        path = shard_path(tmp, shard)
        arr = np.load(path)                                                     # (n, C, H, W)
        for index, (offset, length) in items:
            masks.seek(offset)
            bits = np.unpackbits(np.frombuffer(masks.read(length), np.uint8))
            bad = bits[: arr[index].size].reshape(arr[index].shape).astype(bool)  # (C, H, W) nodata
            arr[index][bad] = np.broadcast_to(fill[:, None, None], arr[index].shape)[bad]
        with atomic_open(path, "wb") as f:
            np.save(f, arr)


def publish(tmp: Path, out: Path) -> None:
    """Move the finished outputs from ``tmp`` into ``out``, ``manifest.csv`` last.

    The old manifest is removed first, so a kill part-way leaves no manifest
    (nothing DVC or finetune accepts); other files in ``out`` (e.g. DVC's
    .gitignore) are left alone.
    """
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.csv").unlink(missing_ok=True)
    for name in OUTPUT_ITEMS:
        src, dst = tmp / name, out / name
        if not src.exists():
            continue
        if dst.is_dir() and not dst.is_symlink():
            old = out / f".{name}.old-{os.getpid()}"
            os.replace(dst, old)
            os.replace(src, dst)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(src, dst)
