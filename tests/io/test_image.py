"""PNG/JPEG radiographs: values against independent expectations, sBIT, PHI, rejects, format sniffing."""

from __future__ import annotations

import dataclasses
import io
import zlib
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from pydicom.data import get_testdata_file
from pydicom.encaps import generate_frames

from medvit.io.image import REASONS, ImageInfo, ImageReject, decode_image, is_png_or_jpeg, read_image, sniff_format

FAKE_NAME = "DOE^JANE^Q"


def _chunk(kind: bytes, body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")


def _with_sbit(png: bytes, *bits: int) -> bytes:
    """The PNG with an sBIT chunk right after IHDR (8-byte signature + 25-byte IHDR chunk)."""
    return png[:33] + _chunk(b"sBIT", bytes(bits)) + png[33:]


def _cv_png(pixels: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", pixels)
    assert ok
    return buf.tobytes()


def _pil_bytes(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **kwargs)
    return out.getvalue()


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _check(unit: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    assert unit.dtype == np.float32 and unit.shape == (1, *shape)
    assert unit.min() >= 0.0 and unit.max() <= 1.0
    return unit[0]


def _reject(data: bytes, **kwargs: int) -> ImageReject:
    with pytest.raises(ImageReject) as caught:
        decode_image(data, **kwargs)
    assert caught.value.reason in REASONS
    return caught.value


def test_8bit_grey_png_is_value_over_255(tmp_path: Path) -> None:
    grey = np.arange(0, 256, dtype=np.uint8).reshape(16, 16)
    path = _write(tmp_path, "g.png", _pil_bytes(Image.fromarray(grey), "PNG"))
    unit, info = read_image(path)
    np.testing.assert_array_equal(_check(unit, (16, 16)), grey.astype(np.float32) / np.float32(255))
    assert info == ImageInfo(format="PNG", width=16, height=16, bit_depth=8, significant_bits=8, colour="grey")


def test_16bit_png_without_sbit_is_value_over_65535_never_its_own_max() -> None:
    stored = np.array([[0, 1000, 4095], [30000, 50000, 65535]], dtype=np.uint16)
    unit, info = decode_image(_cv_png(stored))
    np.testing.assert_array_equal(_check(unit, (2, 3)), stored.astype(np.float32) / np.float32(65535))
    assert (info.bit_depth, info.significant_bits) == (16, 16)
    dim = np.array([[0, 500, 1000]], dtype=np.uint16)  # a dark image stays dark: no per-image stretch
    np.testing.assert_array_equal(decode_image(_cv_png(dim))[0][0], dim.astype(np.float32) / np.float32(65535))


@pytest.mark.parametrize("scaling", ["shift", "replicate"])
def test_12bit_data_in_a_16bit_png_with_sbit_reads_v_over_4095(scaling: str) -> None:
    original = np.array([[0, 1, 2, 1024], [2048, 3000, 4094, 4095]], dtype=np.uint16)
    # PNG 12.4: the encoder scales 12-bit samples up to 16 by a left shift or by bit replication.
    stored = original << 4 if scaling == "shift" else (original << 4) | (original >> 8)
    unit, info = decode_image(_with_sbit(_cv_png(stored), 12))
    np.testing.assert_array_equal(_check(unit, (2, 4)), original.astype(np.float32) / np.float32(4095))
    assert (info.bit_depth, info.significant_bits) == (16, 12)


@pytest.mark.parametrize("bits", [0, 17])
def test_an_invalid_sbit_is_ignored(bits: int) -> None:
    stored = np.array([[0, 4096, 65535]], dtype=np.uint16)
    unit, info = decode_image(_with_sbit(_cv_png(stored), bits))
    np.testing.assert_array_equal(unit[0], stored.astype(np.float32) / np.float32(65535))
    assert info.significant_bits == 16


def _bt601(rgb: np.ndarray, peak: float) -> np.ndarray:
    rgb = rgb.astype(np.float64)
    return (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]) / peak


def test_rgb_png_becomes_bt601_grey() -> None:
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]], [[10, 200, 30], [255, 255, 255], [0, 0, 0]]],
                   dtype=np.uint8)
    unit, info = decode_image(_pil_bytes(Image.fromarray(rgb, "RGB"), "PNG"))
    np.testing.assert_allclose(_check(unit, (2, 3)), _bt601(rgb, 255.0), atol=1e-6)
    assert info.colour == "rgb" and (info.width, info.height) == (3, 2)


def test_rgba_png_ignores_alpha() -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    alpha = np.random.default_rng(2).integers(0, 256, (9, 7, 1), dtype=np.uint8)
    unit, info = decode_image(_pil_bytes(Image.fromarray(np.concatenate([rgb, alpha], -1), "RGBA"), "PNG"))
    np.testing.assert_allclose(_check(unit, (9, 7)), _bt601(rgb, 255.0), atol=1e-6)
    assert info.colour == "rgba"


def test_16bit_rgb_png_keeps_16_bits() -> None:
    rgb = np.array([[[1, 0, 0], [0, 300, 0], [65535, 65535, 65535]]], dtype=np.uint16)
    unit, info = decode_image(_cv_png(np.ascontiguousarray(rgb[..., ::-1])))  # OpenCV writes BGR
    np.testing.assert_allclose(_check(unit, (1, 3)), _bt601(rgb, 65535.0), atol=1e-7)
    assert unit[0, 0, 0] > 0.0  # 1/65535 survives: not reduced to 8 bits
    assert (info.colour, info.bit_depth) == ("rgb", 16)


def test_rgb_png_with_different_sbit_per_channel() -> None:
    original = np.array([[[31, 63, 31], [16, 0, 8]]], dtype=np.uint8)  # 5-6-5 bit colour
    stored = original << np.array([3, 2, 3], dtype=np.uint8)
    unit, info = decode_image(_with_sbit(_pil_bytes(Image.fromarray(stored, "RGB"), "PNG"), 5, 6, 5))
    expected = original.astype(np.float64) / np.array([31.0, 63.0, 31.0])
    np.testing.assert_allclose(_check(unit, (1, 2)), _bt601(expected, 1.0), atol=1e-6)
    assert info.significant_bits == 6


def test_palette_and_grey_alpha_pngs_are_converted() -> None:
    grey = np.arange(0, 256, 4, dtype=np.uint8).reshape(8, 8)
    expected = grey.astype(np.float32) / np.float32(255)
    palette, info = decode_image(_pil_bytes(Image.fromarray(grey).convert("P"), "PNG"))
    np.testing.assert_allclose(_check(palette, (8, 8)), expected, atol=1e-6)
    assert info.colour == "palette"
    with_alpha = np.stack([grey, np.full_like(grey, 7)], -1)
    unit, info = decode_image(_pil_bytes(Image.fromarray(with_alpha, "LA"), "PNG"))
    np.testing.assert_array_equal(_check(unit, (8, 8)), expected)
    assert info.colour == "grey+alpha"


def test_2bit_grey_png_spans_the_full_range() -> None:
    levels = np.array([[0, 1, 2, 3]], dtype=np.uint8)
    unit, info = decode_image(_pil_bytes(Image.fromarray(levels * 85), "PNG", bits=2))
    np.testing.assert_allclose(unit[0], levels / 3.0, atol=1e-6)
    assert (info.bit_depth, info.significant_bits) == (2, 2)


def test_grey_jpeg_matches_an_independent_decoder(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    grey = np.clip(np.add.outer(np.arange(48) * 4, np.arange(64) * 2) + rng.normal(0, 5, (48, 64)), 0, 255)
    data = _pil_bytes(Image.fromarray(grey.astype(np.uint8)), "JPEG", quality=90)
    unit, info = read_image(_write(tmp_path, "g.jpg", data))
    with Image.open(io.BytesIO(data)) as im:
        reference = np.asarray(im).astype(np.float64) / 255.0
    np.testing.assert_allclose(_check(unit, (48, 64)), reference, atol=1.01 / 255)
    flat, _ = decode_image(_pil_bytes(Image.new("L", (16, 16), 128), "JPEG"))
    np.testing.assert_array_equal(flat, np.full((1, 16, 16), np.float32(128) / np.float32(255)))
    assert info == ImageInfo(format="JPEG", width=64, height=48, bit_depth=8, significant_bits=8, colour="grey")


def test_rgb_jpeg_becomes_bt601_grey() -> None:
    data = _pil_bytes(Image.new("RGB", (16, 16), (200, 100, 50)), "JPEG", quality=95)
    unit, info = decode_image(data)
    with Image.open(io.BytesIO(data)) as im:
        reference = _bt601(np.asarray(im), 255.0)
    np.testing.assert_allclose(_check(unit, (16, 16)), reference, atol=2.01 / 255)
    assert abs(float(unit.mean()) - _bt601(np.array([200, 100, 50]), 255.0)) < 2 / 255
    assert info.colour == "rgb"


def _fake_name_text() -> PngInfo:
    meta = PngInfo()
    meta.add_text("PatientName", FAKE_NAME)
    meta.add_text("Comment", f"patient {FAKE_NAME}", zip=True)
    meta.add_itxt("Author", FAKE_NAME, lang="en", tkey="Autor")
    return meta


def test_png_text_chunks_never_reach_the_result() -> None:
    data = _pil_bytes(Image.fromarray(np.full((8, 8), 9, np.uint8)), "PNG", pnginfo=_fake_name_text())
    assert FAKE_NAME.encode() in data
    unit, info = decode_image(data)
    assert unit.shape == (1, 8, 8)
    assert FAKE_NAME not in repr(info) and "DOE" not in str(dataclasses.asdict(info))
    assert set(dataclasses.asdict(info)) == {"format", "width", "height", "bit_depth", "significant_bits", "colour"}
    broken = _reject(data[: len(data) - 30])  # text chunks survive, image data cut
    assert "DOE" not in str(broken)


def test_jpeg_comment_and_exif_never_reach_the_result() -> None:
    exif = Image.Exif()
    exif[0x013B] = FAKE_NAME  # Artist
    exif[0x0112] = 6  # Orientation: rotate; ignored, the stored grid is kept
    data = _pil_bytes(Image.new("L", (20, 10), 60), "JPEG", comment=f"name {FAKE_NAME}", exif=exif.tobytes())
    assert FAKE_NAME.encode() in data
    unit, info = decode_image(data)
    assert unit.shape == (1, 10, 20) and (info.width, info.height) == (20, 10)
    assert "DOE" not in repr(info)
    assert "DOE" not in str(_reject(data[: len(data) // 2]))


def test_truncated_jpeg_and_png_are_rejects_not_grey_images() -> None:
    grey = np.random.default_rng(4).integers(0, 256, (64, 64), dtype=np.uint8)
    jpeg = _pil_bytes(Image.fromarray(grey), "JPEG")
    png = _pil_bytes(Image.fromarray(grey), "PNG")
    for data in (jpeg[: len(jpeg) // 2], jpeg[:-2], png[: len(png) // 2], png[:-12]):
        assert _reject(data).reason == "image does not decode"
    assert _reject(jpeg[:200]).reason == "image does not decode"  # cut before the frame header


def test_non_images_empty_and_unreadable_files(tmp_path: Path) -> None:
    noise = np.random.default_rng(5).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    assert _reject(noise).reason == "not PNG or JPEG"
    assert _reject(b"\x89PNG\r\n\x1a\n" + noise).reason == "image does not decode"
    assert _reject(b"\xff\xd8\xff" + noise).reason == "image does not decode"
    with pytest.raises(ImageReject, match="empty file"):
        read_image(_write(tmp_path, "empty.png", b""))
    with pytest.raises(ImageReject, match="unreadable file"):
        read_image(tmp_path)  # a folder


def test_twelve_bit_and_cmyk_jpegs_are_unsupported_modes() -> None:
    ds = pydicom.dcmread(get_testdata_file("JPGExtended.dcm", download=False))
    twelve_bit = next(generate_frames(ds.PixelData, number_of_frames=1))  # a 12-bit JPEG Extended stream
    err = _reject(twelve_bit)
    assert (err.reason, err.detail) == ("unsupported image mode", "12-bit JPEG")
    cmyk = _pil_bytes(Image.new("CMYK", (8, 8), (10, 20, 30, 40)), "JPEG")
    assert _reject(cmyk).reason == "unsupported image mode"


def test_image_smaller_than_the_minimum_side_is_rejected() -> None:
    png = _pil_bytes(Image.new("L", (100, 32), 5), "PNG")
    jpeg = _pil_bytes(Image.new("L", (100, 32), 5), "JPEG")
    for data in (png, jpeg):
        err = _reject(data, min_side=33)
        assert err.reason == "image too small" and "100 x 32" in err.detail
        assert decode_image(data, min_side=32)[0].shape == (1, 32, 100)


def test_format_is_sniffed_from_the_bytes_not_the_name(tmp_path: Path) -> None:
    png = _write(tmp_path, "really_a_png.jpg", _pil_bytes(Image.new("L", (4, 4)), "PNG"))
    jpeg = _write(tmp_path, "really_a_jpeg.png", _pil_bytes(Image.new("L", (4, 4)), "JPEG"))
    dicom = Path(str(get_testdata_file("CT_small.dcm", download=False)))
    assert (sniff_format(png), sniff_format(jpeg), sniff_format(dicom)) == ("PNG", "JPEG", None)
    assert is_png_or_jpeg(png) and is_png_or_jpeg(jpeg) and not is_png_or_jpeg(dicom)
    assert not is_png_or_jpeg(tmp_path / "missing.png") and not is_png_or_jpeg(_write(tmp_path, "e.png", b""))
    assert read_image(png)[1].format == "PNG" and read_image(jpeg)[1].format == "JPEG"
