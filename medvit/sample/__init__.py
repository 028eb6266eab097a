"""The embedded demo data set: real DICOM and GeoTIFF files with a learnable multi-label signal.

So that ``dvc repro`` runs on a fresh offline machine, the sample stage writes the raw inputs a user
would have, in the layout ingest reads (the conventions both share are in ``medvit.data.layout``):

* ``medical`` (DICOM chest radiographs and a ChestX-ray14-style labels.csv) draws its pixels from
  ``radiograph``, the chest phantom;
* ``satellite`` (GeoTIFF scenes, land-cover rasters and tiles.csv) draws its pixels from
  ``landcover``, the Sentinel-2-like scene phantom;
* ``noise`` gives both phantoms their smooth random textures;
* ``output`` holds the staging folder that replaces an earlier sample, and the run's summary.

Generation is deterministic for a seed: the same params give byte-identical files.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from medvit.config import SampleConfig
from medvit.errors import UserError
from medvit.sample.medical import write_medical
from medvit.sample.output import SampleSummary
from medvit.sample.satellite import write_satellite

__all__ = ["SampleSummary", "write_medical", "write_sample", "write_satellite"]

# Each domain's writer; it takes the SampleConfig section of the same name.
WRITERS: dict[str, Callable[[Path, Any, int], SampleSummary]] = {"medical": write_medical,
                                                                 "satellite": write_satellite}


def write_sample(domain: str, out: str | Path, cfg: SampleConfig) -> SampleSummary:
    """Write the demo data set of ``domain`` into ``out`` (replacing an earlier sample there)."""
    if domain not in WRITERS:
        raise UserError(f"unknown domain {domain!r}: use {' or '.join(WRITERS)}")
    return WRITERS[domain](Path(out), getattr(cfg, domain), cfg.seed)
