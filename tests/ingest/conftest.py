"""Ingest tests: every test runs with a fixed de-identification key; shared input writers live in ingest_inputs.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The input writers (tests/ingest/ingest_inputs.py) are imported by name, like tests/servers.py.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest_inputs import KEY  # noqa: E402 - after the sys.path line

from medvit.deid import KEY_ENV  # noqa: E402


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
