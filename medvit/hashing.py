"""The one sha256 helper for fingerprints: files, text and canonical JSON.

Fingerprints are persisted and compared across runs (lineage tags, cache keys,
registry version tags), so the serialisation is fixed: JSON with sorted keys and
the standard library's default separators. ``length`` truncates the hex digest
for short ids; a keyed hash (de-identification pseudonyms) is a different job and
lives in ``medvit.deid``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20  # 1 MiB reads: constant memory for multi-GB weight files


def sha256_file(path: str | Path, length: int | None = None) -> str:
    """Hex sha256 of a file's bytes, truncated to ``length`` characters when given."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()[:length]


def sha256_text(text: str, length: int | None = None) -> str:
    """Hex sha256 of ``text`` encoded as UTF-8, truncated to ``length`` characters when given."""
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def sha256_json(obj: Any, length: int | None = None, ensure_ascii: bool = True) -> str:
    """Hex sha256 of ``json.dumps(obj, sort_keys=True)``: equal for equal content whatever the key order.

    Args:
        obj: JSON-serialisable value.
        length: keep the first ``length`` hex characters (None: all 64).
        ensure_ascii: as in ``json.dumps``; part of the fingerprint, so keep what a
            persisted fingerprint was made with.
    """
    return sha256_text(json.dumps(obj, sort_keys=True, ensure_ascii=ensure_ascii), length)
