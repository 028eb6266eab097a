"""Plain header values of a parsed DICOM data set, without pydicom's per-element conversion.

pydicom converts an element on first access (VR lookup, character set, value
validation, a new ``DataElement``): 12-25 us each, and ingest reads ~30 of them
per file, more than its whole intensity chain costs. ``value(ds, keyword)``
reads the raw bytes instead when that is unambiguous:

* ``US``/``SS`` (binary, in the element's own byte order);
* text VRs whose bytes are pure ASCII without an escape sequence: every DICOM
  character set is an ASCII superset, so the decoding cannot differ. Trailing
  spaces and NULs are stripped and multiple values split on ``\\`` as pydicom
  does (``LO``/``SH`` strip each value; the others strip the whole value).

Anything else (empty, odd-length, non-ASCII, other VRs, already converted)
goes through pydicom. The result is always pydicom's value as strings: None
when absent, ``str`` for one value, ``list[str]`` for several, which
``tests/io/test_dicom_values.py`` checks against pydicom on every shipped file.
"""

from __future__ import annotations

import struct
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

_EACH_STRIPPED = frozenset({"LO", "SH"})
_WHOLE_STRIPPED = frozenset({"CS", "UI", "DA", "TM", "DT", "AS", "IS", "DS", "PN"})
_TAGS: dict[str, int] = {}
_VRS: dict[int, str] = {}


def tag_of(keyword: str) -> int:
    """The tag of a DICOM keyword (cached)."""
    tag = _TAGS.get(keyword)
    if tag is None:
        found = tag_for_keyword(keyword)
        if found is None:
            raise KeyError(f"unknown DICOM keyword {keyword!r}")
        tag = _TAGS[keyword] = int(found)
    return tag


def value(ds: Dataset, keyword: str) -> Any:
    """``keyword``'s value as pydicom gives it, in strings: None, ``str``, or ``list[str]``."""
    return tag_value(ds, tag_of(keyword))


def tag_value(ds: Dataset, tag: int) -> Any:
    """``value`` by tag. A malformed element reads as None, never raises."""
    try:
        elem = ds.get_item(tag)
    except Exception:  # noqa: BLE001 - a malformed element must not stop header reading
        return None
    if elem is None:
        return None
    if isinstance(elem, RawDataElement) and elem.value:
        raw: bytes = elem.value
        vr = elem.VR or _dictionary_vr(tag)
        if vr in ("US", "SS") and len(raw) % 2 == 0:
            order = "<" if elem.is_little_endian else ">"
            values = [str(v) for v in struct.unpack(order + ("H" if vr == "US" else "h") * (len(raw) // 2), raw)]
            return values[0] if len(values) == 1 else values
        if (vr in _EACH_STRIPPED or vr in _WHOLE_STRIPPED) and raw.isascii() and b"\x1b" not in raw:
            text = raw.decode("ascii")
            if vr in _EACH_STRIPPED:
                values = [v.rstrip("\x00 ") for v in text.split("\\")]
            else:
                values = text.rstrip("\x00 ").split("\\")
            return values[0] if len(values) == 1 else values
    return _converted(ds, tag)


class NotANumber(ValueError):
    """A numeric header element holds something else; names the keyword, never the value (PHI-safe)."""

    def __init__(self, keyword: str) -> None:
        super().__init__(f"{keyword} is not a number")
        self.keyword = keyword


def number(ds: Dataset, keyword: str, default: float | None = None) -> float | None:
    """First value of ``keyword`` as a float; ``default`` when absent or empty.

    Raises:
        NotANumber: the value is not numeric.
    """
    v = value(ds, keyword)
    if isinstance(v, list):
        v = v[0] if v else None
    if v is None or v == "":
        return default
    try:
        return float(v)
    except (TypeError, ValueError):
        raise NotANumber(keyword) from None


def _dictionary_vr(tag: int) -> str:
    vr = _VRS.get(tag)
    if vr is None:
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            vr = "UN"
        _VRS[tag] = vr
    return vr


def _converted(ds: Dataset, tag: int) -> Any:
    try:
        v = ds[tag].value
    except Exception:  # noqa: BLE001 - see tag_value
        return None
    if v is None:
        return None
    if isinstance(v, (list, MultiValue)):
        return [str(x) for x in v]
    return str(v)
