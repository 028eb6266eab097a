"""PNG/JPEG radiographs through the medical ingest stage: cached pixels, sBIT, letterbox, rejects, pseudonyms."""

from __future__ import annotations

import io
import json
import zlib
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from ingest_inputs import KEY, check_conservation, ingest_cfg, write_csv, write_dicom
from PIL import Image

from medvit.data.cache import ShardReader
from medvit.data.layout import SUBGROUP_COLUMNS
from medvit.data.manifest import read_manifest
from medvit.deid import ALLOWED, KEY_ENV, Pseudonymizer
from medvit.ingest import ingest
from medvit.ingest.images import is_image_file
from medvit.ingest.pixels import letterbox

PSEUDO = Pseudonymizer(KEY.encode())
SIZE = 32  # the cache size ingest_cfg sets; 32 x 32 images are cached unresized


def _png(pixels: np.ndarray, sbit: bytes = b"") -> bytes:
    """OpenCV's PNG of ``pixels`` (grey, or BGR), with an sBIT chunk right after IHDR when given."""
    ok, buf = cv2.imencode(".png", pixels)
    assert ok
    data = buf.tobytes()
    if sbit:
        chunk = len(sbit).to_bytes(4, "big") + b"sBIT" + sbit + zlib.crc32(b"sBIT" + sbit).to_bytes(4, "big")
        data = data[:33] + chunk + data[33:]  # 8-byte signature + 25-byte IHDR chunk
    return data


def _jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=92)
    return out.getvalue()


def _bt601(rgb: np.ndarray) -> np.ndarray:
    """Independent BT.601 luma of (H, W, 3) RGB, in float64."""
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def _raw(root: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """A ChestX-ray14-like folder of PNG/JPEG (file names start with the patient number), a DICOM, and bad files.

    Returns the raw folder and, per relative path, the (H, W) float64 image the cache must hold before letterbox.
    """
    images = root / "images"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    expected: dict[str, np.ndarray] = {}
    rows: list[dict[str, str]] = []

    def add(name: str, data: bytes, patient: int, gender: str = "", age: str = "", view: str = "") -> None:
        (images / name).write_bytes(data)
        rows.append({"Image Index": name, "Finding Labels": "effusion" if patient % 2 else "No Finding",
                     "Patient ID": str(patient), "Patient Age": age, "Patient Gender": gender, "View Position": view})

    grey8 = rng.integers(0, 256, (SIZE, SIZE), dtype=np.uint8)
    add("00000001_000.png", _png(grey8), 1, "M", "58", "PA")
    expected["images/00000001_000.png"] = grey8 / 255.0
    v12 = rng.integers(0, 4096, (SIZE, SIZE), dtype=np.uint16)  # 12-bit data in a 16-bit PNG, sBIT = 12
    add("00000002_000.png", _png(v12 << 4, sbit=bytes([12])), 2, "F", "094", "AP")
    expected["images/00000002_000.png"] = v12 / 4095.0
    v16 = rng.integers(0, 65536, (SIZE, SIZE), dtype=np.uint16)  # 16-bit without sBIT: value / 65535
    add("00000003_000.png", _png(v16), 3, "F", "7")
    expected["images/00000003_000.png"] = v16 / 65535.0
    rgb16 = rng.integers(0, 65536, (SIZE, SIZE, 3), dtype=np.uint16)
    add("00000004_000.png", _png(np.ascontiguousarray(rgb16[..., ::-1])), 4)  # OpenCV writes BGR
    expected["images/00000004_000.png"] = _bt601(rgb16.astype(np.float64)) / 65535.0
    tall = rng.integers(0, 256, (48, 24), dtype=np.uint8)  # not square: letterboxed
    add("00000005_000.png", _png(tall), 5)
    expected["images/00000005_000.png"] = tall / 255.0
    grey_jpeg = _jpeg(Image.fromarray(np.clip(np.add.outer(np.arange(SIZE) * 6, np.arange(SIZE) * 2), 0, 255)
                                      .astype(np.uint8)))
    add("00000006_000.jpg", grey_jpeg, 6, "Unknown", "", "LATERAL")
    with Image.open(io.BytesIO(grey_jpeg)) as im:  # Pillow, not the OpenCV decoder ingest uses
        expected["images/00000006_000.jpg"] = np.asarray(im).astype(np.float64) / 255.0
    rgb_jpeg = _jpeg(Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)))
    add("00000007_000.jpeg", rgb_jpeg, 7)
    with Image.open(io.BytesIO(rgb_jpeg)) as im:
        expected["images/00000007_000.jpeg"] = _bt601(np.asarray(im).astype(np.float64)) / 255.0
    for p in range(8, 14):  # more patients, so that every split gets some
        more = rng.integers(0, 256, (SIZE, SIZE), dtype=np.uint8)
        add(f"{p:08d}_000.png", _png(more), p)
        expected[f"images/{p:08d}_000.png"] = more / 255.0
    write_dicom(images / "dicom.dcm", 20, 0)  # mixed with DICOM: one manifest layout
    rows.append({"Image Index": "dicom.dcm", "Finding Labels": "effusion", "Patient ID": "20",
                 "Patient Age": "", "Patient Gender": "", "View Position": ""})
    add("00000030_000.jpg", rgb_jpeg[: len(rgb_jpeg) // 2], 30)  # truncated: a reject, not a half-grey image
    add("00000031_000.jpg", b"GIF89a not a jpeg at all", 31)
    (images / "00000032_000.png").write_bytes(_png(grey8))  # not in the labels CSV
    write_csv(root / "labels.csv", rows)
    return root, expected


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, np.ndarray], dict]:
    tmp = tmp_path_factory.mktemp("images")
    raw, expected = _raw(tmp / "raw")
    _, cfg = ingest_cfg(tmp)
    with pytest.MonkeyPatch.context() as mp:  # the module-scoped fixture runs outside the autouse key fixture
        mp.setenv(KEY_ENV, KEY)
        report = ingest("medical", raw, raw / "labels.csv", tmp / "out", cfg)
    return raw, tmp / "out", expected, report


def test_cached_pixels_are_the_decoded_values_scaled_by_their_real_bit_depth(ingested: tuple) -> None:
    raw, out, expected, _ = ingested
    frame = read_manifest(out).frame
    reader = ShardReader(out)
    by_id = {PSEUDO.sample(key, 0): key for key in expected}
    png_rows = frame[frame["decoder"].str.startswith("opencv")]
    assert sorted(by_id[i] for i in png_rows["id"]) == sorted(expected)
    for sample_id, shard, index in zip(png_rows["id"], png_rows["shard"], png_rows["index"]):
        key = by_id[sample_id]
        cached = reader.get(int(shard), int(index))
        want = letterbox(expected[key][None].astype(np.float32), SIZE)
        # Lossless PNG: the exact values (float32 rounding); JPEG: an independent decoder, within 2 levels.
        atol = 2.01 / 255 if key.endswith((".jpg", ".jpeg")) else 1e-6
        np.testing.assert_allclose(cached, want, atol=atol, err_msg=key)
    tall = reader.get(*(int(v) for v in png_rows.loc[png_rows["id"] == PSEUDO.sample("images/00000005_000.png", 0),
                                                      ["shard", "index"]].iloc[0]))
    assert (tall[0, :, :8] == 0).all() and (tall[0, :, 24:] == 0).all()  # 48 x 24 -> 32 x 16, centred, black bars
    v12 = expected["images/00000002_000.png"]
    assert v12.max() > 0.99  # the 12-bit image fills [0, 1] (divided by 4095, not 65535)


def test_png_and_jpeg_rows_share_the_dicom_layout_and_carry_csv_demographics(ingested: tuple) -> None:
    _, out, _, report = ingested
    frame = pd.read_csv(out / "manifest.csv", dtype=str, keep_default_na=False)
    columns = list(frame.columns)
    provenance = columns[columns.index("index") + 1:columns.index("sex")]
    assert set(ALLOWED.values()) | {"frame", "transfer_syntax", "decoder", "voi"} == set(provenance)
    assert columns[len(columns) - len(SUBGROUP_COLUMNS) - 1:-1] == list(SUBGROUP_COLUMNS)  # then label:effusion
    rows = frame.set_index("id")

    def row(key: str) -> pd.Series:
        return rows.loc[PSEUDO.sample(key, 0)]

    assert row("images/00000001_000.png")[["sex", "age_band", "view"]].tolist() == ["M", "50-59", "PA"]
    assert row("images/00000002_000.png")[["sex", "age_band", "view"]].tolist() == ["F", "90+", "AP"]
    assert row("images/00000003_000.png")[["sex", "age_band", "view"]].tolist() == ["F", "0-9", "unknown"]
    assert row("images/00000006_000.jpg")[["sex", "age_band", "view"]].tolist() == ["unknown", "unknown", "LATERAL"]
    for key in ("images/00000001_000.png", "images/00000007_000.jpeg"):  # no header: device and site unknown
        assert row(key)[["manufacturer", "manufacturer_model", "site"]].tolist() == ["unknown"] * 3
    assert (frame[list(SUBGROUP_COLUMNS)] != "").all().all()
    png = row("images/00000002_000.png")
    assert (png["decoder"], png["bits_stored"], png["photometric"], png["rows"]) == ("opencv PNG", "12",
                                                                                    "MONOCHROME2", "32")
    assert row("images/00000004_000.png")["photometric"] == "RGB"
    assert row("images/00000006_000.jpg")["decoder"] == "opencv JPEG"
    assert row("images/dicom.dcm")["decoder"] not in ("", "opencv PNG")
    assert report["decoders"]["PNG: opencv"] == 11 and report["decoders"]["JPEG: opencv"] == 2


def test_bad_images_are_rejects_and_paths_with_patient_numbers_are_pseudonymised(ingested: tuple) -> None:
    raw, out, _, report = ingested
    keys = [p.relative_to(raw).as_posix() for p in raw.rglob("*") if p.is_file() and p.name != "labels.csv"]
    check_conservation(keys, out)
    rejects = dict(pd.read_csv(out / "rejects.csv").itertuples(index=False))
    source = {k: PSEUDO.source(k, [str(int(k.split("/")[1][:8]))]) for k in keys if k[7:8] == "0"}
    assert all(s.startswith("pseudo:") for s in source.values())  # "00000030" holds Patient ID "30"
    assert rejects[source["images/00000030_000.jpg"]] == "image does not decode: truncated or corrupt JPEG"
    assert rejects[source["images/00000031_000.jpg"]] == "not PNG or JPEG"
    # Unlabelled: checked against every CSV Patient ID; 32 is none of them, so the path stays as it is.
    assert rejects["images/00000032_000.png"].startswith("no labels")
    frame = read_manifest(out).frame
    assert frame["source"].str.startswith("pseudo:").sum() == 13  # every PNG/JPEG row; the DICOM name has no id
    assert report["n_ingested"] == 14 and report["n_rejected"] == 3
    assert frame.groupby("group")["split"].nunique().max() == 1
    assert set(frame["group"]) >= {PSEUDO.patient(str(p)) for p in (1, 2, 13)}  # the CSV Patient ID groups
    assert "00000030" not in json.dumps(report) and "00000030" not in (out / "rejects.csv").read_text()


def test_image_files_are_told_by_suffix_or_signature(tmp_path: Path) -> None:
    (tmp_path / "a.dcm").write_bytes(_png(np.zeros((4, 4), np.uint8)))  # .dcm: always DICOM
    (tmp_path / "b").write_bytes(_png(np.zeros((4, 4), np.uint8)))      # no suffix: by its bytes
    (tmp_path / "c.JPG").write_bytes(b"text")                            # image suffix: read (and rejected) as one
    (tmp_path / "d").write_bytes(b"DICM")
    assert [is_image_file(tmp_path / n) for n in ("a.dcm", "b", "c.JPG", "d")] == [False, True, True, False]
