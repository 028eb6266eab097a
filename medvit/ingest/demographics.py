"""Subgroup (demographic) columns of the medical manifest: pure functions from header or CSV values.

DICOM PS3.15 Annex E, Retain Patient Characteristics Option (Table E.1-1 column
"Rtn. Pat. Chars. Opt."): PatientSex and PatientAge may be kept, so the
evaluation can report performance per subgroup. Kept here, and nothing more:

* ``sex``: ``F``, ``M``, ``O`` or ``unknown`` (DICOM PatientSex, CheXpert ``Sex``
  ``Female``/``Male``/``Unknown``, ChestX-ray14 ``Patient Gender``);
* ``age_band``: the decade (``0-9`` ... ``80-89``) or ``90+`` (HIPAA Safe Harbor,
  45 CFR 164.514(b)(2)(i)(C), aggregates ages over 89 into one category); from
  PatientAge (``045Y``, ``006M``, ``003W``, ``010D``; PS3.5 6.2 AS), a CSV age in
  years (CheXpert 0..90, 90 meaning 90 or over), or as a last resort the years
  between PatientBirthDate and StudyDate. The age is computed, the dates are
  never returned;
* ``view``: the view position, upper case, only when it is a code string (PS3.5
  6.2 CS repertoire, at most 16 characters), so free text cannot pass as a view;
* ``manufacturer`` and ``manufacturer_model``: DICOM Manufacturer and
  ManufacturerModelName (kept by the basic profile), whitespace-normalised,
  control characters dropped, at most 64 characters (the LO maximum);
* ``site``: a keyed pseudonym (``medvit.deid.Pseudonymizer``) of InstitutionName,
  which the basic profile removes: the name itself never leaves the worker.

A value that is missing, empty or outside its repertoire is ``unknown`` (never
dropped): the per-subgroup report needs every row in some group.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

from medvit.data.layout import SUBGROUP_COLUMNS, UNKNOWN
from medvit.deid import Pseudonymizer

__all__ = ["age_band", "age_from_dates", "age_years", "chexpert_view", "csv_demographics", "device_name",
           "dicom_demographics", "merge", "sex_code", "site", "unknown_demographics", "view_code"]

MAX_AGE = 130  # older is a data-entry error (ChestX-ray14 lists a few ages over 150), not a patient
_SEX = {"F": "F", "FEMALE": "F", "M": "M", "MALE": "M", "O": "O", "OTHER": "O"}
_AGE_STRING = re.compile(r"^(\d{1,3})\s*([DWMY]?)$")  # PS3.5 6.2 AS: nnnD, nnnW, nnnM, nnnY
_AGE_UNIT_YEARS = {"D": 1 / 365.25, "W": 7 / 365.25, "M": 1 / 12, "Y": 1.0, "": 1.0}
_VIEW = re.compile(r"^[A-Z0-9 _]{1,16}$")  # PS3.5 6.2 Code String repertoire, VR CS length
_DATE = re.compile(r"^(\d{4})(\d{2})(\d{2})$")  # PS3.5 6.2 DA
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _text(value: Any) -> str:
    """A header or CSV value as stripped text; the first value of a multi-valued one."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        value = value[0] if value else ""
    text = str(value)
    return text.split("\\", 1)[0].strip()


def sex_code(value: Any) -> str:
    """``F``, ``M``, ``O`` or ``unknown`` from DICOM PatientSex or a CSV ``Sex``/``Gender`` cell."""
    return _SEX.get(_text(value).upper(), UNKNOWN)


def age_years(value: Any) -> float | None:
    """Age in years from a DICOM Age String (``045Y``, ``006M``) or a CSV number; None when unusable."""
    text = _text(value).upper()
    if not text:
        return None
    match = _AGE_STRING.match(text)
    if match:
        years = int(match[1]) * _AGE_UNIT_YEARS[match[2]]
    else:
        try:
            years = float(text)
        except ValueError:
            return None
    if not 0 <= years <= MAX_AGE:  # also NaN
        return None
    return years


def age_from_dates(birth: Any, study: Any) -> float | None:
    """Whole years from PatientBirthDate to StudyDate (DA ``YYYYMMDD``); None when either is unusable."""
    dates = []
    for value in (birth, study):
        match = _DATE.match(_text(value))
        if not match:
            return None
        try:
            dates.append(dt.date(int(match[1]), int(match[2]), int(match[3])))
        except ValueError:
            return None
    born, seen = dates
    years = seen.year - born.year - ((seen.month, seen.day) < (born.month, born.day))
    return float(years) if 0 <= years <= MAX_AGE else None


def age_band(years: float | None) -> str:
    """``0-9`` ... ``80-89`` by decade, ``90+`` from 90 on, ``unknown`` for None."""
    if years is None:
        return UNKNOWN
    decade = int(years // 10) * 10
    return "90+" if decade >= 90 else f"{decade}-{decade + 9}"


def view_code(value: Any) -> str:
    """The view position upper-cased (``PA``, ``AP``, ``LL``, ``LATERAL``...), ``unknown`` unless a code string."""
    text = " ".join(_text(value).upper().split())
    return text if _VIEW.match(text) else UNKNOWN


def chexpert_view(frontal_lateral: Any, ap_pa: Any) -> str:
    """CheXpert's view: ``AP/PA`` when given (``AP``, ``PA``, ``LL``, ``RL``), else ``LATERAL`` for laterals."""
    view = view_code(ap_pa)
    if view != UNKNOWN:
        return view
    return "LATERAL" if _text(frontal_lateral).upper() == "LATERAL" else UNKNOWN


def device_name(value: Any) -> str:
    """Manufacturer / model name: whitespace collapsed, control characters dropped, <= 64 characters."""
    text = " ".join(_CONTROL.sub(" ", _text(value)).split())[:64].strip()
    return text or UNKNOWN


def site(value: Any, pseudo: Pseudonymizer) -> str:
    """Keyed pseudonym ``H<16 hex>`` of an institution name (case and spacing ignored); ``unknown`` if absent."""
    name = " ".join(_text(value).casefold().split())
    return "H" + pseudo.token("site", name) if name else UNKNOWN


def unknown_demographics() -> dict[str, str]:
    """Every subgroup column, ``unknown``."""
    return dict.fromkeys(SUBGROUP_COLUMNS, UNKNOWN)


def dicom_demographics(header: Mapping[str, Any], pseudo: Pseudonymizer) -> dict[str, str]:
    """Subgroup columns from a raw DICOM header (keyword -> value; may hold PHI, none is returned)."""
    years = age_years(header.get("PatientAge"))
    if years is None:
        years = age_from_dates(header.get("PatientBirthDate"), header.get("StudyDate"))
    return {"sex": sex_code(header.get("PatientSex")), "age_band": age_band(years),
            "view": view_code(header.get("ViewPosition")), "manufacturer": device_name(header.get("Manufacturer")),
            "manufacturer_model": device_name(header.get("ManufacturerModelName")),
            "site": site(header.get("InstitutionName"), pseudo)}


def csv_demographics(sex: Any = None, age: Any = None, view: Any = None) -> dict[str, str]:
    """Subgroup columns from labels-CSV cells (the ones a CSV does not give are ``unknown``)."""
    out = unknown_demographics()
    out.update(sex=sex_code(sex), age_band=age_band(age_years(age)), view=view_code(view))
    return out


def merge(first: Mapping[str, str], fallback: Mapping[str, str] | None) -> dict[str, str]:
    """``first``'s columns, each ``unknown`` one taken from ``fallback`` (when given), in column order."""
    fallback = fallback or {}
    out = {}
    for column in SUBGROUP_COLUMNS:
        value = first.get(column, UNKNOWN)
        out[column] = value if value != UNKNOWN else fallback.get(column, UNKNOWN)
    return out
