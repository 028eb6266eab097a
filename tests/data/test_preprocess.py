"""The one preprocessing path: plain-JSON params, raw bytes decoded as ingest decodes files, chips, model input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pydicom.data
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ingest"))  # the ingest tests' input writers

from ingest_inputs import write_scene  # noqa: E402

from medvit.config import parse_params  # noqa: E402
from medvit.data.layout import tile_id  # noqa: E402
from medvit.data.preprocess import Preprocessor, fill_nodata, letterbox  # noqa: E402
from medvit.data.transforms import eval_transform  # noqa: E402
from medvit.io.dicom import DicomOptions, read_frames  # noqa: E402
from medvit.io.geotiff import probe, read_strip  # noqa: E402
from medvit.io.image import read_image  # noqa: E402

CT = Path(pydicom.data.get_testdata_file("CT_small.dcm"))


def _cfg(**ingest: object):  # type: ignore[no-untyped-def]
    return parse_params({"ingest": ingest}).ingest


def test_params_round_trip_through_plain_json() -> None:
    cfg = _cfg(medical={"image_size": 40, "voi": "window", "window": [40, 400], "multiframe": "all"})
    prep = Preprocessor.from_params(cfg, "medical").with_model(32, [0.4], [0.2], "bicubic")
    text = json.dumps(prep.to_json())  # plain JSON: no pickle, no custom types
    back = Preprocessor.from_json(json.loads(text))
    assert back == prep
    assert back.dicom_options == DicomOptions(voi="window", window=(40.0, 400.0), multiframe="all")
    sat = Preprocessor.from_params(_cfg(satellite={"tile_size": 16, "stride": 8, "scale": 0.001}), "satellite",
                                   {"mean": [0.1, 0.2, 0.3, 0.4]})
    assert Preprocessor.from_json(json.loads(json.dumps(sat.to_json()))) == sat
    assert sat.fill == (0.1, 0.2, 0.3, 0.4) and sat.stride == 8 and sat.size == 16
    with pytest.raises(ValueError, match="unknown format"):
        Preprocessor.from_json({**prep.to_json(), "format": 99})


def test_dicom_and_png_bytes_decode_as_ingest_decodes_the_file(tmp_path: Path) -> None:
    prep = Preprocessor.from_params(_cfg(medical={"image_size": 40}), "medical")
    (item,) = prep.decode(CT.read_bytes(), "ct.dcm")
    _, frames = read_frames(CT, DicomOptions())
    np.testing.assert_array_equal(item.image, letterbox(next(frames)[1], 40))
    assert item.image.shape == (1, 40, 40) and item.error == ""

    grey = (np.arange(30 * 50, dtype=np.uint16).reshape(30, 50) * 40).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "x.png"), grey)
    (item,) = prep.decode((tmp_path / "x.png").read_bytes(), "x.png")
    np.testing.assert_array_equal(item.image, letterbox(read_image(tmp_path / "x.png")[0], 40))


def test_bad_bytes_give_ingest_reject_reasons() -> None:
    prep = Preprocessor.from_params(_cfg(), "medical")
    assert prep.decode(b"") == "empty file"
    assert prep.decode(b"just some text") == "not DICOM"
    assert prep.decode(b"\x89PNG\r\n\x1a\n" + b"\0" * 10).startswith("image does not decode")
    assert prep.decode(CT.read_bytes()[:-2000]).startswith("truncated or corrupt")


def _scene(path: Path, bands: int = 4, size: int = 48) -> np.ndarray:
    data = np.random.default_rng(0).integers(100, 9000, (bands, size, size)).astype(np.uint16)
    data[:, :4, :4] = 0  # nodata (0): filled with the train mean in chip (0, 0)
    data[:, 32:, :16] = 0  # chip (32, 0) all nodata: over max_nodata_fraction
    write_scene(path, data, 500_000)
    return data


def test_scene_bytes_are_chipped_on_ingest_grid_with_nodata_filled(tmp_path: Path) -> None:
    _scene(tmp_path / "s.tif")
    prep = Preprocessor.from_params(_cfg(satellite={"tile_size": 16, "stride": 16}), "satellite",
                                    {"mean": [0.1, 0.2, 0.3, 0.4]})
    items = prep.decode((tmp_path / "s.tif").read_bytes(), "my_scene.tif")
    assert [it.id for it in items] == [tile_id("my_scene", y, x) for y in (0, 16, 32) for x in (0, 16, 32)]
    values, valid = read_strip(tmp_path / "s.tif", (1, 2, 3, 4), 0, 48, probe(tmp_path / "s.tif", (1, 2, 3, 4)).scale)
    first = items[0]
    np.testing.assert_array_equal(first.image, fill_nodata(values[:, :16, :16], valid[:, :16, :16],
                                                           [0.1, 0.2, 0.3, 0.4]))
    assert first.image[2, 0, 0] == np.float32(0.3) and first.crs == "EPSG:32633"
    assert first.bounds == "500000.0 3999840.0 500160.0 4000000.0"
    dropped = items[6]
    assert dropped.image is None and dropped.error.startswith("too much nodata")

    # One chip-sized file is one chip; a smaller one, or the wrong bands, is ingest's reject.
    _scene(tmp_path / "chip.tif", size=16)
    assert len(prep.decode((tmp_path / "chip.tif").read_bytes(), "chip.tif")) == 1
    _scene(tmp_path / "small.tif", size=12)
    assert prep.decode((tmp_path / "small.tif").read_bytes()).startswith("smaller than a tile: 12x12")
    _scene(tmp_path / "rgb.tif", bands=3)
    assert prep.decode((tmp_path / "rgb.tif").read_bytes()).startswith("band count mismatch")
    assert prep.decode(b"II*\0garbage").startswith("not a raster")


def test_model_input_is_the_evaluation_transform() -> None:
    prep = Preprocessor("medical", 40).with_model(32, [0.4], [0.2], "bicubic")
    images = np.random.default_rng(0).random((2, 1, 40, 40), dtype=np.float32)
    x = prep.to_model_input(images)
    t = eval_transform(32, [0.4], [0.2], "bicubic")
    assert isinstance(x, torch.Tensor) and x.shape == (2, 1, 32, 32)
    np.testing.assert_array_equal(x.numpy(), np.stack([t(i) for i in images]))
    with pytest.raises(ValueError, match="no model input part"):
        Preprocessor("medical", 40).to_model_input(images)


def test_finetune_imports_neither_pydicom_nor_rasterio() -> None:
    """Finetune copies the preprocess params into meta.json; decoding stays in ingest (and the served model)."""
    import subprocess

    code = ("import sys, medvit.data.preprocess, medvit.train.setup, medvit.stages.finetune; "
            "print(sorted(m for m in ('pydicom', 'rasterio') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_scene_too_large_for_memory_is_a_reject_not_a_crash(tmp_path: Path) -> None:
    """A 5 MB sparse tiled GeoTIFF declaring 200,000 x 200,000 x 3 pixels (240 GB as uint16), decoded under a
    4 GiB address-space limit (as in a container): the served model and ``medvit predict`` get a reason back."""
    import subprocess

    import rasterio
    from affine import Affine

    path = tmp_path / "bomb.tif"
    with rasterio.open(path, "w", driver="GTiff", height=200_000, width=200_000, count=3, dtype="uint16",
                       crs="EPSG:32633", transform=Affine(10.0, 0.0, 5e5, 0.0, -10.0, 4.2e6), tiled=True,
                       compress="deflate", SPARSE_OK=True):
        pass
    assert path.stat().st_size < 10 << 20
    code = (
        "import json, resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))\n"
        "from medvit.data.preprocess import Preprocessor\n"
        "prep = Preprocessor('satellite', 32, bands=(1, 2, 3), stride=32, fill=(0.2, 0.3, 0.4))\n"
        "data = open(sys.argv[1], 'rb').read()\n"
        "print(json.dumps([prep.chips(sys.argv[1]), prep.decode(data, 'bomb.tif')]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == ["too large to decode: MemoryError"] * 2
