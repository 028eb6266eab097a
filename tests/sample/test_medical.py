"""Medical sample files: valid DICOM Part 10, CheXpert-style labels, MONOCHROME1 and planted PHI."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut
from pydicom.uid import UID, ExplicitVRLittleEndian

from medvit.config import SampleMedical
from medvit.data.layout import NO_FINDING
from medvit.errors import UserError
from medvit.sample.medical import (
    PHI_PRIVATE_CREATOR,
    UNCERTAIN_FRACTION,
    SITES,
    Patient,
    StoredImage,
    Study,
    build_header,
    build_pixels,
    write_medical,
)

MEDICAL = SampleMedical(n_patients=8, images_per_patient=3, image_size=64)
DX, CR = "1.2.840.10008.5.1.4.1.1.1.1", "1.2.840.10008.5.1.4.1.1.1"
# Header attributes that carry planted (synthetic) PHI; every value contains "PHI" except the birth
# date. Ingest must remove or replace all of them (PS3.15 Annex E basic profile).
PHI_KEYWORDS: tuple[str, ...] = (
    "PatientName", "PatientID", "PatientBirthDate", "AccessionNumber", "InstitutionName",
    "InstitutionAddress", "ReferringPhysicianName", "OperatorsName", "OtherPatientIDs", "StudyID",
)
PHI_PATTERN = re.compile(r"PHI(?:DOE|PID|ACC|REF|OPR|OID|STD|PRIV)\w*|PHI [A-Z]\w+ (?:Hospital|Clinic|Medical Center)"
                         r"|PHI Street")


def planted_phi(raw_dir: Path) -> set[str]:
    """Every planted PHI value in the DICOM headers under ``raw_dir`` (what de-identification must drop)."""
    values: set[str] = set()
    for path in sorted(raw_dir.rglob("*.dcm")):
        ds = dcmread(path, stop_before_pixels=True)
        for keyword in PHI_KEYWORDS:
            if keyword in ds and ds[keyword].value not in (None, ""):
                values.add(str(ds[keyword].value))
        try:
            values.add(str(ds.private_block(0x0011, PHI_PRIVATE_CREATOR)[0x01].value))
        except KeyError:  # not a file the sample stage wrote
            pass
    return values


@pytest.fixture(scope="module")
def medical(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("raw") / "medical"
    write_medical(out, MEDICAL, seed=0)
    return out


def _display(ds) -> np.ndarray:
    """PS3.3 display chain: modality LUT, first linear window to [0, 1], MONOCHROME1 inverted."""
    center, width = (float(ds[k].value[0] if ds[k].VM > 1 else ds[k].value) for k in ("WindowCenter", "WindowWidth"))
    out = np.clip((apply_modality_lut(ds.pixel_array, ds) - (center - width / 2)) / width, 0, 1)
    return 1 - out if ds.PhotometricInterpretation == "MONOCHROME1" else out


def test_medical_files_are_valid_dicom_part10(medical: Path) -> None:
    files = sorted((medical / "images").glob("*.dcm"))
    assert len(files) == MEDICAL.n_patients * MEDICAL.images_per_patient
    seen: Counter[str] = Counter()
    uids: set[str] = set()
    for path in files:
        raw = path.read_bytes()
        assert raw[128:132] == b"DICM"  # Part 10: 128-byte preamble, then the prefix
        ds = dcmread(path)
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.SOPClassUID in (DX, CR) and ds.Modality == ("DX" if ds.SOPClassUID == DX else "CR")
        for uid in (ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID):
            assert UID(uid).is_valid
            uids.add(str(uid))
        assert ds.BitsAllocated == 16 and ds.BitsStored in (12, 16) and ds.HighBit == ds.BitsStored - 1
        arr = ds.pixel_array
        assert arr.shape == (64, 64) and arr.dtype == np.uint16 and arr.max() <= 2**ds.BitsStored - 1
        assert ds.PhotometricInterpretation in ("MONOCHROME1", "MONOCHROME2")
        assert float(ds.RescaleSlope) > 0 and "RescaleIntercept" in ds
        assert "WindowCenter" in ds and "WindowWidth" in ds
        if ds.Modality == "DX":  # PS3.3 C.8.11.7: DX rescale is the identity
            assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (1.0, 0.0)
        seen[ds.PhotometricInterpretation] += 1
        seen[ds.file_meta.TransferSyntaxUID.name] += 1
        seen[f"burned {ds.BurnedInAnnotation}"] += 1
        seen[f"rescale {ds.RescaleSlope}/{ds.RescaleIntercept}"] += 1
    assert len(uids) == 3 * len(files)
    assert seen["MONOCHROME1"] == round(0.25 * len(files))
    assert seen["burned YES"] == MEDICAL.burned_in and seen["burned NO"] == len(files) - MEDICAL.burned_in
    for syntax in ("Explicit VR Little Endian", "Implicit VR Little Endian", "RLE Lossless",
                   "JPEG 2000 Image Compression (Lossless Only)"):
        assert seen[syntax] > 0, syntax
    assert sum(1 for k in seen if k.startswith("rescale")) > 1  # slopes / intercepts vary


def _labels(medical: Path) -> pd.DataFrame:
    return pd.read_csv(medical / "labels.csv", dtype=str, keep_default_na=False)


def test_labels_csv_is_chexpert_style(medical: Path) -> None:
    labels = _labels(medical)
    findings = list(MEDICAL.findings)
    assert list(labels.columns) == ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", NO_FINDING, *findings]
    assert sorted(labels["Path"]) == sorted(f"images/{p.name}" for p in (medical / "images").glob("*.dcm"))
    cells = labels[findings].to_numpy()
    assert set(cells.ravel()) == {"1.0", "0.0", "-1.0", ""}
    assert (cells == "-1.0").sum() == round(UNCERTAIN_FRACTION * cells.size)
    assert ((cells == "1.0").sum(1) >= 2).any()  # findings co-occur
    assert all((cells[:, j] == "1.0").any() for j in range(len(findings)))
    # No Finding is 1.0 only on rows without a positive finding.
    normal = labels[NO_FINDING].to_numpy() == "1.0"
    assert normal.any() and not (cells[normal] == "1.0").any()
    assert set(labels["Sex"]) == {"Female", "Male"} and set(labels["Frontal/Lateral"]) == {"Frontal"}
    assert set(labels["AP/PA"]) == {"AP", "PA"} and labels["Age"].astype(int).between(18, 100).all()
    for _, row in labels.iterrows():
        ds = dcmread(medical / row["Path"], stop_before_pixels=True)
        assert ds.ViewPosition == row["AP/PA"] and {"F": "Female", "M": "Male"}[ds.PatientSex] == row["Sex"]
        assert str(ds.PatientID) not in row["Path"]  # the file name must not leak the patient


def test_monochrome1_displays_like_monochrome2(medical: Path) -> None:
    photometric = set()
    for path in sorted((medical / "images").glob("*.dcm")):
        ds = dcmread(path)
        if ds.BurnedInAnnotation == "YES":  # its text box covers the corner
            continue
        image = _display(ds)
        photometric.add(ds.PhotometricInterpretation)
        # Air above the shoulders is dark and the spine above the heart bright, whatever the photometry.
        assert image[:4, :4].mean() < 0.15, path.name
        assert image[8:20, 30:34].mean() > 0.5, path.name
    assert photometric == {"MONOCHROME1", "MONOCHROME2"}


def test_file_labels_match_the_pixels(medical: Path) -> None:
    labels = _labels(medical)
    display = {n: _display(dcmread(medical / n)) for n in labels["Path"]}
    # The enlarged heart covers the lung beside and above the normal heart: (rows, cols) of 64 px.
    # (The other findings' effects are checked on paired renders below: in 24 files they overlap.)
    value = np.array([display[n][27:32, 32:48].mean() for n in labels["Path"]])
    positive, negative = (labels["cardiomegaly"] == "1.0").to_numpy(), labels["cardiomegaly"].isin(["0.0", ""])
    assert value[positive].mean() - value[negative.to_numpy()].mean() > 0.15


def test_planted_phi_is_in_the_raw_headers(medical: Path) -> None:
    phi = planted_phi(medical)
    text = (medical / "labels.csv").read_text()
    assert not any(value in text for value in phi)  # CheXpert's CSV has no patient id column
    ds = dcmread(next((medical / "images").glob("*.dcm")), stop_before_pixels=True)
    for keyword in PHI_KEYWORDS:
        value = str(ds[keyword].value)
        assert value in phi, keyword
        assert keyword == "PatientBirthDate" or PHI_PATTERN.search(value), keyword
    assert str(ds.InstitutionName) in {name for name, _ in SITES} and str(ds.PatientName).startswith("PHIDOE^")
    assert any(v.startswith("PHIPRIV ") for v in phi)  # private tag, removed by the basic profile


def test_headers_vary_sex_age_view_site_and_device_for_subgroups(medical: Path) -> None:
    headers = [dcmread(p, stop_before_pixels=True) for p in sorted((medical / "images").glob("*.dcm"))]
    sites = Counter(str(ds.InstitutionName) for ds in headers)
    assert set(sites) == {name for name, _ in SITES}  # 8 patients: 4 / 2 / 2 over the three sites
    for ds in headers:
        devices = dict(SITES)[str(ds.InstitutionName)]
        assert (ds.Manufacturer, ds.ManufacturerModelName) == devices[ds.Modality]
    assert len({str(ds.Manufacturer) for ds in headers}) >= 4
    assert {str(ds.PatientSex) for ds in headers} == {"F", "M"}
    assert {str(ds.ViewPosition) for ds in headers} == {"PA", "AP"}
    assert len({str(ds.PatientAge)[:2] for ds in headers if "PatientAge" in ds}) >= 3  # several decades


def test_unknown_finding_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="sample.medical.findings"):
        write_medical(tmp_path / "m", SampleMedical(n_patients=1, image_size=32, findings=("fracture",)), 0)
    assert not (tmp_path / "m").exists()


def _study(modality: str) -> Study:
    rng = np.random.default_rng(3)
    patient = Patient.draw(rng, 7)
    first = Study.draw(rng, patient, 0, patient.first_study, ())
    later = Study.draw(rng, patient, 1, first.date, ("effusion",))
    assert first.date == patient.first_study and 14 <= (later.date - first.date).days < 400
    return Study(patient, later.index, later.date, later.findings, later.view, modality)


def _shown(image: StoredImage) -> np.ndarray:
    """PS3.3 display chain on a built image: modality LUT, first window to [0, 1], MONOCHROME1 inverted."""
    low = image.centers[0] - image.widths[0] / 2
    window = np.clip((image.pixels * image.slope + image.intercept - low) / image.widths[0], 0, 1)
    return 1 - window if image.photometric == "MONOCHROME1" else window


@pytest.mark.parametrize("modality", ["DX", "CR"])
def test_pixel_builder_inverts_monochrome1_so_it_displays_the_same(modality: str) -> None:
    study = _study(modality)
    plain, mono1 = (build_pixels(np.random.default_rng(0), study, 48, burned_in=False, two_windows=True,
                                 monochrome1=m) for m in (False, True))
    assert (plain.photometric, mono1.photometric) == ("MONOCHROME2", "MONOCHROME1") and len(plain.centers) == 2
    assert np.array_equal(mono1.pixels, 2**plain.bits - 1 - plain.pixels)
    identity = (plain.slope, plain.intercept) == (1.0, 0.0)
    assert identity if modality == "DX" else not identity  # PS3.3 C.8.11.7: DX rescale is the identity
    assert np.allclose(_shown(plain), _shown(mono1), atol=1e-6) and _shown(plain).std() > 0.1


def test_header_builder_plants_phi_and_describes_the_pixels() -> None:
    study = _study("DX")
    image = build_pixels(np.random.default_rng(0), study, 48, burned_in=True, two_windows=False, monochrome1=True)
    ds = build_header(np.random.default_rng(1), study, image, ExplicitVRLittleEndian, seed=0)
    assert isinstance(ds, Dataset) and "PixelData" not in ds  # the pixels go in when the file is saved
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID and ds.SOPClassUID == DX
    assert (ds.Rows, ds.Columns, ds.BitsStored, ds.HighBit) == (48, 48, image.bits, image.bits - 1)
    assert ds.PhotometricInterpretation == "MONOCHROME1" and ds.PresentationLUTShape == "INVERSE"
    assert ds.BurnedInAnnotation == "YES" and ds.PatientID == study.patient.patient_id
    assert ds.PatientAge == f"{study.age:03d}Y" and ds.StudyDate == f"{study.date:%Y%m%d}"
    assert ds.InstitutionName == SITES[study.patient.site][0] == "PHI Riverside Medical Center"  # patient 7
    assert (ds.Manufacturer, ds.ManufacturerModelName) == ("GE Healthcare", "Definium 656 HD")  # its DX
    assert ds.private_block(0x0011, PHI_PRIVATE_CREATOR)[0x01].value == f"PHIPRIV {study.patient.name}"
    for keyword in PHI_KEYWORDS:
        assert keyword == "PatientBirthDate" or PHI_PATTERN.search(str(ds[keyword].value)), keyword
    again = build_header(np.random.default_rng(1), study, image, ExplicitVRLittleEndian, seed=0)
    other = build_header(np.random.default_rng(1), study, image, ExplicitVRLittleEndian, seed=1)
    assert again.StudyInstanceUID == ds.StudyInstanceUID != other.StudyInstanceUID  # UIDs follow the seed
    assert dt.datetime.strptime(ds.StudyTime, "%H%M%S").hour in range(7, 19)
