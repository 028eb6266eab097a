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

