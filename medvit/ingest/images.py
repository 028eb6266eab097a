"""PNG and JPEG radiographs in a medical folder (ChestX-ray14, CheXpert, MIMIC-CXR-JPG): one file, one sample.

They take the DICOM files' path after decoding (grey, letterbox, cache) but not
the DICOM intensity chain: ``medvit.io.image`` scales display values by their real
bit depth (PNG sBIT). Their provenance columns are the DICOM ones
(``medvit.deid.ALLOWED`` plus ``frame``, ``transfer_syntax``, ``decoder``,
``voi``), filled where a PNG/JPEG has the fact, so that a folder mixing DICOM and
PNG/JPEG gives one manifest layout: ``photometric`` ``MONOCHROME2`` for grey and
``RGB`` for colour, ``rows``/``columns``, ``bits_stored`` (the significant bits the
values were scaled by), ``decoder`` ``opencv PNG`` or ``opencv JPEG``. Text chunks,
EXIF and comments are never read (``medvit.io.image``), so the only identifiers to
keep out of the ``source`` path are the labels CSV's patient ids. Subgroup columns
come from the labels CSV only; ``unknown`` without it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from medvit.deid import Pseudonymizer, deidentify
from medvit.ingest.demographics import merge, unknown_demographics
from medvit.ingest.pixels import channel_sums, letterbox
from medvit.ingest.source import Sample, TaskResult
from medvit.io.image import ImageReject, read_image, sniff_format

__all__ = ["IMAGE_SUFFIXES", "decode_image_file", "is_image_file"]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
_PHOTOMETRIC = {"grey": "MONOCHROME2", "grey+alpha": "MONOCHROME2", "rgb": "RGB", "rgba": "RGB",
                "palette": "PALETTE COLOR"}


def is_image_file(path: str | Path) -> bool:
    """Whether a file is read as PNG/JPEG: its suffix says so, or its first bytes do.

    By suffix too, so that a ``.jpg`` that is not a JPEG is rejected as one
    ("not PNG or JPEG"), not as "not DICOM".
    """
    suffix = Path(path).suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return True
    return suffix != ".dcm" and sniff_format(path) is not None


def decode_image_file(key: str, path: str, labels: np.ndarray | None, patient_id: str, *, pseudo: Pseudonymizer,
                      image_size: int, all_pids: Sequence[str],
                      demographics: Mapping[str, str] | None = None) -> TaskResult:
    """Decode one PNG/JPEG into a letterboxed cache sample, or its reject.

    Args:
        key: path relative to raw.
        path: the file.
        labels: (L,) labels; None when the labels CSV does not list the file (a reject).
        patient_id: labels-CSV Patient ID, "" when absent (the split group; never written).
        pseudo: the keyed pseudonymizer.
        image_size: the cache size.
        all_pids: every labels-CSV patient id, checked against an unlabelled file's path.
        demographics: subgroup columns from the labels CSV (``unknown`` where it has none).
    """
    known_ids = [patient_id] if patient_id else []
    result = TaskResult(key=key, source=pseudo.source(key, known_ids))
    if labels is None:
        result.source = pseudo.source(key, all_pids)
        result.reject = "no labels: not listed in the labels file"
        return result
    try:
        image, info = read_image(path)
        image = letterbox(image, image_size)
    except ImageReject as err:
        result.reject = str(err)
        return result
    except MemoryError:
        result.reject = "too large to decode: MemoryError"
        return result
    except Exception as err:  # noqa: BLE001 - one bad file must never stop the stage (no message: it may quote data)
        result.reject = f"decode failed: unexpected {type(err).__name__}"
        return result
    header = {"Rows": info.height, "Columns": info.width, "BitsStored": info.significant_bits,
              "NumberOfFrames": 1, "PhotometricInterpretation": _PHOTOMETRIC[info.colour]}
    group = pseudo.patient(patient_id if patient_id else f"file:{key}")
    meta = {"id": pseudo.sample(key, 0), "group": group, "source": result.source, "frame": 0,
            **deidentify(header, pseudo), "transfer_syntax": "", "decoder": f"opencv {info.format}", "voi": "",
            **merge(demographics or unknown_demographics(), None)}
    result.samples.append(Sample(image=image, meta=meta, labels=labels, sums=channel_sums(image)))
    result.decoder = (info.format, "opencv")
    return result
