"""DICOM SR of a model result: highdicom round trip, pydicom read, reference to the source, no PHI copied."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import pydicom
import pytest
from pydicom.data import get_testdata_file

from medvit.deid import Pseudonymizer
from medvit.io.dicom import read_header
from medvit.io.sr import NOT_FOR_CLINICAL_USE, SrError, read_sr, source_reference, write_sr

LABELS = ["effusion", "nodule", "pneumothorax"]
# Values a source header may hold that highdicom would copy from evidence into the SR.
PHI = {"PatientName": "Doe^Jane^Q", "PatientID": "MRN-778812", "PatientBirthDate": "19610423",
       "PatientSex": "F", "PatientAge": "063Y", "PatientWeight": "71.5", "EthnicGroup": "ZEBRAFISHY",
       "PatientComments": "allergic to zebrafishine", "AdditionalPatientHistory": "smoker since quokkaville",
       "AccessionNumber": "ACC99173", "StudyID": "ST55021", "StudyDate": "20190317", "StudyTime": "101112",
       "StudyDescription": "CHEST WOMBATSCAN", "ReferringPhysicianName": "House^Gregory",
       "InstitutionName": "Saint Platypus Hospital", "OtherPatientIDs": "OTHER-4471"}


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """pydicom's CT_small.dcm with identifying Patient / Study attributes added."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm", download=False))
    for keyword, text in PHI.items():
        setattr(ds, keyword, text)
    path = tmp_path / "ct.dcm"
    ds.save_as(path)
    return path


def _write(source: Path, out: Path, scores: list[float]) -> tuple[Path, pydicom.Dataset]:
    info = read_header(source)
    pseudo = Pseudonymizer(b"test-key")
    ref = source_reference(info, pseudo.patient(str(info.header["PatientID"])))
    path = write_sr(out / "sr.dcm", ref, model_name="medvit-medical", model_version="7", label_names=LABELS,
                    scores=scores, thresholds=[0.5, 0.3, 0.9])
    return path, info.ds


def test_round_trip_through_highdicom_and_pydicom(source: Path, tmp_path: Path) -> None:
    path, src = _write(source, tmp_path, [0.71, 0.12, 0.9])
    content = read_sr(path)  # highdicom.sr.srread
    assert content.referenced_sop_instance_uid == src.SOPInstanceUID
    assert content.study_instance_uid == src.StudyInstanceUID
    assert (content.model_name, content.model_version) == ("medvit-medical", "7")
    assert content.scores == pytest.approx(dict(zip(LABELS, [0.71, 0.12, 0.9])))
    # positive when score >= threshold: 0.9 >= 0.9 is a finding
    assert content.findings == {"effusion": True, "nodule": False, "pneumothorax": True}
    assert NOT_FOR_CLINICAL_USE in content.comment

    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == pydicom.uid.Comprehensive3DSRStorage
    assert ds.Modality == "SR" and ds.VerificationFlag == "UNVERIFIED" and ds.PreliminaryFlag == "PRELIMINARY"
    assert NOT_FOR_CLINICAL_USE in ds.SeriesDescription
    (evidence,) = ds.CurrentRequestedProcedureEvidenceSequence
    assert evidence.StudyInstanceUID == src.StudyInstanceUID
    assert evidence.ReferencedSeriesSequence[0].SeriesInstanceUID == src.SeriesInstanceUID
    assert evidence.ReferencedSeriesSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
    again = hd.sr.Comprehensive3DSR.from_dataset(ds)
    assert len(again.content.get_image_measurement_groups()) == 1


def test_no_source_phi_reaches_the_sr(source: Path, tmp_path: Path) -> None:
    path, _ = _write(source, tmp_path, [0.2, 0.2, 0.2])
    data = path.read_bytes()
    leaked = [k for k, v in PHI.items() if len(v) > 1 and (v.encode() in data or v.split("^")[0].encode() in data)]
    assert leaked == []  # PatientSex ("F") is one byte: checked as an attribute below
    ds = pydicom.dcmread(path)
    assert ds.PatientID == Pseudonymizer(b"test-key").patient("MRN-778812")
    assert str(ds.PatientName) == "" and ds.PatientBirthDate == "" and ds.PatientSex == "" and ds.StudyDate == ""
    for keyword in ("PatientAge", "PatientWeight", "EthnicGroup", "StudyDescription", "InstitutionName"):
        assert keyword not in ds


def test_source_without_instance_uid_cannot_be_referenced(source: Path, tmp_path: Path) -> None:
    ds = pydicom.dcmread(source)
    del ds.SOPInstanceUID
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3"
    ds.save_as(tmp_path / "no-uid.dcm")
    with pytest.raises(SrError, match="SOPInstanceUID"):
        source_reference(read_header(tmp_path / "no-uid.dcm"), "P0")


def test_a_frame_of_a_multi_frame_source_is_referenced_by_number(source: Path, tmp_path: Path) -> None:
    ref = source_reference(read_header(source), "P0")
    path = write_sr(tmp_path / "f.dcm", ref, model_name="m", model_version="1", label_names=LABELS,
                    scores=[0.1, 0.2, 0.3], thresholds=[0.5, 0.5, 0.5], frame=2)
    (group,) = hd.sr.srread(path).content.get_image_measurement_groups()
    (image,) = group.source_images
    assert list(image.referenced_frame_numbers) == [3]  # DICOM frame numbers are 1-based
