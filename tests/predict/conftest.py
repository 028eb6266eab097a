"""Predict fixtures: the tracking tests' tiny registered models (real SQLite MLflow store), with preprocessing."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Callable

import pytest

from medvit.data.preprocess import Preprocessor
from medvit.io.dicom import DicomOptions
from tracking.conftest import empty_store, make_model, make_report, register, tracking  # noqa: F401 - fixtures

MEDICAL_PREP = Preprocessor("medical", 48, dicom=asdict(DicomOptions())).with_model(32, [0.45], [0.25])
SATELLITE_PREP = Preprocessor("satellite", 32, bands=(1, 2, 3), stride=32, max_nodata_fraction=0.5,
                              fill=(0.2, 0.3, 0.4)).with_model(32, [0.2, 0.3, 0.4], [0.1, 0.1, 0.1])


@pytest.fixture
def registered(make_model: Callable[..., dict], make_report: Callable[..., Any],
               register: Callable[..., int], tracking: str) -> Callable[[str], dict]:
    """Factory: ``registered(domain)`` registers a tiny model for ``domain`` (version 1, alias candidate)."""

    def _make(domain: str = "medical") -> dict:
        prep = MEDICAL_PREP if domain == "medical" else SATELLITE_PREP
        meta = make_model(in_chans=prep.model["in_chans"], mean=prep.model["mean"], std=prep.model["std"],
                          preprocess=prep.to_json())
        make_report(thresholds=[0.3, 0.5, 0.6])
        assert register(domain) == 0
        return meta

    return _make
