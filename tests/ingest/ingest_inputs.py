"""Small real ingest inputs the tests write: DICOM files with planted PHI, GeoTIFF scenes, label files."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pydicom
import rasterio
import yaml
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian
from rasterio.transform import from_origin

from medvit.config import IngestConfig, parse_params
from medvit.deid import Pseudonymizer

KEY = "test-deid-key"
FINDINGS = ("cardiomegaly", "effusion", "nodule")
PHI = ("PHIPID", "PHICSV", "ZZPLANTED", "PHIHOSPITAL", "PHIACCESSION", "PHICOMMENT", "PHIPRIVATE",
       "1.2.826.0.1.3680043.99999", "19991231")
SAT = {"tile_size": 16, "stride": 16, "label_names": ["water", "forest", "cropland", "urban"],
       "min_label_fraction": 0.05, "max_nodata_fraction": 0.5}


def ingest_cfg(tmp_path: Path, **ingest: Any) -> tuple[Path, IngestConfig]:
    """A params.yaml (2 workers, shards of 8, 32 px medical images, + ``ingest`` overrides) and its section."""
    data = {"ingest": {"workers": 2, "shard_size": 8, "max_reject_fraction": 0.5,
                       "medical": {"image_size": 32}, **ingest}}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, parse_params(data).ingest


def write_dicom(path: Path, patient: int, image: int, *, photometric: str = "MONOCHROME2",
                burned_in: str = "NO") -> None:
    """A 48x40 12-bit radiograph whose header holds PHI in every place ingest must scrub."""
    rng = np.random.default_rng(patient * 10 + image)
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    uid = f"1.2.826.0.1.3680043.99999.{patient}.{image}"
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.1.1", uid
    ds.StudyInstanceUID = f"1.2.826.0.1.3680043.99999.{patient}"
    ds.SeriesInstanceUID = f"1.2.826.0.1.3680043.99999.{patient}.0"
    ds.PatientName = f"ZZPLANTED^NAME{patient}"
    ds.PatientID = f"PHIPID{patient:04d}"
    ds.PatientBirthDate = ds.StudyDate = "19991231"
    ds.InstitutionName = "PHIHOSPITAL NORTH" if patient % 3 == 0 else "PHIHOSPITAL"  # two sites
    ds.PatientSex = "F" if patient % 2 else "M"
    ds.PatientAge = f"{20 + 7 * patient % 80:03d}Y"  # 20 to 97 years: every band from 20-29 to 90+
    ds.Manufacturer, ds.ManufacturerModelName = "Acme  Imaging ", "XR-1"
    ds.AccessionNumber = f"PHIACCESSION{patient}"
    ds.ImageComments = "PHICOMMENT"
    ds.add_new(0x00091010, "LO", "PHIPRIVATE")
    ds.Modality, ds.ViewPosition, ds.BurnedInAnnotation = "DX", "PA", burned_in
    ds.Rows, ds.Columns = 48, 40
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = rng.integers(0, 4096, (48, 40)).astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def medical_raw(root: Path, n_patients: int = 12) -> Path:
    """12 patients x 2 images (file names embed the patient id), plus files ingest must reject."""
    images = root / "images" / "site"
    images.mkdir(parents=True)
    rows = []
    for p in range(n_patients):
        for k in range(2):
            name = f"PHIPID{p:04d}_{k}.dcm"
            write_dicom(images / name, p, k, photometric="MONOCHROME1" if k else "MONOCHROME2")
            labels = "|".join(f for j, f in enumerate(FINDINGS) if (p + k + j) % 3 == 0) or "No Finding"
            rows.append({"Image Index": name, "Finding Labels": labels, "Patient ID": f"PHICSV{p}"})
    write_dicom(images / "burned.dcm", 99, 0, burned_in="YES")
    rows.append({"Image Index": "burned.dcm", "Finding Labels": "nodule", "Patient ID": "PHICSV99"})
    (images / "notes.txt").write_text("not an image")
    rows.append({"Image Index": "notes.txt", "Finding Labels": "No Finding", "Patient ID": "PHICSV98"})
    (images / "empty.dcm").write_bytes(b"")
    rows.append({"Image Index": "empty.dcm", "Finding Labels": "No Finding", "Patient ID": "PHICSV97"})
    write_dicom(images / "unlabelled.dcm", 50, 0)
    write_csv(root / "labels.csv", rows)
    return root


def write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    """``rows`` as a CSV with a header."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def all_bytes(folder: Path) -> list[tuple[Path, bytes]]:
    """Every file under ``folder`` with its content."""
    return [(p, p.read_bytes()) for p in folder.rglob("*") if p.is_file()]


def check_conservation(raw_keys: list[str], out: Path) -> None:
    """Every input is in the manifest (>= 1 rows) XOR in rejects.csv; counts add up."""
    pseudo = Pseudonymizer(KEY.encode())
    manifest = pd.read_csv(out / "manifest.csv", dtype=str)
    rejects = pd.read_csv(out / "rejects.csv", dtype=str)
    report = json.loads((out / "report.json").read_text())
    candidates = {k: {k, f"pseudo:{pseudo.token('source', k)}"} for k in raw_keys}
    in_manifest = {k for k, c in candidates.items() if c & set(manifest["source"])}
    in_rejects = {k for k, c in candidates.items() if c & set(rejects["source"])}
    assert in_manifest | in_rejects == set(raw_keys)
    assert not in_manifest & in_rejects
    assert report["n_input"] == len(raw_keys) == report["n_ingested"] + report["n_rejected"]
    assert report["n_ingested"] == len(in_manifest) and report["n_rejected"] == len(rejects)
    assert report["n_samples"] == len(manifest) == sum(report["splits"].values())
    assert sum(report["rejects_by_reason"].values()) == report["n_rejected"]
    assert rejects["reason"].str.len().gt(0).all()


def write_scene(path: Path, data: np.ndarray, origin_x: float, **profile: Any) -> None:
    """A tiled, deflated GeoTIFF in UTM 33N with 10 m pixels (nodata 0 unless ``profile`` says)."""
    base = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0], dtype=data.dtype,
                crs="EPSG:32633", transform=from_origin(origin_x, 4_000_000, 10, 10), nodata=0, tiled=True,
                blockxsize=16, blockysize=16, compress="deflate")
    base.update(profile)
    with rasterio.open(path, "w", **base) as ds:
        ds.write(data)


def satellite_raw(root: Path, n_scenes: int = 6) -> Path:
    """64x64 4-band uint16 scenes, label rasters; scene 0 has a nodata corner; plus broken scenes."""
    (root / "scenes").mkdir(parents=True)
    (root / "labels").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n_scenes):
        data = rng.integers(100, 9000, (4, 64, 64)).astype(np.uint16)
        if i == 0:
            data[:, :16, :32] = 0      # two chips all nodata -> dropped
            data[:, 16:20, :16] = 0    # a quarter of a chip nodata -> kept, filled
        label = np.zeros((64, 64), np.uint8)
        label[:, 32:] = 1 + i % 3
        label[60:, :] = 255
        write_scene(root / "scenes" / f"tile{i}.tif", data, 500_000 + 1000 * i)
        write_scene(root / "labels" / f"tile{i}.tif", label[None], 500_000 + 1000 * i, nodata=255)
        if i == 2:  # one scene dated: its chips get the acquisition month, the others "unknown"
            with rasterio.open(root / "scenes" / f"tile{i}.tif", "r+") as ds:
                ds.update_tags(ACQUISITION_DATE="2023-08-30")
    write_scene(root / "scenes" / "void.tif", np.zeros((4, 64, 64), np.uint16), 0)
    write_scene(root / "labels" / "void.tif", np.zeros((1, 64, 64), np.uint8), 0, nodata=255)
    write_scene(root / "scenes" / "rgb.tif", np.ones((3, 64, 64), np.uint16), 0)
    write_scene(root / "scenes" / "broken.tif", rng.integers(1, 9000, (4, 64, 64)).astype(np.uint16), 0)
    write_scene(root / "labels" / "broken.tif", np.zeros((1, 64, 64), np.uint8), 0, nodata=255)
    with rasterio.open(root / "scenes" / "broken.tif") as ds:
        offset = int(ds.get_tag_item("BLOCK_OFFSET_2_3", "TIFF", bidx=2))
    with open(root / "scenes" / "broken.tif", "r+b") as f:
        f.seek(offset + 4)
        f.write(b"\xff" * 32)
    return root
