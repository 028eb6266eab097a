"""The hand-written DICOM readers ingest used until issue 11, kept here only to measure them.

``benchmarks/ingest.py --compare-readers`` times the ingest stage with and without
each of them, in one process, interleaved. They were removed from ``medvit/io``
because neither saved 5 % of the per-file time on realistic files (see
benchmarks/README.md); pydicom does both jobs now. ``patched`` swaps them in for
the duration of a ``with`` block:

* ``values``: header values read from the raw element bytes (``US``/``SS`` unpacked,
  pure-ASCII text split and stripped as pydicom does), instead of pydicom's
  per-element conversion;
* ``pixels``: uncompressed little-endian grey-scale frames read with
  ``np.frombuffer`` plus the unused-bit mask / sign extension (PS3.5 8.1.1), instead
  of ``pydicom.pixels.pixel_array``.

Both give pydicom's own values; the benchmark checks that every configuration writes a
byte-identical cache.
"""

from __future__ import annotations

import hashlib
import struct
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

_EACH_STRIPPED = frozenset({"LO", "SH"})
_WHOLE_STRIPPED = frozenset({"CS", "UI", "DA", "TM", "DT", "AS", "IS", "DS", "PN"})
_LITTLE_ENDIAN_NATIVE = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99"})


def _raw_value(ds: Dataset, tag: int) -> tuple[bool, Any]:
    """(True, value) when the raw bytes give pydicom's value unambiguously, else (False, None)."""
    try:
        elem = ds.get_item(tag)
    except Exception:  # noqa: BLE001 - the pydicom path reports a malformed element its own way
        return False, None
    if not isinstance(elem, RawDataElement) or not elem.value:
        return False, None
    raw: bytes = elem.value
    try:
        vr = elem.VR or dictionary_VR(tag)
    except KeyError:
        return False, None
    if vr in ("US", "SS") and len(raw) % 2 == 0:
        order = "<" if elem.is_little_endian else ">"
        values = [str(v) for v in struct.unpack(order + ("H" if vr == "US" else "h") * (len(raw) // 2), raw)]
        return True, values[0] if len(values) == 1 else values
    if (vr in _EACH_STRIPPED or vr in _WHOLE_STRIPPED) and raw.isascii() and b"\x1b" not in raw:
        text = raw.decode("ascii")
        if vr in _EACH_STRIPPED:
            values = [v.rstrip("\x00 ") for v in text.split("\\")]
        else:
            values = text.rstrip("\x00 ").split("\\")
        return True, values[0] if len(values) == 1 else values
    return False, None


def hand_tag_value(fallback: Callable[[Dataset, int], Any]) -> Callable[[Dataset, int], Any]:
    """``tag_value`` that reads the raw bytes first and calls ``fallback`` (pydicom) otherwise."""
    def tag_value(ds: Dataset, tag: int) -> Any:
        ok, got = _raw_value(ds, tag)
        return got if ok else fallback(ds, tag)
    return tag_value


def hand_grey_frame(ds: Dataset, index: int) -> np.ndarray | None:
    """Frame ``index`` of uncompressed little-endian grey-scale PixelData, or None (pydicom decodes it)."""
    from medvit.io import dicom_values  # looked up per call: it reads through the patched tag_value too

    number, value = dicom_values.number, dicom_values.value
    try:
        if number(ds, "SamplesPerPixel", 1) != 1:
            return None
        raw = ds.get_item(0x7FE00010)  # PixelData, without pydicom's element conversion
        if raw is None or str(value(ds, "PhotometricInterpretation")).strip() not in ("MONOCHROME1", "MONOCHROME2"):
            return None
        allocated = int(number(ds, "BitsAllocated") or 0)
        stored = int(number(ds, "BitsStored") or allocated)
        signed = int(number(ds, "PixelRepresentation", 0) or 0)
        rows, cols = int(number(ds, "Rows") or 0), int(number(ds, "Columns") or 0)
        frames = int(number(ds, "NumberOfFrames") or 1)
        data = raw.value
    except (AttributeError, KeyError, TypeError, ValueError):
        return None
    if allocated not in (8, 16, 32) or not 0 < stored <= allocated or signed not in (0, 1):
        return None
    if not isinstance(data, bytes) or rows <= 0 or cols <= 0 or not 0 <= index < max(frames, 1):
        return None
    itemsize = allocated // 8
    frame_bytes = rows * cols * itemsize
    if len(data) < frame_bytes * max(frames, 1):
        return None
    dtype = np.dtype(f"<{'i' if signed else 'u'}{itemsize}")
    arr = np.frombuffer(data, dtype, count=rows * cols, offset=index * frame_bytes).reshape(rows, cols)
    shift = allocated - stored
    if shift and signed:
        arr = np.left_shift(arr, shift)
        np.right_shift(arr, shift, out=arr)
    elif shift:
        arr = np.bitwise_and(arr, dtype.type((1 << stored) - 1))
    return arr.astype(dtype.newbyteorder("="), copy=False)


def _replace(original: Any, new: Any) -> list[tuple[Any, str]]:
    """Set every ``medvit.*`` module attribute that is ``original`` to ``new``; returns what changed."""
    changed = []
    for name, module in list(sys.modules.items()):
        if not name.startswith("medvit.") or module is None:
            continue
        for attr, obj in list(vars(module).items()):
            if obj is original:
                setattr(module, attr, new)
                changed.append((module, attr))
    return changed


@contextmanager
def patched(values: bool, pixels: bool) -> Iterator[None]:
    """Use the hand-written header-value and/or pixel reader inside the block."""
    from medvit.io import decoders, dicom_values

    swaps: list[tuple[list[tuple[Any, str]], Any]] = []
    try:
        if values:
            original = dicom_values.tag_value
            swaps.append((_replace(original, hand_tag_value(original)), original))
        if pixels:
            decode = decoders.decode_frame

            def decode_frame(ds: Dataset, index: int, uid: str) -> tuple[np.ndarray, str]:
                fast = hand_grey_frame(ds, index) if uid in _LITTLE_ENDIAN_NATIVE else None
                return (fast, "pydicom") if fast is not None else decode(ds, index, uid)

            swaps.append((_replace(decode, decode_frame), decode))
        for changed, _ in swaps:
            if not changed:
                raise RuntimeError("nothing to patch: medvit.io's reader names changed; update _ingest_readers.py")
        yield
    finally:
        for changed, original in swaps:
            for module, attr in changed:
                setattr(module, attr, original)


# Label -> (hand-written values, hand-written pixels); "pydicom" is what ingest does since issue 11.
CONFIGS: dict[str, tuple[bool, bool]] = {
    "pydicom": (False, False),
    "+ hand values": (True, False),
    "+ hand pixels": (False, True),
    "+ both (before)": (True, True),
}


def cache_digest(out: Path) -> str:
    """SHA-256 over the shards and the manifest: equal digests mean byte-identical caches."""
    h = hashlib.sha256()
    for path in [*sorted((out / "shards").rglob("*")), out / "manifest.csv"]:
        if path.is_file():
            h.update(path.relative_to(out).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()
