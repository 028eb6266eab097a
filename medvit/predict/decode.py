"""The worker side of ``medvit predict``: one input file -> cache-scaled items, or its reject reason.

Every step is the model's own :class:`medvit.data.preprocess.Preprocessor` (the
one ingest and the served model use), so a file predicts as it would have been
ingested. Medical files are DICOM Part 10 (one item per kept frame) or PNG/JPEG;
satellite files are GeoTIFF scenes or chips (one item per chip of ingest's grid;
a chip ingest would drop for nodata is an item with an ``error``).

What leaves a worker follows ``medvit.deid``: ids are keyed pseudonyms
(``Pseudonymizer.sample``), the source path is replaced by ``pseudo:<hex>`` when
it contains an identifier of its file, and an SR reference carries UIDs and the
keyed patient pseudonym only (``medvit.io.sr.SourceReference``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medvit.data.layout import parse_tile_id
from medvit.data.preprocess import Preprocessor, sniff_format_bytes
from medvit.deid import Pseudonymizer, identifiers
from medvit.ingest.pool import worker_state
from medvit.io.dicom import DicomReject
from medvit.io.sr import SourceReference, SrError, source_reference


@dataclass(frozen=True)
class PredictState:
    """What every predict worker needs, installed once per process."""

    prep: Preprocessor
    pseudo: Pseudonymizer
    sr: bool                         # build SR references (medical DICOM)


@dataclass(frozen=True)
class FileTask:
    """One input file: its key (path relative to --input) and absolute path."""

    key: str
    path: str


@dataclass
class Item:
    """One model input of a file: a frame, an image or a chip."""

    id: str
    image: np.ndarray | None         # (C, H, W) cache-scaled float32; None with ``error``
    frame: int | None = None         # DICOM frame index
    origin: tuple[int, int] | None = None  # chip's top-left (y, x) scene pixel
    bounds: str = ""
    crs: str = ""
    error: str = ""


@dataclass
class Decoded:
    """A file's items, or the reason the whole file is unusable (``error``)."""

    key: str
    source: str                      # PHI-safe source column value
    items: list[Item] = field(default_factory=list)
    error: str = ""
    reference: SourceReference | None = None  # for the SR (medical DICOM with --sr)
    sr_error: str = ""


def decode_file(task: FileTask) -> Decoded:
    """Decode one input file in a worker (``medvit.ingest.pool.parallel_map``)."""
    state = worker_state(PredictState)
    if state.prep.domain == "satellite":
        return _decode_scene(task, state.prep)
    try:
        return _decode_medical(task, state)
    except DicomReject as err:
        return Decoded(task.key, state.pseudo.source(task.key, []), error=str(err))
    except MemoryError:
        return Decoded(task.key, state.pseudo.source(task.key, []), error="too large to decode: MemoryError")
    except Exception as err:  # noqa: BLE001 - as ingest: one bad file never stops the batch
        # The message may quote header values (PHI): only the error type is kept.
        return Decoded(task.key, state.pseudo.source(task.key, []), error=f"decode failed: unexpected {type(err).__name__}")


def _decode_scene(task: FileTask, prep: Preprocessor) -> Decoded:
    chips = prep.chips(task.path, Path(task.key).stem)
    if isinstance(chips, str):
        return Decoded(task.key, task.key, error=chips)
    items = []
    for chip in chips:
        parsed = parse_tile_id(chip.id)
        origin = (parsed[1], parsed[2]) if parsed else None
        items.append(Item(chip.id, chip.image, origin=origin, bounds=chip.bounds, crs=chip.crs, error=chip.error))
    return Decoded(task.key, task.key, items)


def _decode_medical(task: FileTask, state: PredictState) -> Decoded:
    prep, pseudo = state.prep, state.pseudo
    with open(task.path, "rb") as f:
        head = f.read(8)
    if not head:
        return Decoded(task.key, pseudo.source(task.key, []), error="empty file")
    if sniff_format_bytes(head) is not None:
        decoded = prep.decode(Path(task.path).read_bytes(), task.key)
        source = pseudo.source(task.key, [])
        if isinstance(decoded, str):
            return Decoded(task.key, source, error=decoded)
        return Decoded(task.key, source, [Item(pseudo.sample(task.key, 0), i.image) for i in decoded])
    info, frames = prep.read_dicom(task.path)
    source = pseudo.source(task.key, identifiers(info.header))
    items = [Item(pseudo.sample(task.key, k), None, frame=k, error=small)
             if (small := prep.too_small(*image.shape[1:])) else
             Item(pseudo.sample(task.key, k), prep.to_cache(image), frame=k) for k, image in frames]
    out = Decoded(task.key, source, items)
    if state.sr:
        # The split group's rule (medvit.ingest.nih): PatientID, else the study, else the file.
        patient = str(info.header.get("PatientID") or "").strip()
        study = str(info.header.get("StudyInstanceUID") or "").strip()
        group = pseudo.patient(patient if patient else f"study:{study}" if study else f"file:{task.key}")
        try:
            out.reference = source_reference(info, group)
        except SrError as err:
            out.sr_error = str(err)
    return out


def crash_result(task: FileTask, pseudo: Pseudonymizer) -> Decoded:
    """The error row of a file that killed its worker (a decoder crash); built in the main process."""
    return Decoded(task.key, pseudo.source(task.key, []), error="decoder crashed: the worker process died on this file")
