"""Which DICOM pixel decoders are available, per transfer syntax (pydicom 3 plugins)."""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset
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


NATIVE_SYNTAXES: frozenset[str] = frozenset(TRANSFER_SYNTAXES[:4])

# Decoder plugins ingest may use, in order of preference. pydicom's "pylibjpeg"
# plugin decodes JPEG and JPEG-LS through pylibjpeg-libjpeg, which is GPLv3 and
# not a project dependency, so those syntaxes use GDCM (BSD-3) or Pillow (HPND)
# only; its JPEG 2000 (pylibjpeg-openjpeg, MIT) and RLE (pylibjpeg-rle, MIT)
# backends are fine.
_JPEG = ("gdcm", "pillow")
_JPEG_LOSSLESS = ("gdcm",)
_JPEG_LS = ("gdcm",)
_J2K = ("pylibjpeg", "gdcm", "pillow")
_RLE = ("pylibjpeg", "pydicom")
PREFERRED_PLUGINS: dict[str, tuple[str, ...]] = {
    "1.2.840.10008.1.2.4.50": _JPEG,
    "1.2.840.10008.1.2.4.51": _JPEG,
    "1.2.840.10008.1.2.4.57": _JPEG_LOSSLESS,
    "1.2.840.10008.1.2.4.70": _JPEG_LOSSLESS,
    "1.2.840.10008.1.2.4.80": _JPEG_LS,
    "1.2.840.10008.1.2.4.81": _JPEG_LS,
    "1.2.840.10008.1.2.4.90": _J2K,
    "1.2.840.10008.1.2.4.91": _J2K,
    "1.2.840.10008.1.2.5": _RLE,
}


def syntax_name(uid: str) -> str:
    """Human-readable transfer syntax name (PS3.6 Annex A), or the UID when unknown (a non-UID as it is)."""
    if not uid[:1].isdigit():  # e.g. "PNG" for a PNG/JPEG radiograph's decoder entry in report.json
        return uid
    name = UID(uid).name
    return name if name and name != uid else uid


def plugin_order(uid: str) -> tuple[str, ...]:
    """Installed, licence-compatible plugins for ``uid`` in the order ingest tries them.

    Native syntaxes return ``("pydicom",)``; an empty tuple means the syntax cannot be decoded.
    """
    if uid in NATIVE_SYNTAXES:
        return ("pydicom",)
    installed = set(available_plugins(uid))
    return tuple(p for p in PREFERRED_PLUGINS.get(uid, ()) if p in installed)


def decode_frame(ds: Dataset, index: int, uid: str) -> tuple[np.ndarray, str]:
    """Decode frame ``index`` of ``ds`` with the first plugin in ``plugin_order`` that succeeds.

    Colour data comes back as RGB (pydicom's ``as_rgb``); a later plugin is only
    tried when an earlier one raises, so results never silently mix decoders.

    Returns:
        (array, plugin name): (H, W) or (H, W, 3) stored values.

    Raises:
        NotImplementedError: no usable plugin; the last plugin's error otherwise.
    """
    from pydicom.dataset import FileMetaDataset
    from pydicom.pixels import pixel_array

    if getattr(ds, "file_meta", None) is None:
        ds.file_meta = FileMetaDataset()
    if "TransferSyntaxUID" not in ds.file_meta:
        ds.file_meta.TransferSyntaxUID = UID(uid)
    plugins = plugin_order(uid)
    if not plugins:
        raise NotImplementedError(f"no licence-compatible decoder installed for {UID(uid).name}")
    error: Exception | None = None
    for plugin in plugins:
        try:
            arr = pixel_array(ds, index=index, decoding_plugin="" if plugin == "pydicom" and uid in NATIVE_SYNTAXES
                              else plugin)
            return arr, plugin
        except Exception as err:  # noqa: BLE001 - try the next plugin, re-raise the last error
            error = err
    assert error is not None
    raise error
