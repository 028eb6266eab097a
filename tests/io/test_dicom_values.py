"""The raw-bytes header reader gives pydicom's own values, on every file pydicom ships."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import RawDataElement
from pydicom.multival import MultiValue

from medvit.io import dicom_values
from medvit.io.dicom import HEADER_KEYWORDS

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
# What ingest reads: the de-identification header and the image / intensity-chain attributes.
KEYWORDS = (*HEADER_KEYWORDS, "SamplesPerPixel", "BitsAllocated", "PixelRepresentation", "HighBit",
            "RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth", "VOILUTFunction",
            "SpecificCharacterSet", "SeriesDescription", "InstitutionName", "StudyDate", "ImageType")


def _pydicom_value(ds: pydicom.Dataset, keyword: str) -> object:
    try:
        if keyword not in ds:
            return None
        v = ds[keyword].value
    except Exception:  # noqa: BLE001 - malformed elements read as None in both
        return None
    if v is None:
        return None
    if isinstance(v, (list, MultiValue)):
        return [str(x) for x in v]
    return str(v)


def test_values_match_pydicom_on_every_shipped_file() -> None:
    fast_reads = 0
    checked = 0
    for path in sorted(p for p in TEST_FILES.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path, force=True)
            list(ds.keys())
        except Exception:  # noqa: BLE001 - unreadable files: not this test's business
            continue
        reference = pydicom.dcmread(path, force=True)
        for keyword in KEYWORDS:
            raw = ds.get_item(dicom_values.tag_of(keyword)) if keyword in ds else None
            fast_reads += int(isinstance(raw, RawDataElement) and bool(raw.value))
            assert dicom_values.value(ds, keyword) == _pydicom_value(reference, keyword), (path.name, keyword)
            checked += 1
    assert checked > 2000 and fast_reads > 500  # the raw-bytes path really ran


def test_binary_text_and_multi_values(tmp_path: Path) -> None:
    ds = pydicom.Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = pydicom.uid.generate_uid()
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
