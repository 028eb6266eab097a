"""De-identification: keyed pseudonyms, key sources, the allow-list and Annex E actions, path checks."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from medvit.deid import ALLOWED, BASIC_PROFILE, KEY_ENV, KEY_FILE, Pseudonymizer, deidentify, identifiers, \
    load_key, path_has_identifier


def test_pseudonyms_are_keyed_consistent_and_hide_the_value() -> None:
    a, b = Pseudonymizer(b"k1"), Pseudonymizer(b"k2")
    assert a.patient("PAT-123") == a.patient("PAT-123 ")
    assert a.patient("PAT-123") != b.patient("PAT-123")
    assert a.patient("PAT-123") != a.patient("PAT-124")
    assert "123" not in a.patient("PAT-123")
    uid = a.uid("1.2.3.4")
    assert uid.startswith("2.25.") and uid == a.uid("1.2.3.4") and len(uid) <= 64
    assert a.sample("x.dcm", 0) != a.sample("x.dcm", 1)


def test_key_from_env_then_file_then_demo_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    with caplog.at_level(logging.WARNING):
        key, source = load_key(tmp_path)
    assert source == "demo-default" and "PUBLIC demo default" in caplog.text
    (tmp_path / KEY_FILE).write_text("file-secret\n")
    assert load_key(tmp_path) == (b"file-secret", "file")
    monkeypatch.setenv(KEY_ENV, "env-secret")
    assert load_key(tmp_path) == (b"env-secret", "env")


def test_only_allowed_attributes_leave_with_annex_e_actions() -> None:
    pseudo = Pseudonymizer(b"k")
    header = {"PatientName": "DOE^JANE", "PatientID": "MRN0042", "StudyInstanceUID": "1.2.826.0.1.99",
              "Modality": "CR", "ViewPosition": "PA", "BodyPartExamined": "Jane Doe's chest",
              "Rows": "512", "PixelSpacing": ["0.1", "0.1"], "InstitutionName": "St Elsewhere"}
    out = deidentify(header, pseudo)
    assert set(out) == set(ALLOWED.values())
    text = repr(out)
    for phi in ("DOE", "JANE", "Jane", "MRN0042", "1.2.826.0.1.99", "Elsewhere"):
        assert phi not in text
    assert out["study"] == pseudo.uid("1.2.826.0.1.99")            # Annex E "U"
    assert out["modality"] == "CR" and out["view_position"] == "PA" and out["rows"] == "512"
    assert out["pixel_spacing"] == "0.1\\0.1"
    assert out["body_part"] == ""                                  # free text in a CS field is dropped
    # No allowed attribute is one the basic profile removes or blanks.
    for keyword in ALLOWED:
        assert BASIC_PROFILE.get(keyword, "K") in ("K", "C", "U"), keyword


def test_paths_with_identifiers_are_detected() -> None:
    assert path_has_identifier("images/00000001_000.png", ["1"])     # ChestX-ray14 naming, zero padded
    assert path_has_identifier("images/scan_MRN0042_a.dcm", ["MRN0042"])
    assert path_has_identifier("DOE_JANE/1.dcm", identifiers({"PatientName": "Doe^Jane"}))
    assert not path_has_identifier("images/00000002_000.png", ["1"])
    assert not path_has_identifier("images/a.dcm", ["", "MRN0042"])
    pseudo = Pseudonymizer(b"k")
    assert pseudo.source("images/00000001_000.png", ["1"]).startswith("pseudo:")
    assert pseudo.source("images/a.dcm", ["1"]) == "images/a.dcm"
