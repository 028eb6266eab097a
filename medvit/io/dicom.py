"""Read a DICOM file into (C, H, W) float32 frames in [0, 1] plus its raw header.

pydicom parses the file and decodes the pixels, with decoders chosen per transfer
syntax in ``medvit.io.decoders`` so that no GPL plugin is used; the PS3.3
intensity chain (modality LUT, VOI, MONOCHROME1, colour to luma) is in
``medvit.io.dicom_intensity``. Failures raise ``DicomReject`` with a specific,
PHI-free reason. All pydicom work runs inside ``pydicom_reading`` (below).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom import config as pydicom_config
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from medvit.io.decoders import NATIVE_SYNTAXES, decode_frame, plugin_order
from medvit.io.dicom_intensity import COLOUR, MONO, to_unit_range
from medvit.io.dicom_values import DicomReject, NotANumber, tag_value, value

__all__ = ["DicomFile", "DicomOptions", "DicomReject", "HEADER_KEYWORDS", "pydicom_reading", "read_frames",
           "read_header"]

# Header attributes handed to medvit.deid (which decides what may be written).
HEADER_KEYWORDS: tuple[str, ...] = (
    "Modality", "SOPClassUID", "PhotometricInterpretation", "Rows", "Columns", "BitsStored",
    "NumberOfFrames", "PixelSpacing", "ImagerPixelSpacing", "ViewPosition", "BodyPartExamined",
    "StudyInstanceUID", "PatientID", "PatientName", "OtherPatientIDs", "OtherPatientNames",
    "AccessionNumber", "StudyID", "PatientBirthDate", "MedicalRecordLocator", "AdmissionID",
    "BurnedInAnnotation",
    # Retained patient characteristics and device (medvit.ingest.demographics); InstitutionName and
    # StudyDate only ever leave as a keyed site pseudonym and an age band.
    "PatientSex", "PatientAge", "StudyDate", "Manufacturer", "ManufacturerModelName", "InstitutionName",
)
_HEADER_TAGS: dict[str, int] = {k: int(pydicom.datadict.tag_for_keyword(k)) for k in HEADER_KEYWORDS}  # type: ignore[arg-type]
_PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # PixelData, FloatPixelData, DoubleFloatPixelData


class _DropAll(logging.Filter):
    """Drops every record of the logger it is added to."""

    def filter(self, record: logging.LogRecord) -> bool:
        return False


_DROP_ALL = _DropAll()


@contextmanager
def pydicom_reading() -> Iterator[None]:
    """Parse, convert and decode with pydicom inside this block, quietly and without value validation.

    * ``reading_validation_mode = IGNORE``: a malformed value is kept as read (the
      checks that matter here, e.g. a non-numeric RescaleSlope, are ours and become a
      reject reason) instead of being validated on every element access.
    * pydicom's log records and warnings are dropped for the duration only: it logs
      each failed decoder attempt with a traceback and warns about invalid values,
      quoting them, i.e. possibly PHI; here a failure is a reason in rejects.csv.
      The filter sits on pydicom's own loggers while the block runs and is removed
      after it, so their level and handlers, and any logging outside the block, are
      untouched (it was a process-wide ``setLevel(CRITICAL)`` before issue 11).
      Deprecation warnings still show (once per place): they are for us, and name no
      value.

    Not thread-safe (global pydicom settings, ``warnings``): ingest decodes in processes.
    """
    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
               if name == "pydicom" or name.startswith("pydicom.")]
    mode = pydicom_config.settings.reading_validation_mode
    for logger in loggers:
        logger.addFilter(_DROP_ALL)
    pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            warnings.simplefilter("default", DeprecationWarning)  # inserted first: it wins
            yield
    finally:
        pydicom_config.settings.reading_validation_mode = mode
        for logger in loggers:
            logger.removeFilter(_DROP_ALL)


@dataclass(frozen=True)
class DicomOptions:
    """The params that shape decoding (``ingest.medical``)."""

    voi: str = "header"
    window: tuple[float, float] | None = None
    percentiles: tuple[float, float] = (0.5, 99.5)
    multiframe: str = "first"
    allow_burned_in: bool = False


@dataclass
class DicomFile:
    """A parsed file: raw header values (may hold PHI; pass through medvit.deid) and frame access."""

    header: dict[str, Any]
    n_frames: int
    transfer_syntax: str
    plugin: str
    ds: Dataset = field(repr=False)


def read_header(path: str | Path, *, stop_before_pixels: bool = False) -> DicomFile:
    """Parse a file and check it holds a decodable image.

    Raises:
        DicomReject: empty file, not DICOM, truncated or corrupt, no pixel data,
            unsupported transfer syntax, burned-in annotation is checked by ``read_frames``.
    """
    path = Path(path)
    if path.stat().st_size == 0:
        raise DicomReject("empty file")
    with pydicom_reading():
        return _check_header(_parse(path, stop_before_pixels), stop_before_pixels)


def _check_header(ds: Dataset, stop_before_pixels: bool) -> DicomFile:
    header = {k: tag_value(ds, tag) for k, tag in _HEADER_TAGS.items()}
    tsyntax = _transfer_syntax(ds)
    if not stop_before_pixels and not any(t in ds for t in _PIXEL_TAGS):
        raise DicomReject("no pixel data", _sop_name(ds))
    if _PIXEL_TAGS[0] in ds and tsyntax not in NATIVE_SYNTAXES:
        if not plugin_order(tsyntax):
            raise DicomReject("unsupported transfer syntax", _uid_name(tsyntax))
    try:
        n_frames = int(header["NumberOfFrames"] or 1)
    except (TypeError, ValueError):
        raise DicomReject("truncated or corrupt", "invalid NumberOfFrames") from None
    return DicomFile(header=header, n_frames=max(n_frames, 1), transfer_syntax=tsyntax, plugin="", ds=ds)


def read_frames(path: str | Path, options: DicomOptions) -> tuple[DicomFile, Iterator[tuple[int, np.ndarray]]]:
    """Parse ``path`` and return its header plus an iterator of (frame index, (1, H, W) float32 in [0, 1]).

    Frames are decoded lazily one at a time, so a long multi-frame series never sits in memory whole.

    Raises:
        DicomReject: with a specific reason (also raised lazily by the iterator for decode errors).
    """
    info = read_header(path)
    if str(info.header.get("BurnedInAnnotation") or "").strip().upper() == "YES" and not options.allow_burned_in:
        raise DicomReject("burned-in annotation", "BurnedInAnnotation=YES; set ingest.medical.allow_burned_in to keep")
    for keyword in ("Rows", "Columns", "PhotometricInterpretation"):
        if info.header[keyword] in (None, "", "0"):
            raise DicomReject("incomplete image header", f"missing {keyword}")
    photometric = str(info.header["PhotometricInterpretation"]).strip().upper()
    if photometric not in MONO | COLOUR | {"PALETTE COLOR"}:
        raise DicomReject("unsupported photometric interpretation", photometric)
    indices = range(info.n_frames) if options.multiframe == "all" else range(1)
    return info, _iter_frames(info, indices, photometric, options)


def _iter_frames(info: DicomFile, indices: range, photometric: str,
                 options: DicomOptions) -> Iterator[tuple[int, np.ndarray]]:
    for index in indices:
        with pydicom_reading():  # per frame, not across the yield: the caller's code runs outside it
            raw, plugin = _decode(info, index)
            info.plugin = plugin
            try:
                unit = to_unit_range(raw, info.ds, photometric, options, index)
            except NotANumber as err:  # e.g. RescaleSlope "abc": the file is unusable, not the stage
                raise DicomReject("invalid image header", str(err)) from None
        yield index, unit


def _decode(info: DicomFile, index: int) -> tuple[np.ndarray, str]:
    try:
        return decode_frame(info.ds, index, info.transfer_syntax)
    except DicomReject:
        raise
    except (ValueError, EOFError, OSError, IndexError, KeyError, TypeError, AttributeError) as err:
        # pydicom raises ValueError for pixel data shorter than Rows x Columns x frames.
        text = str(err).lower()
        if "length" in text or "truncat" in text or "end of" in text or "expected" in text:
            raise DicomReject("truncated or corrupt", f"pixel data ({type(err).__name__})") from None
        raise DicomReject("decode failed", f"{_uid_name(info.transfer_syntax)} ({type(err).__name__})") from None
    except (RuntimeError, NotImplementedError) as err:
        name = _uid_name(info.transfer_syntax)
        if "does not support" in str(err) or isinstance(err, NotImplementedError):
            # e.g. 12-bit JPEG Extended: only GPL libjpeg decodes it, and it is not a dependency.
            bits = info.ds.get("BitsStored", "?")
            raise DicomReject("unsupported transfer syntax",
                              f"{name} with {bits}-bit samples: no licence-compatible decoder") from None
        raise DicomReject("decode failed", f"{name} ({type(err).__name__})") from None


def _parse(path: Path, stop_before_pixels: bool) -> Dataset:
    try:
        try:
            return pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
        except InvalidDicomError:
            # No preamble: accept a raw data set only when it parses and looks like DICOM.
            ds = pydicom.dcmread(path, force=True, stop_before_pixels=stop_before_pixels)
            if not _looks_like_dicom(ds):
                raise DicomReject("not DICOM") from None
            return ds
    except DicomReject:
        raise
    except InvalidDicomError:
        raise DicomReject("not DICOM") from None
    except (EOFError, OSError, ValueError, KeyError, TypeError, IndexError, AttributeError, OverflowError,
            NotImplementedError, UnicodeDecodeError, LookupError) as err:
        raise DicomReject("truncated or corrupt", type(err).__name__) from None


def _looks_like_dicom(ds: Dataset) -> bool:
    try:
        tags = [int(t) for t in ds.keys()]
        if not tags:
            return False
        known = sum(1 for t in tags if pydicom.datadict.dictionary_has_tag(t))
        return known == len(tags) and any(k in ds for k in ("SOPClassUID", "PixelData", "Modality", "Rows"))
    except Exception:  # noqa: BLE001 - a forced parse of a non-DICOM file can fail anywhere
        return False


def _transfer_syntax(ds: Dataset) -> str:
    meta = getattr(ds, "file_meta", None)
    uid = value(meta, "TransferSyntaxUID") if meta is not None else None
    if uid:
        return str(uid)
    # No meta: pydicom knows the encoding it parsed with ((None, None) only for a data set built
    # in memory, which then defaults to Implicit VR Little Endian, PS3.5 10.1).
    implicit, little = ds.original_encoding
    if little is False:
        return "1.2.840.10008.1.2.2"
    return "1.2.840.10008.1.2.1" if implicit is False else "1.2.840.10008.1.2"


def _uid_name(uid: str) -> str:
    name = UID(uid).name
    return name if name and name != uid else f"unknown UID {uid}"


def _sop_name(ds: Dataset) -> str:
    sop = ds.get("SOPClassUID")
    if sop is None and getattr(ds, "file_meta", None) is not None:
        sop = ds.file_meta.get("MediaStorageSOPClassUID")
    return f"SOP class {UID(str(sop)).name}" if sop else "no SOP class"
