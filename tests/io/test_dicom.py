"""DICOM reading: every shipped pydicom file handled, the PS3.3 intensity chain, colour, decoders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import FileMetaDataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut, pixel_array
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from medvit.io.decoders import plugin_order
from medvit.io.dicom import DicomOptions, DicomReject, read_frames
from medvit.io.dicom_intensity import window_unit

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
REASONS = {
    "empty file", "not DICOM", "truncated or corrupt", "no pixel data", "unsupported transfer syntax",
    "decode failed", "burned-in annotation", "unsupported photometric interpretation", "incomplete image header",
    "invalid VOI", "non-finite pixel values", "invalid image header",
}


def _frames(path: str | Path, **opts: object) -> list[np.ndarray]:
    _, it = read_frames(path, DicomOptions(**opts))  # type: ignore[arg-type]
    return [f for _, f in it]


def _testfile(name: str) -> str:
    return str(get_testdata_file(name, download=False))


def test_every_shipped_pydicom_file_is_ingested_or_rejected_with_a_reason() -> None:
    files = sorted(p for p in TEST_FILES.rglob("*") if p.is_file())
    assert len(files) > 80
    outcome: dict[str, str] = {}
    for path in files:
        try:
            frames = _frames(path, multiframe="all")
        except DicomReject as err:
            assert err.reason in REASONS, f"{path.name}: unexpected reason {err}"
            outcome[path.relative_to(TEST_FILES).as_posix()] = err.reason
            continue
        assert frames, path
        for f in frames:
            assert f.dtype == np.float32 and f.ndim == 3 and f.shape[0] == 1
            assert np.isfinite(f).all() and f.min() >= 0.0 and f.max() <= 1.0
        outcome[path.relative_to(TEST_FILES).as_posix()] = "ok"
    assert outcome["rtplan.dcm"] == "no pixel data"
    assert outcome["test-SR.dcm"] == "no pixel data"
    assert outcome["waveform_ecg.dcm"] == "no pixel data"
    assert outcome["MR_truncated.dcm"] == "truncated or corrupt"
    assert outcome["README.txt"] == outcome["zipMR.gz"] == outcome["test1.json"] == "not DICOM"
    # 12-bit JPEG Extended: only the GPL libjpeg decodes it, and that is not a dependency.
    assert outcome["JPGExtended.dcm"] == "unsupported transfer syntax"
    for name in ("CT_small.dcm", "MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm",
                 "image_dfl.dcm", "SC_rgb_jpeg_gdcm.dcm", "JPEGLSNearLossless_08.dcm", "examples_palette.dcm",
                 "SC_ybr_full_422_uncompressed.dcm", "ExplVR_BigEnd.dcm"):
        assert outcome[name] == "ok", name


def test_empty_file_is_rejected(tmp_path: Path) -> None:
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    with pytest.raises(DicomReject) as err:
        _frames(empty)
    assert err.value.reason == "empty file"


def _reference_unit(ds: pydicom.Dataset, stored: np.ndarray) -> np.ndarray:
    """pydicom's own modality + VOI, rescaled to [0, 1] by its saturation values, then MONOCHROME1 inverted."""
    values = apply_modality_lut(stored, ds)
    if "WindowCenter" in ds or ds.get("VOILUTSequence"):
        out = apply_voi_lut(values, ds)
        lo, hi = apply_voi_lut(np.array([-1e12, 1e12]), ds)  # the window's output range ymin..ymax
        unit = (out - lo) / (hi - lo)
    else:
        unit = (values - values.min()) / max(float(values.max() - values.min()), 1e-12)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        unit = 1.0 - unit
    return unit


@pytest.mark.parametrize("name", [
    "CT_small.dcm", "MR_small.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm", "examples_overlay.dcm",
    "image_dfl.dcm", "rtdose_1frame.dcm", "dicomdirtests/77654033/CR1/6154", "dicomdirtests/77654033/CT2/17106",
])
def test_uncompressed_pixels_match_pydicom_after_the_chain(name: str) -> None:
    path = TEST_FILES / name
    ds = pydicom.dcmread(path)
    expected = _reference_unit(ds, ds.pixel_array)
    (got,) = _frames(path)
    np.testing.assert_allclose(got[0], expected, atol=1e-5)


@pytest.mark.parametrize("signed", [0, 1])
def test_unused_high_bits_never_reach_the_values(tmp_path: Path, signed: int) -> None:
    # Garbage in the 4 bits above Bits Stored (e.g. an old overlay plane) is cleared, or the value
    # sign-extended from bit Bits Stored - 1 (PS3.5 8.1.1), before min-max VOI.
    raw = np.array([[0xF000 | 5, 0x0FFF], [0xA800, 0x1001]], dtype=np.uint16)
    (got,) = _frames(_write(_dataset(raw, PixelRepresentation=signed), tmp_path / "bits.dcm"))
    stored = np.array([[5, -1], [-2048, 1]] if signed else [[5, 4095], [2048, 1]], dtype=np.float64)
    np.testing.assert_allclose(got[0], (stored - stored.min()) / (stored.max() - stored.min()), atol=1e-6)


def test_lossless_codecs_decode_to_the_uncompressed_values() -> None:
    reference = _frames(_testfile("MR_small.dcm"))[0]
    for name in ("MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm"):
        np.testing.assert_allclose(_frames(_testfile(name))[0], reference, atol=1e-6, err_msg=name)


def _dataset(pixels: np.ndarray, photometric: str = "MONOCHROME2", **attrs: object) -> pydicom.Dataset:
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    for k, v in attrs.items():
        setattr(ds, k, v)
    return ds


def _write(ds: pydicom.Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def test_monochrome1_comes_out_inverted(tmp_path: Path) -> None:
    ramp = np.tile(np.arange(0, 4096, 64, dtype=np.uint16), (8, 1))  # (8, 64) dark -> bright stored values
    mono2 = _frames(_write(_dataset(ramp, "MONOCHROME2"), tmp_path / "m2.dcm"))[0][0]
    mono1 = _frames(_write(_dataset(ramp, "MONOCHROME1"), tmp_path / "m1.dcm"))[0][0]
    assert mono2[0, 0] == 0.0 and mono2[0, -1] == 1.0
    np.testing.assert_allclose(mono1, 1.0 - mono2, atol=1e-6)
    assert mono1[0, 0] == 1.0  # PS3.3 C.7.6.3.1.2: the minimum stored value displays white


def test_voi_choices_window_percentile_and_header(tmp_path: Path) -> None:
    ramp = np.tile(np.arange(0, 1000, dtype=np.uint16), (4, 1))
    path = _write(_dataset(ramp, WindowCenter=500, WindowWidth=201, RescaleSlope=2, RescaleIntercept=-100),
                  tmp_path / "w.dcm")
    header = _frames(path)[0][0]
    modality = ramp * 2.0 - 100
    np.testing.assert_allclose(header, window_unit(modality, 500, 201), atol=1e-6)
    assert header[0, 0] == 0 and header[0, -1] == 1 and 0 < header[0, 300] < 1
    window = _frames(path, voi="window", window=(900.0, 1001.0))[0][0]
    assert window[0, 199] == 0.0 and window[0, 800] == 1.0  # modality 298 below, 1500 above the configured window
    pct = _frames(path, voi="percentile", percentiles=(10.0, 90.0))[0][0]
    assert pct[0, 50] == 0.0 and pct[0, 950] == 1.0 and 0.45 < pct[0, 500] < 0.55


def test_modality_lut_sequence_is_applied(tmp_path: Path) -> None:
    ramp = np.tile(np.arange(0, 256, dtype=np.uint16), (2, 1))
    item = pydicom.Dataset()
    item.LUTDescriptor = [256, 0, 16]
    item.ModalityLUTType = "US"
    item.add_new("LUTData", "US", [int(v) for v in (np.arange(256) ** 2 // 16)])  # a non-linear curve
    ds = _dataset(ramp)
    ds.ModalityLUTSequence = pydicom.Sequence([item])
    got = _frames(_write(ds, tmp_path / "mlut.dcm"))[0][0]
    curve = (np.arange(256) ** 2 // 16).astype(np.float64)
    np.testing.assert_allclose(got[0], curve / curve.max(), atol=1e-6)


def test_burned_in_annotation_rejected_unless_allowed(tmp_path: Path) -> None:
    path = _write(_dataset(np.ones((4, 4)), BurnedInAnnotation="YES"), tmp_path / "burn.dcm")
    with pytest.raises(DicomReject) as err:
        _frames(path)
    assert err.value.reason == "burned-in annotation"
    assert _frames(path, allow_burned_in=True)[0].shape == (1, 4, 4)


def test_multiframe_first_or_all() -> None:
    path = _testfile("rtdose.dcm")
    assert len(_frames(path, multiframe="first")) == 1
    frames = _frames(path, multiframe="all")
    assert len(frames) == 15
    ds = pydicom.dcmread(path)
    np.testing.assert_allclose(frames[7][0], _reference_unit(ds, ds.pixel_array[7]), atol=1e-5)


def test_ybr_is_converted_to_rgb_before_luma() -> None:
    path = _testfile("SC_ybr_full_422_uncompressed.dcm")
    ds = pydicom.dcmread(path)
    y = pixel_array(ds, raw=True)[..., 0].astype(np.float64) / 255.0  # YBR_FULL's Y is BT.601 luma
    got = _frames(path)[0][0]
    assert np.abs(got - y).max() < 0.01
    rgb = pixel_array(ds)  # pydicom's YBR -> RGB
    assert not np.allclose(got, rgb[..., 0] / 255.0, atol=0.01)  # it is not just the first plane


def test_no_gpl_decoder_for_jpeg_and_jpeg_ls() -> None:
    for uid in ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57",
                "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"):
        order = plugin_order(uid)
        assert order and "pylibjpeg" not in order, uid
        assert order[0] == "gdcm"
    info, frames = read_frames(_testfile("SC_rgb_jpeg_gdcm.dcm"), DicomOptions())
    list(frames)
    assert info.plugin == "gdcm"
    info, frames = read_frames(_testfile("MR_small_jpeg_ls_lossless.dcm"), DicomOptions())
    list(frames)
    assert info.plugin == "gdcm"


def test_non_numeric_rescale_is_a_reject_not_a_crash(tmp_path: Path) -> None:
    ds = _dataset(np.zeros((4, 4)), RescaleSlope="9.5", RescaleIntercept="0")
    path = tmp_path / "bad.dcm"
    ds.save_as(path, enforce_file_format=True)
    data = path.read_bytes()
    assert data.count(b"9.5 ") == 1
    path.write_bytes(data.replace(b"9.5 ", b"abc "))  # what a broken writer leaves; pydicom cannot write it
    with pytest.raises(DicomReject) as err:
        _frames(path)
    assert err.value.reason == "invalid image header"
    assert "RescaleSlope" in str(err.value) and "abc" not in str(err.value)


def test_rescale_and_window_from_functional_groups(tmp_path: Path) -> None:
    """Enhanced multi-frame: slope/intercept and window from the functional groups (PS3.3 C.7.6.16.2)."""
    pixels = np.array([[0, 100], [200, 400]], dtype=np.uint16)
    ds = _dataset(pixels)
    transform, voi = pydicom.Dataset(), pydicom.Dataset()
    transform.RescaleSlope, transform.RescaleIntercept = "2", "-100"        # values: -100, 100, 300, 700
    voi.WindowCenter, voi.WindowWidth = "300", "401"                         # LINEAR over [100, 500]
    per_frame = pydicom.Dataset()
    per_frame.PixelValueTransformationSequence = pydicom.Sequence([transform])
    shared = pydicom.Dataset()
    shared.FrameVOILUTSequence = pydicom.Sequence([voi])
    ds.PerFrameFunctionalGroupsSequence = pydicom.Sequence([per_frame])
    ds.SharedFunctionalGroupsSequence = pydicom.Sequence([shared])
    path = tmp_path / "enhanced.dcm"
    ds.save_as(path, enforce_file_format=True)
    (got,) = _frames(path)
    values = pixels * 2.0 - 100.0
    expected = np.clip((values - 299.5) / 400.0 + 0.5, 0.0, 1.0)
    np.testing.assert_allclose(got[0], expected, atol=1e-6)
    assert got[0, 1, 0] == pytest.approx(0.5, abs=2e-3) and got[0, 0, 0] == 0.0 and got[0, 1, 1] == 1.0
