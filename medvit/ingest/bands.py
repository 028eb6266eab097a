"""Sentinel-2 band names and ``ingest.satellite.bands`` resolution for formats with a known band order.

Bands are selected by name (``B02``; ``B2`` and lower case are accepted) or by a
1-based index into the format's band order (``BIGEARTHNET_BANDS``,
``EUROSAT_BANDS``). Names are canonical (``B02``, ``B8A``) in the cache's
``stats.json`` channels.
"""

from __future__ import annotations

from collections.abc import Sequence

from medvit.errors import UserError
from medvit.io.geotiff import band_name

# Sentinel-2 MSI ground sampling distance (m) per band (ESA Sentinel-2 User Handbook, table 1).
RESOLUTION_M: dict[str, int] = {"B01": 60, "B02": 10, "B03": 10, "B04": 10, "B05": 20, "B06": 20, "B07": 20,
                                "B08": 10, "B8A": 20, "B09": 60, "B10": 60, "B11": 20, "B12": 20}

# BigEarthNet v1 and v2 (Level-2A: no cirrus band B10), in the data sets' own order.
BIGEARTHNET_BANDS: tuple[str, ...] = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09",
                                      "B11", "B12")
# EuroSAT multispectral (Level-1C): the band order inside each 13-band file, B8A last.
EUROSAT_BANDS: tuple[str, ...] = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11",
                                  "B12", "B8A")


def resolve_bands(bands: Sequence[int | str], order: Sequence[str], fmt: str) -> tuple[str, ...]:
    """The canonical names of ``ingest.satellite.bands`` for a format whose band order is ``order``.

    Raises:
        UserError: an index beyond the format's bands, or a name the format does not have.
    """
    out = []
    for band in bands:
        if isinstance(band, int):
            if not 1 <= band <= len(order):
                raise UserError(f"ingest.satellite.bands: index {band} is out of range for {fmt}, which has "
                                f"{len(order)} bands ({', '.join(order)}); use 1..{len(order)} or band names")
            out.append(order[band - 1])
            continue
        name = band_name(band)
        if name is None or name not in order:
            raise UserError(f"ingest.satellite.bands: {fmt} has no band {band!r}; its bands are {', '.join(order)}")
        out.append(name)
    if len(set(out)) != len(out):
        raise UserError(f"ingest.satellite.bands: {list(bands)} selects a band twice")
    return tuple(out)
