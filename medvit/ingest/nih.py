"""Medical source: DICOM, PNG or JPEG files under ``<raw>/images`` (or ``<raw>``) and a ChestX-ray14 labels CSV.

``labels.csv`` has ``Image Index`` (a file name, or a path relative to the image
folder), ``Finding Labels`` (``|``-separated, ``No Finding`` for none) and an
optional ``Patient ID``, which is PHI: only its keyed pseudonym is written (the
split group). Optional ``Patient Gender``, ``Patient Age`` and ``View Position``
fill the subgroup columns a DICOM header lacks (``medvit.ingest.demographics``);
PNG/JPEG files are decoded by ``medvit.ingest.images``.

Files go to the workers in blocks of consecutive files (``medvit.ingest.writers.block_size``,
fixed by the file count, not the worker count); each worker writes its block's
images into its own part files and the main process renames them into numbered
shards in input order, so no pixels cross the result pipe and the cache is
byte-identical for any number of workers. A block whose worker dies (a decoder
segfault) is re-run file by file, and the file that kills its worker again is
rejected.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medvit.config import IngestConfig
from medvit.data.cache import SHARD_DIR
from medvit.data.layout import NO_FINDING
from medvit.data.preprocess import Preprocessor
from medvit.deid import Pseudonymizer, deidentify, identifiers, load_key
from medvit.errors import UserError
from medvit.ingest.demographics import csv_demographics, dicom_demographics, merge
from medvit.ingest.images import decode_image_file, is_image_file
from medvit.ingest.labels import csv_rows, header_columns, multi_hot, read_csv, vocabulary
from medvit.ingest.pixels import channel_sums
from medvit.ingest.pool import worker_count, worker_state
from medvit.ingest.source import CacheInfo, Collected, Plan, Sample, Source, TaskResult, find_files, relative_keys
from medvit.ingest.views import view_filter
from medvit.ingest.writers import adopt_parts, block_size, decode_into_parts
from medvit.io.decoders import syntax_name
from medvit.io.dicom import DicomReject, read_header

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- labels
@dataclass
class MedicalLabels:
    """Labels CSV matched to files: per file key, its (L,) labels and labels-CSV patient id."""

    label_names: tuple[str, ...]
    by_file: dict[str, tuple[np.ndarray, str]]
    patient_ids: frozenset[str]
    without_images: int
    demographics: dict[str, dict[str, str]] = field(default_factory=dict)  # file key -> CSV subgroup columns


def match_medical_labels(path: Path, files: Sequence[str], label_names: Sequence[str]) -> MedicalLabels:
    """Read a ChestX-ray14-style CSV (``Image Index``, ``Finding Labels``, optional ``Patient ID``).

    ``Image Index`` is matched against file paths relative to the image folder (or
    ``--raw``) when it contains a ``/``, else against file names.

    Raises:
        UserError: missing columns, duplicate or ambiguous ``Image Index``, empty
            ``Finding Labels``, unknown label names, or no row matching any file.
    """
    frame = read_csv(path, ("Image Index", "Finding Labels"))
    # ChestX-ray14's optional demographic columns (Data_Entry_2017.csv).
    demo = [csv_demographics(*cells) for cells in zip(*(
        frame[c].tolist() if c in frame.columns else [None] * len(frame)
        for c in ("Patient Gender", "Patient Age", "View Position")))]
    index = frame["Image Index"].str.strip()
    dup = index.duplicated(keep=False)
    if dup.any():
        raise UserError(f"{path}: duplicate 'Image Index' on rows {csv_rows(np.flatnonzero(dup))}; "
                        "each image must appear once")
    empty = frame["Finding Labels"].str.strip() == ""
    if empty.any():
        raise UserError(f"{path}: empty 'Finding Labels' on rows {csv_rows(np.flatnonzero(empty))}; "
                        f"write '{NO_FINDING}' for an image without findings")
    names = vocabulary(frame["Finding Labels"], label_names, path, "Finding Labels")
    pids = frame["Patient ID"].str.strip().tolist() if "Patient ID" in frame.columns else [""] * len(frame)
    by_rel = {f: f for f in files}
    by_name: dict[str, list[str]] = {}
    for f in files:
        by_name.setdefault(f.rpartition("/")[2], []).append(f)  # files are '/'-separated relative paths
    by_file: dict[str, tuple[np.ndarray, str]] = {}
    demographics: dict[str, dict[str, str]] = {}
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
            by_file[hits[0]] = (multi_hot(cell, names, positions), pid)
            demographics[hits[0]] = demo[i]
    if ambiguous:
        raise UserError(f"{path}: 'Image Index' on rows {csv_rows(ambiguous)} matches several files; "
                        "use paths relative to the image folder to disambiguate")
    if not by_file and len(frame):
        raise UserError(f"{path}: none of its {len(frame)} 'Image Index' values matches a file under the raw "
                        "folder; check --raw and --labels")
    return MedicalLabels(names, by_file, frozenset(p for p in pids if p), missing, demographics)


# --------------------------------------------------------------------------- workers
@dataclass(frozen=True)
class NihWorkerState:
    """What every medical worker needs, installed once per process."""

    pseudo: Pseudonymizer
    all_pids: tuple[str, ...]   # every labels-CSV patient id (sorted), checked against unlabelled file paths
    shard_dir: str
    shard_size: int
    views: tuple[str, ...]      # ingest.medical.views (empty: all)
    prep: Preprocessor          # decode and letterbox params (ingest.medical), shared with the served model


@dataclass(frozen=True)
class FileTask:
    """One DICOM file to decode."""

    key: str                        # path relative to raw
    path: str
    labels: np.ndarray | None       # (L,) 0/1; None: not in the labels file
    patient_id: str                 # labels-CSV Patient ID, "" when absent
    demographics: dict[str, str] | None = None  # subgroup columns from the labels CSV (header values win)


def decode_file(task: FileTask) -> TaskResult:
    """Decode one DICOM file (all its kept frames), or one PNG/JPEG, into resized cache samples."""
    state = worker_state(NihWorkerState)
    pseudo = state.pseudo
    if state.views and task.labels is not None:
        reason = view_filter(task.path, task.demographics, state.views, pseudo)
        if reason is not None:  # left out, counted by reason; nothing of the file is kept
            return TaskResult(key=task.key, source="", filtered=reason)
    if is_image_file(task.path):
        return decode_image_file(task.key, task.path, task.labels, task.patient_id, pseudo=pseudo,
                                 image_size=state.prep.size, all_pids=state.all_pids,
                                 demographics=task.demographics)
    known_ids = [task.patient_id] if task.patient_id else []
    # An unlabelled file is checked against every labels-CSV patient id before its header is read: a file
    # that is not DICOM (MIMIC-CXR's s<study>.txt reports, wget's index.html) keeps this source in rejects.csv.
    result = TaskResult(key=task.key, source=pseudo.source(task.key, known_ids if task.labels is not None
                                                           else state.all_pids))
    try:
        if task.labels is None:
            info = read_header(task.path, stop_before_pixels=True)
            result.source = pseudo.source(task.key, [*identifiers(info.header), *state.all_pids])
            result.reject = "no labels: not listed in the labels file"
            return result
        info, frames = state.prep.read_dicom(task.path)
        result.source = pseudo.source(task.key, [*known_ids, *identifiers(info.header)])
        header = info.header
        # Group: labels-CSV Patient ID, else DICOM PatientID, else the study, else the file itself.
        patient = task.patient_id or str(header.get("PatientID") or "").strip()
        study = str(header.get("StudyInstanceUID") or "").strip()
        group = pseudo.patient(patient if patient else f"study:{study}" if study else f"file:{task.key}")
        columns = deidentify(header, pseudo)
        subgroups = merge(dicom_demographics(header, pseudo), task.demographics)
        for frame, image in frames:
            image = state.prep.to_cache(image)
            meta = {"id": pseudo.sample(task.key, frame), "group": group, "source": result.source,
                    "frame": frame, **columns, "transfer_syntax": info.transfer_syntax,
                    "decoder": info.plugin, "voi": state.prep.dicom_options.voi, **subgroups}
            result.samples.append(Sample(image=image, meta=meta, labels=task.labels, sums=channel_sums(image)))
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

    name: str                       # unique in the run; names the part files
    tasks: tuple[FileTask, ...]


@dataclass
class BlockResult:
    """A block's per-file results (no pixels) and the part files holding its images, in order."""

    results: list[TaskResult]
    parts: list[tuple[str, int]] = field(default_factory=list)  # (file name in the shard folder, images)


def decode_block(block: MedicalBlock) -> BlockResult:
    """Decode every file of ``block`` and write its samples into part files in the shard folder.

    A file's samples are written only once the whole file decoded, so a rejected
    multi-frame file leaves no rows behind.
    """
    state = worker_state(NihWorkerState)
    return BlockResult(*decode_into_parts(Path(state.shard_dir), state.shard_size, block.name, block.tasks,
                                          decode_file))


def split_block(block: MedicalBlock) -> list[MedicalBlock]:
    """One block per file, for re-running a block whose worker died."""
    return [MedicalBlock(f"{block.name}-{i:05d}", (task,)) for i, task in enumerate(block.tasks)]


# --------------------------------------------------------------------------- the source
class NihSource(Source):
    """DICOM files plus a ChestX-ray14 ``labels.csv``."""

    desc = "ingest medical"

    @classmethod
    def default_labels(cls, raw: Path, cfg: IngestConfig) -> Path:
        """``<raw>/labels.csv``."""
        return raw / "labels.csv"

    @classmethod
    def detect(cls, labels: Path) -> bool:
        """``Image Index`` and ``Finding Labels`` columns."""
        columns = header_columns(labels)
        return "Image Index" in columns and "Finding Labels" in columns

    def list_inputs(self) -> list[Path]:
        """Every non-hidden file under ``<raw>/images`` (or ``<raw>``), the labels file excluded."""
        self.root = self.raw / "images" if (self.raw / "images").is_dir() else self.raw
        self.files = find_files(self.root, exclude=[self.labels])
        if not self.files:
            raise UserError(f"{self.root}: no input files found")
        return self.files

    def read_labels(self) -> tuple[str, ...]:
        """Match ``labels.csv`` rows to the files (paths relative to the image folder)."""
        self.root_keys = relative_keys(self.files, self.root)
        self.table = match_medical_labels(self.labels, self.root_keys, self.cfg.medical.label_names)
        return self.table.label_names

    def plan(self, col: Collected) -> Plan:
        """Blocks of consecutive files, decoded and written by the workers."""
        key, self.key_source = load_key()
        self.pseudo = Pseudonymizer(key)
        tasks = []
        for k, rk, p in zip(relative_keys(self.files, self.raw), self.root_keys, self.files):
            labels, pid = self.table.by_file.get(rk, (None, ""))
            tasks.append(FileTask(k, str(p), labels, pid, self.table.demographics.get(rk)))
        self.shard_dir = self.tmp / SHARD_DIR
        self.shard_dir.mkdir(parents=True, exist_ok=True)
        state = NihWorkerState(
            pseudo=self.pseudo, all_pids=tuple(sorted(self.table.patient_ids)),
            shard_dir=str(self.shard_dir), shard_size=self.cfg.shard_size, views=self.cfg.medical.views,
            prep=Preprocessor.from_params(self.cfg, "medical"))
        if self.table.without_images:
            log.warning("%s: %d labelled image(s) not found under %s (ignored; counted in report.json)",
                        self.labels, self.table.without_images, self.root)
        step = block_size(len(tasks), self.cfg.shard_size)
        blocks = [MedicalBlock(f"{i // step:06d}", tuple(tasks[i:i + step])) for i in range(0, len(tasks), step)]
        self.next_shard = 0
        self.decoders: Counter[tuple[str, str]] = Counter()
        return Plan(blocks, decode_block, state, self.isolate, worker_count(self.cfg.workers, len(blocks)),
                    max_chunk=1, split=split_block, files=lambda b: len(b.tasks))

    def isolate(self, block: MedicalBlock, err: BaseException) -> BlockResult:
        """The reject of a file that killed its worker (crashed blocks are re-run one file each)."""
        (task,) = block.tasks
        source = self.pseudo.source(task.key, [task.patient_id, *self.table.patient_ids])
        return BlockResult([TaskResult(key=task.key, source=source,
                                       reject="decoder crashed: the worker process died on this file")])

    def collect(self, block: BlockResult, col: Collected) -> None:
        """Number the block's parts as the next shards (input order), then keep its rows."""
        shards = adopt_parts(block.parts, self.shard_dir, self.tmp, self.next_shard)
        self.next_shard += len(shards)
        for res in block.results:
            if res.filtered is not None:
                col.filter(res.filtered)
                continue
            if res.reject is not None or not res.samples:
                col.reject(res.source, res.reject or "no samples")
                continue
            col.n_ingested += 1
            if res.decoder is not None:
                self.decoders[res.decoder] += 1
            for sample in res.samples:
                part, index = sample.loc  # type: ignore[misc]
                col.add({**sample.meta, "shard": shards[part], "index": index}, sample.labels, sample.sums)

    def cache_info(self, col: Collected) -> CacheInfo:
        """One grey channel; report extras: labels without images, de-identification, decoders."""
        for leftover in self.shard_dir.glob(".part-*"):  # parts of a block whose worker died (re-run file by file)
            leftover.unlink()
        pseudonymised = (sum(1 for r in col.rows if r["source"].startswith("pseudo:"))
                         + sum(1 for s, _ in col.rejects if s.startswith("pseudo:")))
        extra = {"labels_without_images": self.table.without_images,
                 "deid": {"key_source": self.key_source, "key_fingerprint": self.pseudo.fingerprint,
                          "sources_pseudonymised": pseudonymised},
                 "decoders": {f"{syntax_name(ts)}: {pl}": n for (ts, pl), n in sorted(self.decoders.items())}}
        return CacheInfo(channels=["gray"], size=self.cfg.medical.image_size, extra=extra)
