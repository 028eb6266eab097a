"""Default locations of each stage's inputs and outputs (relative to the repo root)."""

from __future__ import annotations

from pathlib import Path

_LAYOUT = {
    "raw": "data/raw/{domain}",
    "cache": "data/cache/{domain}",
    "finetune": "models/{domain}",
    "baselines": "baselines/{domain}",
    "report": "reports/{domain}",
    "registry": "reports/{domain}/registry",
}


def default_path(kind: str, domain: str) -> Path:
    """Where ``kind`` (raw, cache, finetune, baselines, report, registry) lives for ``domain``."""
    return Path(_LAYOUT[kind].format(domain=domain))


def default_labels(domain: str, label_source: str = "raster", raw: str | Path | None = None) -> Path:
    """The labels the sample stage writes inside ``raw``: medical ``labels.csv``; satellite the
    label-raster folder ``labels/`` (label_source raster) or ``tiles.csv`` (label_source csv)."""
    raw = Path(raw) if raw is not None else default_path("raw", domain)
    if domain == "medical":
        return raw / "labels.csv"
    return raw / ("tiles.csv" if label_source == "csv" else "labels")
