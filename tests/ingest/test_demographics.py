"""Subgroup columns from DICOM headers and CSV cells: sex, age band, view, device, keyed site."""

from __future__ import annotations

import pydicom
import pytest
from pydicom.data import get_testdata_file

from medvit.data.layout import SUBGROUP_COLUMNS
from medvit.deid import Pseudonymizer
from medvit.ingest import demographics as demo
from medvit.io.dicom import read_header

PSEUDO = Pseudonymizer(b"test-key")


@pytest.mark.parametrize(("value", "code"), [
    ("F", "F"), ("M", "M"), ("O", "O"), (" f ", "F"), ("Female", "F"), ("Male", "M"), ("Unknown", "unknown"),
    ("", "unknown"), (None, "unknown"), ("X", "unknown"), ("PHIDOE", "unknown"),
])
def test_sex(value: object, code: str) -> None:
    assert demo.sex_code(value) == code


@pytest.mark.parametrize(("value", "band"), [
    ("045Y", "40-49"), ("006M", "0-9"), ("003W", "0-9"), ("010D", "0-9"), ("119M", "0-9"), ("120M", "10-19"),
    ("089Y", "80-89"), ("090Y", "90+"), ("104Y", "90+"), (90, "90+"), ("90", "90+"), (0, "0-9"), ("9.9", "0-9"),
    ("10", "10-19"), (" 58 ", "50-59"), ("412", "unknown"), ("-3", "unknown"), ("", "unknown"), (None, "unknown"),
    ("nan", "unknown"), ("forty", "unknown"), ("045X", "unknown"),
])
def test_age_band_from_age_strings_and_csv_numbers(value: object, band: str) -> None:
    assert demo.age_band(demo.age_years(value)) == band


def test_age_from_birth_and_study_dates_counts_whole_years() -> None:
    assert demo.age_from_dates("19500615", "20200614") == 69.0
    assert demo.age_from_dates("19500615", "20200615") == 70.0
    assert demo.age_from_dates("19500615", "") is None and demo.age_from_dates("19501345", "20200101") is None
    assert demo.age_from_dates("20200101", "19500101") is None  # study before birth


@pytest.mark.parametrize(("value", "code"), [
    ("PA", "PA"), ("ap", "AP"), (" LL ", "LL"), ("LATERAL", "LATERAL"), ("RL", "RL"), ("", "unknown"),
    ("Patient standing, AP", "unknown"), ("A" * 17, "unknown"), (["PA", "AP"], "PA"),
])
def test_view_is_an_upper_case_code_string_or_unknown(value: object, code: str) -> None:
    assert demo.view_code(value) == code


def test_chexpert_view() -> None:
    assert demo.chexpert_view("Frontal", "AP") == "AP"
    assert demo.chexpert_view("Lateral", "") == "LATERAL"
    assert demo.chexpert_view("Lateral", "LL") == "LL"
    assert demo.chexpert_view("Frontal", "") == "unknown"


def test_device_names_are_normalised_and_bounded() -> None:
    assert demo.device_name("  GE\tHealthcare \n ") == "GE Healthcare"
    assert demo.device_name("Vendor\x00X") == "Vendor X"
    assert demo.device_name("") == demo.device_name(None) == "unknown"
    assert len(demo.device_name("x" * 200)) == 64


def test_site_is_a_keyed_pseudonym_independent_of_case_and_spacing() -> None:
    a = demo.site("St. Elsewhere  Hospital", PSEUDO)
    assert a == demo.site("st. elsewhere hospital ", PSEUDO)
    assert a.startswith("H") and len(a) == 17 and "elsewhere" not in a.lower()
    assert a != demo.site("St. Elsewhere Hospital", Pseudonymizer(b"another-key"))
    assert a != demo.site("General Hospital", PSEUDO)
    assert demo.site("", PSEUDO) == demo.site(None, PSEUDO) == "unknown"


def test_dicom_demographics_from_a_real_header() -> None:
    path = get_testdata_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    header = read_header(path).header  # what ingest hands over: the header read must ask for these tags
    out = demo.dicom_demographics(header, PSEUDO)
    assert list(out) == list(SUBGROUP_COLUMNS)
    # CT_small.dcm: PatientSex O, PatientAge 000Y, GE MEDICAL SYSTEMS RHAPSODE, JFK IMAGING CENTER.
    assert out == {"sex": "O", "age_band": "0-9", "view": "unknown", "manufacturer": "GE MEDICAL SYSTEMS",
                   "manufacturer_model": "RHAPSODE", "site": demo.site("JFK IMAGING CENTER", PSEUDO)}
    assert str(ds.InstitutionName) not in out.values()


def test_dicom_age_falls_back_to_dates_without_returning_them() -> None:
    header = {"PatientBirthDate": "19600301", "StudyDate": "20210228", "PatientAge": ""}
    out = demo.dicom_demographics(header, PSEUDO)
    assert out["age_band"] == "60-69"
    assert not any("1960" in v or "2021" in v for v in out.values())
    assert demo.dicom_demographics({"PatientAge": "075Y", "PatientBirthDate": "20000101", "StudyDate": "20100101"},
                                   PSEUDO)["age_band"] == "70-79"  # PatientAge wins
    assert demo.dicom_demographics({}, PSEUDO) == demo.unknown_demographics()


def test_csv_demographics_and_merge() -> None:
    csv = demo.csv_demographics(sex="Female", age="90", view="PA")
    assert csv == {"sex": "F", "age_band": "90+", "view": "PA", "manufacturer": "unknown",
                   "manufacturer_model": "unknown", "site": "unknown"}
    header = {**demo.unknown_demographics(), "sex": "M", "manufacturer": "Acme"}
    merged = demo.merge(header, csv)
    assert merged == {**csv, "sex": "M", "manufacturer": "Acme"}  # the first one wins where it knows
    assert demo.merge(header, None) == header
