"""The sample's medical data through ingest: non-trivial subgroup columns, and none of its planted PHI out."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from ingest_inputs import all_bytes, ingest_cfg
from pydicom import dcmread

from medvit.config import SampleMedical
from medvit.data.layout import SUBGROUP_COLUMNS
from medvit.ingest import ingest
from medvit.sample.medical import SITES, write_medical

# 13 patients: patient 12 has no PatientAge (its band comes from the dates); 3 sites; DX and CR devices.
SAMPLE = SampleMedical(n_patients=13, images_per_patient=2, image_size=64, burned_in=1)
PHI_KEYWORDS = ("PatientName", "PatientID", "OtherPatientIDs", "AccessionNumber", "StudyID", "InstitutionName",
                "InstitutionAddress", "ReferringPhysicianName", "OperatorsName")
DATE_KEYWORDS = ("PatientBirthDate", "StudyDate")


def test_sample_subgroups_are_varied_and_its_phi_never_leaves_ingest(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    raw = tmp_path / "medical"
    write_medical(raw, SAMPLE, seed=0)
    headers = [dcmread(p, stop_before_pixels=True) for p in sorted((raw / "images").glob("*.dcm"))]
    phi = {str(ds[k].value) for ds in headers for k in PHI_KEYWORDS if k in ds}
    phi |= {str(ds.PatientName).split("^")[0] for ds in headers}
    dates = {str(ds[k].value) for ds in headers for k in DATE_KEYWORDS}
    assert {name for name, _ in SITES} <= phi and len(dates) > 20
    assert sum("PatientAge" not in ds for ds in headers) == 2  # patient 12's two images
    _, cfg = ingest_cfg(tmp_path)
    out = tmp_path / "cache"
    capfd.readouterr()
    with caplog.at_level("DEBUG"):
        report = ingest("medical", raw, raw / "labels.csv", out, cfg)
    captured = capfd.readouterr()
    logs = captured.out + captured.err + caplog.text

    for path, data in all_bytes(out):
        for value in phi:
            assert value.encode() not in data, (path.name, value)
    frame = pd.read_csv(out / "manifest.csv", dtype=str, keep_default_na=False)
    # Dates: every text output and the logs (the manifest's pseudonym UIDs are long decimal numbers).
    texts = [logs, json.dumps(report), (out / "rejects.csv").read_text(),
             frame.drop(columns=["study"]).to_csv(index=False)]
    for text in texts:
        for value in phi | dates:
            assert value not in text, value

    subgroups = frame[list(SUBGROUP_COLUMNS)]
    assert (subgroups != "").all().all()
    assert frame["site"].nunique() == 3 and frame["site"].str.fullmatch(r"H[0-9a-f]{16}").all()
    assert frame["manufacturer"].nunique() >= 4 and frame["manufacturer_model"].nunique() >= 4
    assert set(frame["sex"]) == {"F", "M"} and set(frame["view"]) <= {"PA", "AP"}
    assert frame["age_band"].nunique() >= 3
    assert (frame["age_band"] != "unknown").all()  # patient 12's band from PatientBirthDate and StudyDate
