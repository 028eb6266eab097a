"""Plain header values of a parsed DICOM data set, as strings, through pydicom; ``DicomReject``.

One shape for every caller: None when absent, ``str`` for one value, ``list[str]``
for several. A malformed element reads as None instead of raising, so one bad
attribute never stops header reading; ``number`` names the keyword (never the
value: PHI) when a numeric attribute holds something else.

Until issue 11 this module read values from the raw element bytes to skip pydicom's
per-element conversion; on realistic files (2,500 x 3,000 radiographs) that saved
well under 5 % of the per-file ingest time, so pydicom does it now (figures in
benchmarks/README.md; the old reader lives on in ``benchmarks/_ingest_readers.py``).
Callers read inside ``medvit.io.dicom.pydicom_reading`` so that invalid values are
kept as read instead of validated (``reading_validation_mode=IGNORE``).
"""

from __future__ import annotations

from typing import Any

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

_TAGS: dict[str, int] = {}


def tag_of(keyword: str) -> int:
    """The tag of a DICOM keyword (cached).

    Raises:
        KeyError: not a keyword of the DICOM dictionary.
    """
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
    if tag not in ds:
        return None
    try:
        v = ds[tag].value
    except Exception:  # noqa: BLE001 - a malformed element must not stop header reading
        return None
    if v is None:
        return None
    if isinstance(v, (list, MultiValue)):
        return [str(x) for x in v]
    return str(v)


class DicomReject(Exception):
    """A file that is not a usable image; ``reason`` is a fixed category, ``detail`` PHI-free."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


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
