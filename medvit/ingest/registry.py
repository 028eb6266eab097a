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
    "chexpert": "medvit.ingest.chexpert:ChexpertSource",
    "mimic": "medvit.ingest.mimic:MimicSource",
    "scenes": "medvit.ingest.scenes:ScenesSource",
    "bigearthnet-v1": "medvit.ingest.bigearthnet:BigEarthNetV1Source",
    "bigearthnet-v2": "medvit.ingest.bigearthnet:BigEarthNetV2Source",
    "eurosat": "medvit.ingest.eurosat:EuroSatSource",
}

# domain -> the format its raw folder is read as
DEFAULT_FORMAT: dict[str, str] = {
    "medical": "nih",
    "satellite": "scenes",
}

# domain -> the ``ingest.<domain>`` param that names its format (unset or null: ``DEFAULT_FORMAT``)
FORMAT_PARAM: dict[str, str] = {
    "medical": "label_format",
    "satellite": "format",
}

# domain -> formats told apart by their labels file when the format param is null (``Source.detect``)
DETECTED: dict[str, tuple[str, ...]] = {
    "medical": ("nih", "chexpert", "mimic"),
}


def format_name(domain: str, cfg: IngestConfig | None = None, labels: Path | None = None) -> str:
    """The format ``domain``'s raw folder is read as: its format param in ``cfg``, else the default.

    With the param null and ``labels`` an existing file, formats in ``DETECTED`` are asked in turn
    whether the file is theirs (the CSV header, for medical). Only ``cfg.<domain>`` is read, so one
    domain's ingest never depends on the other's params.

    Raises:
        UserError: an unknown domain or format.
    """
    if domain not in DEFAULT_FORMAT:
        raise UserError(f"unknown domain {domain!r}; ingest knows {sorted(DEFAULT_FORMAT)}")
    key = FORMAT_PARAM.get(domain)
    name = getattr(getattr(cfg, domain), key) if key is not None and cfg is not None else None
    if not name and labels is not None and labels.is_file() and domain in DETECTED:
        name = detect_format(domain, labels)
    name = name or DEFAULT_FORMAT[domain]
    if name not in FORMATS:
        raise UserError(f"unknown {domain} format {name!r}; ingest knows {sorted(FORMATS)}")
    return name


def detect_format(domain: str, labels: Path) -> str:
    """The one format of ``DETECTED[domain]`` that recognises ``labels``.

    Raises:
        UserError: no format (or several) recognises the file.
    """
    hits = [f for f in DETECTED[domain] if load_class(f).detect(labels)]
    if len(hits) != 1:
        raise UserError(f"{labels}: cannot tell the labels format from its header (matches {hits or 'none'} of "
                        f"{list(DETECTED[domain])}); set ingest.{domain}.{FORMAT_PARAM[domain]} in params.yaml")
    return hits[0]


def load_class(fmt: str) -> type[Source]:
    """The source class registered for format ``fmt`` (imported now)."""
    module, _, name = FORMATS[fmt].partition(":")
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, Source), cls
    return cls


def source_class(domain: str, cfg: IngestConfig | None = None, labels: Path | None = None) -> type[Source]:
    """The source class that reads ``domain``'s raw data in the format ``cfg`` names or ``labels`` shows.

    Without ``cfg`` (or with the format param null and no labels file) the domain's default format.

    Raises:
        UserError: an unknown domain or format, or a labels file no format recognises.
    """
    return load_class(format_name(domain, cfg, labels))


def make_source(domain: str, raw: Path, labels: Path, tmp: Path, cfg: IngestConfig) -> Source:
    """The source for ``domain`` over ``raw`` and ``labels``, writing into ``tmp``."""
    return source_class(domain, cfg, labels)(raw, labels, tmp, cfg)
