"""Header values as strings through pydicom: one shape for every caller, PHI-free errors."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.datadict import keyword_for_tag

from medvit.io import dicom_values


def _secondary_capture(transfer_syntax: str) -> pydicom.Dataset:
    """An empty Secondary Capture dataset with the file meta ``save_as`` needs."""
    ds = pydicom.Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = pydicom.uid.generate_uid()
    return ds


def test_binary_text_and_multi_values(tmp_path: Path) -> None:
    ds = _secondary_capture(pydicom.uid.ImplicitVRLittleEndian)
    ds.Rows, ds.PixelRepresentation = 512, 1
    ds.WindowCenter, ds.WindowWidth = ["40", "-600"], ["400", "1500"]
    ds.PatientID = "ID 7 "
    ds.OtherPatientIDs = ["A ", "B"]
    ds.PatientName = "Doe^Jane"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    path = tmp_path / "x.dcm"
    ds.save_as(path, enforce_file_format=True)
    read = pydicom.dcmread(path)
    assert dicom_values.value(read, "Rows") == "512"
    assert dicom_values.value(read, "WindowCenter") == ["40", "-600"]
    assert dicom_values.number(read, "WindowCenter") == 40.0
    assert dicom_values.number(read, "RescaleSlope", 1.0) == 1.0
    assert dicom_values.value(read, "PatientID") == "ID 7"
    assert dicom_values.value(read, "OtherPatientIDs") == ["A", "B"]
    assert dicom_values.value(read, "PatientName") == "Doe^Jane"
    assert dicom_values.value(read, "ImageType") == ["ORIGINAL", "PRIMARY"]
    assert dicom_values.value(read, "StudyDate") is None
    with pytest.raises(KeyError):
        dicom_values.tag_of("NotAKeyword")
    assert keyword_for_tag(dicom_values.tag_of("Rows")) == "Rows"


def test_non_numeric_value_names_the_keyword_not_the_value(tmp_path: Path) -> None:
    ds = _secondary_capture(pydicom.uid.ExplicitVRLittleEndian)
    ds.RescaleSlope, ds.RescaleIntercept = "9.5", ""
    path = tmp_path / "x.dcm"
    ds.save_as(path, enforce_file_format=True)
    path.write_bytes(path.read_bytes().replace(b"9.5 ", b"Doe "))  # a name where a number belongs
    read = pydicom.dcmread(path)
    assert dicom_values.number(read, "RescaleIntercept", 0.0) == 0.0  # empty: the default
    with pytest.raises(dicom_values.NotANumber) as err:
        dicom_values.number(read, "RescaleSlope", 1.0)
    assert err.value.keyword == "RescaleSlope" and "Doe" not in str(err.value)
