"""The shared BT.601 grey conversion: its values, and that DICOM and PNG colour read the same."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from medvit.io.dicom import DicomOptions, read_frames
from medvit.io.grey import luma
from medvit.io.image import read_image


def _rgb(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (12, 17, 3), dtype=np.uint8)


def test_luma_uses_bt601_weights_in_rgb_order() -> None:
    pixels = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]]], dtype=np.uint8)
    got = luma(pixels, 255.0)
    assert got.dtype == np.float32 and got.shape == (1, 4)
    np.testing.assert_allclose(got[0], [0.299, 0.587, 0.114, 1.0], atol=1e-6)


def test_luma_rejects_a_non_colour_array() -> None:
    with pytest.raises(ValueError, match="H, W, 3"):
        luma(np.zeros((4, 4), np.uint8), 255.0)


def _rgb_dicom(rgb: np.ndarray, path: Path) -> Path:
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    ds.Rows, ds.Columns = rgb.shape[:2]
    ds.SamplesPerPixel, ds.PlanarConfiguration = 3, 0
    ds.PhotometricInterpretation = "RGB"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = rgb.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def test_dicom_rgb_and_png_rgb_give_the_same_grey(tmp_path: Path) -> None:
    rgb = _rgb()
    _, frames = read_frames(_rgb_dicom(rgb, tmp_path / "rgb.dcm"), DicomOptions())
    from_dicom = next(frames)[1]
    Image.fromarray(rgb, "RGB").save(tmp_path / "rgb.png")
    from_png, _ = read_image(tmp_path / "rgb.png")
    np.testing.assert_array_equal(from_png, from_dicom)
    np.testing.assert_array_equal(from_dicom[0], np.clip(luma(rgb, 255.0), 0.0, 1.0))
