"""The one registry of sources: every domain resolves to a Source, unknown domains are a UserError."""

from __future__ import annotations

from pathlib import Path

import pytest

from medvit.config import parse_params
from medvit.errors import UserError
from medvit.ingest.registry import DEFAULT_FORMAT, FORMATS, load_class, source_class
from medvit.ingest.source import Source


def test_every_domain_has_a_registered_source() -> None:
    assert set(DEFAULT_FORMAT) == {"medical", "satellite"}
    assert set(DEFAULT_FORMAT.values()) <= set(FORMATS)
    classes = {domain: source_class(domain) for domain in DEFAULT_FORMAT}
    assert all(issubclass(cls, Source) for cls in classes.values())
    assert classes["medical"].__name__ == "NihSource" and classes["satellite"].__name__ == "ScenesSource"


def test_an_unknown_domain_names_the_known_ones() -> None:
    with pytest.raises(UserError, match=r"unknown domain 'xray'.*\['medical', 'satellite'\]"):
        source_class("xray")


def test_default_labels_follow_the_sample_layout(tmp_path: Path) -> None:
    raster = parse_params({}).ingest
    csv = parse_params({"ingest": {"satellite": {"label_source": "csv"}}}).ingest
    assert source_class("medical").default_labels(tmp_path, raster) == tmp_path / "labels.csv"
    assert source_class("satellite").default_labels(tmp_path, raster) == tmp_path / "labels"
    assert source_class("satellite").default_labels(tmp_path, csv) == tmp_path / "tiles.csv"


def test_the_medical_format_is_detected_from_the_labels_header_unless_set(tmp_path: Path) -> None:
    null = parse_params({}).ingest
    heads = {"nih": "Image Index,Finding Labels,Patient ID\n",
             "chexpert": "Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Edema\n",
             "mimic": "subject_id,study_id,Atelectasis\n"}
    for fmt, head in heads.items():
        (tmp_path / f"{fmt}.csv").write_text(head + "x\n")
        assert source_class("medical", null, tmp_path / f"{fmt}.csv") is load_class(fmt)
        assert load_class(fmt).__name__.lower().startswith(fmt)
    mimic = parse_params({"ingest": {"medical": {"label_format": "mimic"}}}).ingest
    assert source_class("medical", mimic, tmp_path / "nih.csv") is load_class("mimic")   # the param wins
    assert source_class("medical", mimic).default_labels(tmp_path, mimic) == tmp_path / "mimic-cxr-2.0.0-chexpert.csv"
    assert source_class("medical", null) is load_class("nih")                            # no labels file yet
    (tmp_path / "other.csv").write_text("file,label\n")
    with pytest.raises(UserError, match=r"other\.csv: cannot tell the labels format.*ingest\.medical\.label_format"):
        source_class("medical", null, tmp_path / "other.csv")
