"""The grey-scale intensity chain of DICOM PS3.3 for one decoded frame: stored values -> [0, 1].

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

Colour images (RGB, YBR_*, PALETTE COLOR) arrive as RGB from pydicom (``as_rgb``,
``apply_color_lut``; PS3.3 C.7.6.3.1.2) and become one luma channel with the
ITU-R BT.601 weights that define YBR_FULL's Y, scaled by the largest storable
value: the medical cache is single-channel (timm adapts ``in_chans``), and VOI
does not apply to colour (PS3.3 C.11.2).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

from medvit.io.dicom_values import DicomReject, number, value
from medvit.io.grey import luma

if TYPE_CHECKING:
    from medvit.io.dicom import DicomOptions

MONO = frozenset({"MONOCHROME1", "MONOCHROME2"})
COLOUR = frozenset({"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_422", "YBR_PARTIAL_420"})
_RESCALE_SLOPE, _RESCALE_INTERCEPT = 0x00281053, 0x00281052
_CV_AFFINE = (np.dtype(np.uint8), np.dtype(np.int8), np.dtype(np.uint16), np.dtype(np.int16))
_PER_FRAME, _SHARED = 0x52009230, 0x52009229  # Per-frame / Shared Functional Groups Sequence


def to_unit_range(arr: np.ndarray, ds: Dataset, photometric: str, options: DicomOptions,
                  index: int = 0) -> np.ndarray:
    """Apply the documented chain to one decoded frame; returns (1, H, W) float32 in [0, 1]."""
    if photometric in MONO:
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
    return luma(rgb, peak)  # ITU-R BT.601, the same as PNG/JPEG inputs
