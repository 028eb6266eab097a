"""CheXpert and MIMIC-CXR raw folders in their published layouts, with the quirks real files have."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pydicom
from ingest_inputs import KEY, write_csv, write_dicom

from medvit.deid import Pseudonymizer

PSEUDO = Pseudonymizer(KEY.encode())
CHEXPERT_FINDINGS = ("Cardiomegaly", "Edema", "Pleural Effusion")
CHEXPERT_ROOT = "CheXpert-v1.0-small"
MIMIC_FINDINGS = ("Atelectasis", "Pneumonia")


def write_jpeg(path: Path, seed: int) -> None:
    """A 40 x 48 grey JPEG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (48, 40)).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", pixels)
    assert ok
    path.write_bytes(buf.tobytes())


def write_dicom_view(path: Path, patient: int, image: int, view: str | None) -> None:
    """``ingest_inputs.write_dicom`` with ViewPosition ``view`` (removed when None)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_dicom(path, patient, image)
    ds = pydicom.dcmread(path)
    if view is None:
        del ds.ViewPosition
    else:
        ds.ViewPosition = view
    ds.save_as(path, enforce_file_format=True)


def chexpert_cell(patient: int, study: int, j: int) -> str:
    """The finding cell of one row: a fixed pattern over 1.0, 0.0, -1.0 and blank."""
    return ("1.0", "0.0", "-1.0", "", "0.0", "1.0", "0.0")[(patient + 2 * study + 3 * j) % 7]


def chexpert_raw(parent: Path, n_patients: int = 10) -> tuple[Path, pd.DataFrame]:
    """``<parent>/CheXpert-v1.0-small/train/patientNNNNN/study1/view{1_frontal,2_lateral}.{jpg,dcm}`` + train.csv.

    Paths in the CSV start with ``CheXpert-v1.0-small/`` as published; patient 0's frontal is a DICOM whose
    header says LL (the header wins over the CSV); patient 1's lateral is a DICOM without ViewPosition. Sex
    cycles Male / Female / Unknown, patient 2 is 90. One CSV row has no image, one image has no row.
    Returns the raw folder and the CSV frame as written.
    """
    raw = parent / CHEXPERT_ROOT
    rows = []
    for p in range(n_patients):
        for v, kind in ((1, "frontal"), (2, "lateral")):
            dicom = (p, kind) in ((0, "frontal"), (1, "lateral"))
            rel = f"train/patient{p + 1:05d}/study1/view{v}_{kind}.{'dcm' if dicom else 'jpg'}"
            if (p, kind) == (0, "frontal"):
                write_dicom_view(raw / rel, p, v, "LL")
            elif (p, kind) == (1, "lateral"):
                write_dicom_view(raw / rel, p, v, None)
            else:
                write_jpeg(raw / rel, 10 * p + v)
            appa = ("PA" if p % 2 else "AP") if kind == "frontal" else ("", "", "LL", "RL")[p % 4]
            rows.append({"Path": f"{CHEXPERT_ROOT}/{rel}", "Sex": ("Male", "Female", "Unknown")[p % 3],
                         "Age": str(90 if p == 2 else 20 + 5 * p), "Frontal/Lateral": kind.capitalize(),
                         "AP/PA": appa, "No Finding": "",
                         **{f: chexpert_cell(p, v, j) for j, f in enumerate(CHEXPERT_FINDINGS)}})
    rows.append({**rows[0], "Path": f"{CHEXPERT_ROOT}/train/patient00099/study1/view1_frontal.jpg"})  # no image
    write_jpeg(raw / "train/patient00098/study1/view1_frontal.jpg", 999)                           # no row
    write_csv(raw / "train.csv", rows)
    return raw, pd.DataFrame(rows, dtype=str)


def mimic_study(subject: str, study: str) -> list[str]:
    """The label cells of one study (1.0 / 0.0 / -1.0 / blank)."""
    h = int(subject[-2:]) + int(study[-1])
    return [("1.0", "0.0", "-1.0", "", "0.0")[(h + j) % 5] for j in range(len(MIMIC_FINDINGS))]


def mimic_raw(root: Path, n_subjects: int = 8) -> tuple[Path, dict[str, tuple[str, str]]]:
    """``<root>/files/pXX/p<subject>/s<study>/<dicom_id>.{dcm,jpg}`` + gzipped metadata CSV + label CSV.

    Subject ids have leading zeros (``01000000``...): an int cast would lose them. Subject 0's image is a
    DICOM (header ViewPosition PA), the others JPEGs (view from the metadata). Quirks: a metadata row whose
    image is missing, an image no metadata row names, an image whose study has no label row.
    Returns the raw folder and ``{relative image path: (subject, study)}`` of the labelled images.
    """
    meta, labels, images = [], [], {}
    for i in range(n_subjects):
        subject, study = f"0{1000000 + i}", f"5{i:07d}"
        labels.append({"subject_id": subject, "study_id": study,
                       **dict(zip(MIMIC_FINDINGS, mimic_study(subject, study)))})
        for k, view in enumerate(("PA", "LATERAL")):
            dicom_id = f"{i:08x}-{k:08x}-aaaaaaaa"
            suffix = ".dcm" if i == 0 else ".jpg"
            rel = f"files/p{subject[:2]}/p{subject}/s{study}/{dicom_id}{suffix}"
            if suffix == ".dcm":
                write_dicom_view(root / rel, i, k, "PA")
            else:
                write_jpeg(root / rel, 100 + 2 * i + k)
            meta.append({"dicom_id": dicom_id, "subject_id": subject, "study_id": study,
                         "PerformedProcedureStepDescription": "CHEST (PA AND LAT)", "ViewPosition": view,
                         "Rows": "48", "Columns": "40"})
            images[rel] = (subject, study)
    meta.append({**meta[0], "dicom_id": "ffffffff-missing"})                                   # no image
    write_jpeg(root / f"files/p01/p{1000000:08d}/s50000000/orphan.jpg", 7)                  # no metadata row
    nolabel = "files/p01/p01000099/s59999999/eeeeeeee.jpg"                                    # no label row
    write_jpeg(root / nolabel, 8)
    meta.append({**meta[1], "dicom_id": "eeeeeeee", "subject_id": "01000099", "study_id": "59999999"})
    buf = io.StringIO()
    pd.DataFrame(meta).to_csv(buf, index=False)
    with gzip.open(root / "mimic-cxr-2.0.0-metadata.csv.gz", "wt") as f:
        f.write(buf.getvalue())
    write_csv(root / "mimic-cxr-2.0.0-chexpert.csv", labels)
    return root, images


def report(out: Path) -> dict:
    """report.json of a cache."""
    return json.loads((out / "report.json").read_text())


def check_counts(raw_keys: list[str], out: Path) -> None:
    """Every input is in the manifest, in rejects.csv or counted as filtered; the counts add up."""
    manifest = pd.read_csv(out / "manifest.csv", dtype=str)
    rejects = pd.read_csv(out / "rejects.csv", dtype=str)
    rep = report(out)
    sources = {k: {k, f"pseudo:{PSEUDO.token('source', k)}"} for k in raw_keys}
    in_manifest = {k for k, c in sources.items() if c & set(manifest["source"])}
    in_rejects = {k for k, c in sources.items() if c & set(rejects["source"])}
    assert not in_manifest & in_rejects
    assert rep["n_input"] == len(raw_keys) == rep["n_ingested"] + rep["n_rejected"] + rep["n_filtered"]
    assert len(raw_keys) - len(in_manifest | in_rejects) == rep["n_filtered"]
    assert rep["n_ingested"] == len(in_manifest) and rep["n_rejected"] == len(rejects)
    assert sum(rep["filtered_by_reason"].values()) == rep["n_filtered"]
    assert sum(rep["rejects_by_reason"].values()) == rep["n_rejected"]
