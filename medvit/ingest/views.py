"""The view filter (``ingest.medical.views``): keep only radiographs taken in the listed view positions.

The view is the one the manifest's ``view`` column records
(``medvit.ingest.demographics``): the DICOM ViewPosition, else the labels
CSV's (CheXpert ``AP/PA`` / ``Frontal/Lateral``, MIMIC-CXR ``ViewPosition``,
ChestX-ray14 ``View Position``); PNG/JPEG files have only the CSV's. A file
left out is counted in report.json under ``filtered_by_reason`` (``view
LATERAL``, ``view unknown``), not rejected; its pixels are never decoded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from medvit.data.layout import UNKNOWN
from medvit.deid import Pseudonymizer
from medvit.ingest.demographics import dicom_demographics, merge
from medvit.ingest.images import is_image_file
from medvit.io.dicom import read_header


def file_view(path: str, csv: Mapping[str, str] | None, pseudo: Pseudonymizer) -> str | None:
    """The view position of one input file (``unknown`` when neither header nor CSV has one).

    None when the DICOM header cannot be read: the decode then rejects the file with its reason.
    """
    if is_image_file(path):
        return (csv or {}).get("view", UNKNOWN)
    try:
        header = read_header(path, stop_before_pixels=True).header
    except Exception:  # noqa: BLE001 - any unreadable file is the decoder's to reject, with its reason
        return None
    return merge(dicom_demographics(header, pseudo), csv)["view"]


def view_filter(path: str, csv: Mapping[str, str] | None, views: Sequence[str], pseudo: Pseudonymizer) -> str | None:
    """The filter reason (``view <VIEW>``) when ``views`` is non-empty and the file's view is not in it."""
    if not views:
        return None
    view = file_view(path, csv, pseudo)
    return None if view is None or view in views else f"view {view}"
