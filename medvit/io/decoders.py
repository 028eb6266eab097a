"""Which DICOM pixel decoders are available, per transfer syntax (pydicom 3 plugins)."""

from __future__ import annotations

from pydicom.pixels.decoders.base import get_decoder
from pydicom.uid import UID

# Transfer syntaxes ingest must decode (the ingest issue); names from PS3.6 Annex A.
TRANSFER_SYNTAXES: tuple[str, ...] = (
    "1.2.840.10008.1.2",       # Implicit VR Little Endian
    "1.2.840.10008.1.2.1",     # Explicit VR Little Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.2",     # Explicit VR Big Endian (retired)
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline (Process 1)
    "1.2.840.10008.1.2.4.51",  # JPEG Extended (Process 2 & 4)
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless, Non-Hierarchical (Process 14)
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.5",     # RLE Lossless
)


def available_plugins(uid: str) -> list[str]:
    """Names of the installed decoder plugins for ``uid`` (empty: cannot decode)."""
    try:
        decoder = get_decoder(UID(uid))
        if decoder.is_native:
            return ["pydicom (native)"]
        return sorted(decoder.available_plugins)
    except (NotImplementedError, ValueError):
        return []


def decoder_table() -> list[tuple[str, str, list[str]]]:
    """(uid, name, plugins) for every transfer syntax ingest supports."""
    return [(uid, UID(uid).name[:40], available_plugins(uid)) for uid in TRANSFER_SYNTAXES]
