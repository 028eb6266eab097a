"""Read a DICOM file into (C, H, W) float32 frames in [0, 1] plus its raw header.

The grey-scale intensity chain follows DICOM PS3.3 (each step cited below):

1. Modality LUT (PS3.3 C.11.1): RescaleSlope/RescaleIntercept (top level, or the
   Pixel Value Transformation functional group of enhanced multi-frame objects),
   or a Modality LUT Sequence (through ``pydicom.pixels.apply_modality_lut``).
2. VOI (PS3.3 C.11.2), chosen by ``ingest.medical.voi``:
   ``header``: the VOI LUT Sequence (preferred, as pydicom does) or the first
   Window Center/Width with its VOI LUT Function (LINEAR, LINEAR_EXACT,
   SIGMOID; C.11.2.1.2 and C.11.2.1.3); a file without either falls back to the
   frame's min-max; ``window``: the configured [center, width] (LINEAR);
   ``percentile``: a linear ramp between robust percentiles of the frame.
   Every variant maps straight onto [0, 1] (the window output range
   ymin..ymax of C.11.2.1.2.1 rescaled to 0..1).
3. MONOCHROME1 inversion (PS3.3 C.7.6.3.1.2: the minimum value is white), done
   after VOI, as the standard requires: ``y = 1 - y``.
4. float32 in [0, 1].

Colour images (RGB, YBR_*, PALETTE COLOR) are converted to RGB by pydicom
(``as_rgb``, ``apply_color_lut``; PS3.3 C.7.6.3.1.2), then to one luma channel
with the ITU-R BT.601 weights that define YBR_FULL's Y, and scaled by the
largest storable value: the medical cache is single-channel (timm adapts
``in_chans``), and VOI does not apply to colour (PS3.3 C.11.2).

Decoders are chosen per transfer syntax in ``medvit.io.decoders`` so that no GPL
plugin is used. Failures raise ``DicomReject`` with a specific, PHI-free reason.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut
from pydicom.uid import UID

from medvit.io.decoders import NATIVE_SYNTAXES, decode_frame
from medvit.io.dicom_values import NotANumber, number, tag_value, value

# Header attributes handed to medvit.deid (which decides what may be written).
HEADER_KEYWORDS: tuple[str, ...] = (
    "Modality", "SOPClassUID", "PhotometricInterpretation", "Rows", "Columns", "BitsStored",
    "NumberOfFrames", "PixelSpacing", "ImagerPixelSpacing", "ViewPosition", "BodyPartExamined",
    "StudyInstanceUID", "PatientID", "PatientName", "OtherPatientIDs", "OtherPatientNames",
    "AccessionNumber", "StudyID", "PatientBirthDate", "MedicalRecordLocator", "AdmissionID",
    "BurnedInAnnotation",
)
_HEADER_TAGS: dict[str, int] = {k: int(pydicom.datadict.tag_for_keyword(k)) for k in HEADER_KEYWORDS}  # type: ignore[arg-type]
_RESCALE_SLOPE, _RESCALE_INTERCEPT = 0x00281053, 0x00281052
_CV_AFFINE = (np.dtype(np.uint8), np.dtype(np.int8), np.dtype(np.uint16), np.dtype(np.int16))
_PER_FRAME, _SHARED = 0x52009230, 0x52009229  # Per-frame / Shared Functional Groups Sequence
_COLOUR = {"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_422", "YBR_PARTIAL_420"}
_MONO = {"MONOCHROME1", "MONOCHROME2"}
_PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # PixelData, FloatPixelData, DoubleFloatPixelData

# pydicom logs every failed decoder attempt with a traceback; here a failure is a
# reject reason in rejects.csv, so keep the stage output readable.
logging.getLogger("pydicom").setLevel(logging.CRITICAL)


class DicomReject(Exception):
    """A file that is not a usable image; ``reason`` is a fixed category, ``detail`` PHI-free."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


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
    ds = _parse(path, stop_before_pixels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _check_header(ds, stop_before_pixels)


def _check_header(ds: Dataset, stop_before_pixels: bool) -> DicomFile:
    header = {k: tag_value(ds, tag) for k, tag in _HEADER_TAGS.items()}
    tsyntax = _transfer_syntax(ds)
    if not stop_before_pixels and not any(t in ds for t in _PIXEL_TAGS):
        raise DicomReject("no pixel data", _sop_name(ds))
    if _PIXEL_TAGS[0] in ds and tsyntax not in NATIVE_SYNTAXES:
        from medvit.io.decoders import plugin_order

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
    if photometric not in _MONO | _COLOUR | {"PALETTE COLOR"}:
        raise DicomReject("unsupported photometric interpretation", photometric)
    indices = range(info.n_frames) if options.multiframe == "all" else range(1)
    return info, _iter_frames(info, indices, photometric, options)


def _iter_frames(info: DicomFile, indices: range, photometric: str,
                 options: DicomOptions) -> Iterator[tuple[int, np.ndarray]]:
    for index in indices:
        raw, plugin = _decode(info, index)
        info.plugin = plugin
        try:
            unit = to_unit_range(raw, info.ds, photometric, options, index)
        except NotANumber as err:  # e.g. RescaleSlope "abc": the file is unusable, not the stage
            raise DicomReject("invalid image header", str(err)) from None
        yield index, unit


def _decode(info: DicomFile, index: int) -> tuple[np.ndarray, str]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
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


def to_unit_range(arr: np.ndarray, ds: Dataset, photometric: str, options: DicomOptions,
                  index: int = 0) -> np.ndarray:
    """Apply the documented chain to one decoded frame; returns (1, H, W) float32 in [0, 1]."""
    if photometric in _MONO:
        if arr.ndim == 3:  # a monochrome file whose frame came back with a samples axis
            arr = arr[..., 0]
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise DicomReject("non-finite pixel values")
        # Steps 1-2 fused into one affine map when both are linear (rescale + LINEAR window or min-max).
        affine = _linear_chain(arr, ds, options, index)
        if affine is not None and arr.dtype in _CV_AFFINE and arr.ndim == 2:
            # One pass: OpenCV converts, scales and shifts together (NumPy needs three passes).
            unit = cv2.addWeighted(arr, affine[0], arr, 0.0, affine[1], dtype=cv2.CV_32F)
        elif affine is not None:
            unit = arr.astype(np.float32)
            unit *= np.float32(affine[0])
            unit += np.float32(affine[1])
        else:
            values = _modality(arr, ds, index)                # step 1 (PS3.3 C.11.1)
            unit = _voi(values, ds, options, index)           # step 2 (PS3.3 C.11.2)
        np.clip(unit, 0.0, 1.0, out=unit)
        if photometric == "MONOCHROME1":
            np.subtract(np.float32(1.0), unit, out=unit)      # step 3 (PS3.3 C.7.6.3.1.2)
    else:
        unit = _luma(arr, ds, photometric)
        if not np.isfinite(unit).all():
            raise DicomReject("non-finite pixel values")
        np.clip(unit, 0.0, 1.0, out=unit)
    return unit.astype(np.float32, copy=False)[None]          # step 4: (1, H, W) float32 in [0, 1]


def _linear_chain(stored: np.ndarray, ds: Dataset, options: DicomOptions, index: int) -> tuple[float, float] | None:
    """(a, b) with unit = a * stored + b when rescale and VOI are both linear, else None.

    Same values as step 1 then step 2 (before clipping), in one pass over the pixels.
    """
    if _has_items(ds, "ModalityLUTSequence") or options.voi == "percentile":
        return None
    slope, intercept = _rescale(ds, index)
    if options.voi == "window" and options.window is not None:
        c, w = float(options.window[0]) - 0.5, float(options.window[1]) - 1.0   # LINEAR, C.11.2.1.2.1
    elif _has_items(ds, "VOILUTSequence"):
        return None
    else:
        window = _window_of(ds, index)
        if window is None:  # no VOI in the header: min-max of the modality values
            lo, hi = sorted((slope * float(stored.min()) + intercept, slope * float(stored.max()) + intercept))
            if hi <= lo:
                return 0.0, 0.0
            return slope / (hi - lo), (intercept - lo) / (hi - lo)
        center, width, function = window
        if function == "LINEAR" and width > 1:
            c, w = center - 0.5, width - 1.0
        elif function == "LINEAR_EXACT" and width > 0:
            c, w = center, width
        else:
            return None
    if w <= 0:
        return None
    return slope / w, (intercept - c) / w + 0.5


def _modality(arr: np.ndarray, ds: Dataset, index: int) -> np.ndarray:
    """Stored values -> modality values (HU for CT), float32."""
    if _has_items(ds, "ModalityLUTSequence"):
        return np.asarray(apply_modality_lut(arr, ds), dtype=np.float32)
    slope, intercept = _rescale(ds, index)
    out = arr.astype(np.float32)
    if slope != 1.0:
        out *= np.float32(slope)
    if intercept != 0.0:
        out += np.float32(intercept)
    return out


def _rescale(ds: Dataset, index: int) -> tuple[float, float]:
    """Rescale slope/intercept: top level, else enhanced multi-frame functional groups (PS3.3 C.7.6.16.2.9)."""
    for src in (ds, _functional_group(ds, index, "PixelValueTransformationSequence")):
        if src is not None and (_RESCALE_SLOPE in src or _RESCALE_INTERCEPT in src):
            return number(src, "RescaleSlope", 1.0) or 1.0, number(src, "RescaleIntercept", 0.0) or 0.0
    return 1.0, 0.0


def _has_items(ds: Dataset, keyword: str) -> bool:
    """A non-empty sequence ``keyword`` (the presence test first: it needs no conversion)."""
    return keyword in ds and bool(ds.get(keyword))


def _functional_group(ds: Dataset, index: int, keyword: str) -> Dataset | None:
    if _PER_FRAME not in ds and _SHARED not in ds:
        return None
    for seq_kw, i in (("PerFrameFunctionalGroupsSequence", index), ("SharedFunctionalGroupsSequence", 0)):
        seq = ds.get(seq_kw)
        if seq and len(seq) > i and seq[i].get(keyword):
            return seq[i].get(keyword)[0]
    return None


def _window_of(ds: Dataset, index: int) -> tuple[float, float, str] | None:
    """First header window (center, width, function), top level or Frame VOI LUT functional group."""
    for src in (ds, _functional_group(ds, index, "FrameVOILUTSequence")):
        if src is None:
            continue
        center, width = number(src, "WindowCenter"), number(src, "WindowWidth")
        if center is not None and width is not None:
            func = value(src, "VOILUTFunction")
            func = func[0] if isinstance(func, list) else func
            return center, width, str(func or "LINEAR").upper()
    return None


def window_unit(values: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """PS3.3 C.11.2.1.2 / C.11.2.1.3 windowing with output range [0, 1]."""
    x = values.astype(np.float32, copy=False)
    if function == "SIGMOID":  # C.11.2.1.3.1
        if width <= 0:
            raise DicomReject("invalid VOI", "Window Width must be > 0")
        return (1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))).astype(np.float32)
    if function == "LINEAR_EXACT":  # C.11.2.1.3.2
        if width <= 0:
            raise DicomReject("invalid VOI", "Window Width must be > 0")
        c, w = center, width
    elif function == "LINEAR":  # C.11.2.1.2.1
        if width < 1:
            raise DicomReject("invalid VOI", "Window Width must be >= 1")
        c, w = center - 0.5, width - 1.0
    else:
        raise DicomReject("invalid VOI", "unknown VOI LUT Function")
    if w == 0:  # LINEAR with width 1 is a threshold at c
        return (x > c).astype(np.float32)
    out = (x - np.float32(c)) / np.float32(w) + np.float32(0.5)
    return np.clip(out, 0.0, 1.0, out=out)


def _minmax(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    if hi <= lo:
        return np.zeros_like(values, dtype=np.float32)
    out = (values - np.float32(lo)) / np.float32(hi - lo)
    return np.clip(out, 0.0, 1.0, out=out)


def _voi(values: np.ndarray, ds: Dataset, options: DicomOptions, index: int) -> np.ndarray:
    """Modality values -> [0, 1] by the configured VOI (PS3.3 C.11.2)."""
    if options.voi == "window" and options.window is not None:
        return window_unit(values, float(options.window[0]), float(options.window[1]), "LINEAR")
    if options.voi == "percentile":
        lo, hi = np.percentile(values, options.percentiles)
        return _minmax(values, float(lo), float(hi))
    if _has_items(ds, "VOILUTSequence"):
        # LUT output range is 0..2^n-1 with n = LUTDescriptor[2] (PS3.3 C.11.2.1.1).
        mapped = apply_voi_lut(np.rint(values).astype(np.int64), ds, prefer_lut=True)
        depth = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        return (np.asarray(mapped, dtype=np.float32) / np.float32(2**depth - 1))
    window = _window_of(ds, index)
    if window is not None:
        return window_unit(values, *window)
    return _minmax(values, float(values.min()), float(values.max()))


def _luma(arr: np.ndarray, ds: Dataset, photometric: str) -> np.ndarray:
    """Colour frame (H, W, 3) or palette indices (H, W) -> (H, W) luma in [0, 1]."""
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(arr, ds)
        depth = int(ds.RedPaletteColorLookupTableDescriptor[2])
        peak = float(2**depth - 1)
    else:
        rgb = arr
        peak = float(2 ** int(ds.get("BitsStored") or ds.get("BitsAllocated") or 8) - 1)
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise DicomReject("truncated or corrupt", "colour frame without 3 samples")
    rgb = rgb.astype(np.float32)
    luma = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]  # ITU-R BT.601
    return (luma / np.float32(peak)).astype(np.float32)


def _parse(path: Path, stop_before_pixels: bool) -> Dataset:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
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
    # No meta: pydicom knows the encoding it parsed with.
    little, implicit = getattr(ds, "is_little_endian", True), getattr(ds, "is_implicit_VR", True)
    if not little:
        return "1.2.840.10008.1.2.2"
    return "1.2.840.10008.1.2" if implicit else "1.2.840.10008.1.2.1"


def _uid_name(uid: str) -> str:
    name = UID(uid).name
    return name if name and name != uid else f"unknown UID {uid}"


def _sop_name(ds: Dataset) -> str:
    sop = ds.get("SOPClassUID")
    if sop is None and getattr(ds, "file_meta", None) is not None:
        sop = ds.file_meta.get("MediaStorageSOPClassUID")
    return f"SOP class {UID(str(sop)).name}" if sop else "no SOP class"
