"""pydicom 3 without its deprecated API, and quiet reads that leave pydicom's logging as it was."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom import config
from pydicom.data import get_testdata_file
from pydicom.filebase import DicomFileLike
from pydicom.filewriter import write_dataset

from medvit.io.dicom import DicomOptions, DicomReject, read_frames, read_header

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def _outcomes() -> dict[str, object]:
    """Per shipped file: the reject reason, or the first frame's pixel sum."""
    out: dict[str, object] = {}
    for path in sorted(p for p in TEST_FILES.rglob("*") if p.is_file()):
        try:
            _, frames = read_frames(path, DicomOptions())
            out[path.name] = round(float(next(frames)[1].sum()), 3)
        except DicomReject as err:
            out[path.name] = err.reason
    return out


@pytest.fixture
def pydicom4() -> Iterator[None]:
    """pydicom's preview of v4: the attributes deprecated in 3.0 raise AttributeError."""
    config.future_behavior(True)
    try:
        yield
    finally:
        config.future_behavior(False)


def _big_endian_without_meta(path: Path) -> Path:
    """A bare Explicit VR Big Endian data set: no preamble, no file meta, so no Transfer Syntax UID."""
    ds = pydicom.dcmread(get_testdata_file("MR_small_bigendian.dcm", download=False))
    fp = DicomFileLike(path.open("wb"))
    fp.is_little_endian, fp.is_implicit_VR = False, False
    write_dataset(fp, ds)
    fp.close()
    return path


def test_encoding_of_a_file_without_meta_comes_from_original_encoding(tmp_path: Path, pydicom4: None) -> None:
    # With the deprecated ds.is_little_endian gone (pydicom 4), only ds.original_encoding knows it.
    path = _big_endian_without_meta(tmp_path / "bare_be.dcm")
    assert read_header(path).transfer_syntax == "1.2.840.10008.1.2.2"  # Explicit VR Big Endian
    _, frames = read_frames(path, DicomOptions())
    _, reference = read_frames(get_testdata_file("MR_small_bigendian.dcm", download=False), DicomOptions())
    np.testing.assert_array_equal(next(frames)[1], next(reference)[1])


def test_shipped_files_read_the_same_with_pydicom4_behaviour() -> None:
    today = _outcomes()
    config.future_behavior(True)
    try:
        future = _outcomes()
    finally:
        config.future_behavior(False)
    assert future == today
    assert sum(v not in ("not DICOM",) and isinstance(v, float) for v in today.values()) > 50


def test_no_deprecation_warning_from_pydicom_on_the_shipped_files() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _outcomes()
    deprecated = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    assert not deprecated, [f"{w.filename}:{w.lineno} {w.message}" for w in deprecated]


def _logging_state() -> dict[str, tuple[int, list[logging.Handler], list[object], bool]]:
    names = [n for n in logging.root.manager.loggerDict if n == "pydicom" or n.startswith("pydicom.")]
    return {n: (logging.getLogger(n).level, list(logging.getLogger(n).handlers), list(logging.getLogger(n).filters),
                logging.getLogger(n).propagate) for n in names}


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_reads_are_quiet_and_leave_pydicom_logging_and_settings_as_they_were(tmp_path: Path) -> None:
    handler = _Records()
    pydicom_logger = logging.getLogger("pydicom")
    pydicom_logger.addHandler(handler)
    try:
        before, mode = _logging_state(), config.settings.reading_validation_mode
        outcomes = _outcomes()  # includes files whose decoder raises, which pydicom logs with a traceback
        assert "decode failed" in outcomes.values() or "unsupported transfer syntax" in outcomes.values()
        assert handler.records == []  # nothing from pydicom reached the output during ingest reads
        assert _logging_state() == before and config.settings.reading_validation_mode == mode
        logging.getLogger("pydicom.pixels.decoders.base").warning("after the reads")
        assert [r.getMessage() for r in handler.records] == ["after the reads"]  # nothing silenced for good
    finally:
        pydicom_logger.removeHandler(handler)
