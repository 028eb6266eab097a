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

# domain -> the ``ingest.<domain>`` param that names its format (unset or null: ``DEFAULT_FORMAT``)
FORMAT_PARAM: dict[str, str] = {
    "satellite": "format",
}


def format_name(domain: str, cfg: IngestConfig | None = None) -> str:
    """The format ``domain``'s raw folder is read as: its format param in ``cfg``, else the default.

    Only ``cfg.<domain>`` is read, so one domain's ingest never depends on the other's params.

    Raises:
        UserError: an unknown domain or format.
    """
    if domain not in DEFAULT_FORMAT:
        raise UserError(f"unknown domain {domain!r}; ingest knows {sorted(DEFAULT_FORMAT)}")
    key = FORMAT_PARAM.get(domain)
    name = getattr(getattr(cfg, domain), key) if key is not None and cfg is not None else None
    name = name or DEFAULT_FORMAT[domain]
    if name not in FORMATS:
        raise UserError(f"unknown {domain} format {name!r}; ingest knows {sorted(FORMATS)}")
    return name


def source_class(domain: str, cfg: IngestConfig | None = None) -> type[Source]:
    """The source class that reads ``domain``'s raw data in the format ``cfg`` names (default without ``cfg``).

    Raises:
        UserError: an unknown domain or format.
    """
    module, _, name = FORMATS[format_name(domain, cfg)].partition(":")
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, Source), cls
    return cls


def make_source(domain: str, raw: Path, labels: Path, tmp: Path, cfg: IngestConfig) -> Source:
    """The source for ``domain`` over ``raw`` and ``labels``, writing into ``tmp``."""
    return source_class(domain, cfg)(raw, labels, tmp, cfg)
