"""The one registry of ingest sources: data set format -> source class, domain -> default format.

A new format is one module with a ``Source`` subclass plus one line in ``FORMATS``.
Sources are imported on first use, so a medical run never loads rasterio.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from medvit.config import IngestConfig
from medvit.errors import UserError
from medvit.ingest.source import Source

# format -> "module:class"
FORMATS: dict[str, str] = {
    "nih": "medvit.ingest.nih:NihSource",
    "scenes": "medvit.ingest.scenes:ScenesSource",
}

# domain -> the format its raw folder is read as
DEFAULT_FORMAT: dict[str, str] = {
    "medical": "nih",
    "satellite": "scenes",
}


def source_class(domain: str) -> type[Source]:
    """The source class that reads ``domain``'s raw data.

    Raises:
        UserError: an unknown domain.
    """
    if domain not in DEFAULT_FORMAT:
        raise UserError(f"unknown domain {domain!r}; ingest knows {sorted(DEFAULT_FORMAT)}")
    module, _, name = FORMATS[DEFAULT_FORMAT[domain]].partition(":")
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, Source), cls
    return cls


def make_source(domain: str, raw: Path, labels: Path, tmp: Path, cfg: IngestConfig) -> Source:
    """The source for ``domain`` over ``raw`` and ``labels``, writing into ``tmp``."""
    return source_class(domain)(raw, labels, tmp, cfg)
