"""Medical source: CheXpert-style labels (``Path, Sex, Age, Frontal/Lateral, AP/PA``, one column per finding).

Images (DICOM, PNG or JPEG) lie anywhere under ``--raw``; the decode path is
:class:`medvit.ingest.nih.NihSource`'s. ``Path`` is relative to the raw folder.
A first component equal to the raw folder's own name is dropped, so the
published paths (``CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg``)
match with ``--raw`` at the ``CheXpert-v1.0-small`` folder as well as at its parent.

Finding cells are ``1.0``, ``0.0``, ``-1.0`` (uncertain) or blank (not
mentioned), mapped by ``ingest.medical.uncertain`` and ``ingest.medical.blank``
(``medvit.ingest.labels.finding_values``); any other value is fatal. The
``No Finding`` column is not a label unless ``label_names`` names it.
The split group is the ``patient<digits>`` folder of ``Path`` (else the DICOM
PatientID, as for NIH); ``Sex``, ``Age`` and the view (``AP/PA``, else
``LATERAL`` for laterals) fill the subgroup columns the header leaves unknown.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from medvit.config import IngestConfig, IngestMedical
from medvit.errors import UserError
from medvit.ingest.demographics import chexpert_view, csv_demographics
from medvit.ingest.labels import csv_rows, finding_columns, finding_values, header_columns, read_csv
from medvit.ingest.nih import MedicalLabels, NihSource
from medvit.ingest.source import find_files, relative_keys

PATH = "Path"
# The non-finding columns of CheXpert's train.csv / valid.csv.
META_COLUMNS: tuple[str, ...] = (PATH, "Sex", "Age", "Frontal/Lateral", "AP/PA")
PATIENT_FOLDER = re.compile(r"^patient\d+$")


def patient_folder(path: str) -> str:
    """The ``patient<digits>`` component of a CheXpert path (a split group), "" when there is none."""
    return next((part for part in path.split("/") if PATIENT_FOLDER.match(part)), "")


def column(frame: pd.DataFrame, name: str) -> list[str | None]:
    """A column's cells, or None per row when the file lacks it."""
    return frame[name].tolist() if name in frame.columns else [None] * len(frame)


def match_chexpert_labels(path: Path, files: Sequence[str], root_name: str, mcfg: IngestMedical) -> MedicalLabels:
    """Read a CheXpert-style CSV and match its ``Path`` cells to ``files`` (``/``-paths relative to the raw folder).

    Raises:
        UserError: no ``Path`` column, duplicate paths, a malformed label value (file, rows and column named),
            unknown ``label_names``, or no row matching any file.
    """
    frame = read_csv(path, (PATH,))
    names = finding_columns([c for c in frame.columns if c not in META_COLUMNS], mcfg.label_names, path)
    values = finding_values(frame, names, path, mcfg.uncertain, mcfg.blank)    # (N, L), NaN = unknown
    keys = [p.strip().replace("\\", "/").removeprefix("./") for p in frame[PATH].tolist()]
    prefix = root_name + "/"
    present = set(files)
    keys = [k[len(prefix):] if k not in present and k.startswith(prefix) else k for k in keys]
    dup = pd.Series(keys).duplicated(keep=False).to_numpy()
    if dup.any():
        raise UserError(f"{path}: duplicate '{PATH}' on rows {csv_rows(np.flatnonzero(dup))}; "
                        "each image must appear once")
    views = [chexpert_view(fl, appa) for fl, appa in zip(column(frame, "Frontal/Lateral"), column(frame, "AP/PA"))]
    by_file: dict[str, tuple[np.ndarray, str]] = {}
    demographics: dict[str, dict[str, str]] = {}
    patients, missing = set(), 0
    for i, (key, sex, age, view) in enumerate(zip(keys, column(frame, "Sex"), column(frame, "Age"), views)):
        pid = patient_folder(key)
        patients.add(pid)
        if key not in present:
            missing += 1
            continue
        by_file[key] = (values[i], pid)
        demographics[key] = csv_demographics(sex, age, view)
    if not by_file and len(frame):
        raise UserError(f"{path}: none of its {len(frame)} '{PATH}' values is a file under the raw folder; "
                        "'Path' is relative to --raw (a first folder named like --raw itself is dropped)")
    # Every patient folder under the raw folder is an identifier: an unlabelled file's path is pseudonymised too.
    patients |= {patient_folder(f) for f in files}
    return MedicalLabels(names, by_file, frozenset(p for p in patients if p), missing, demographics)


class ChexpertSource(NihSource):
    """Images under ``--raw`` plus a CheXpert-style labels CSV."""

    desc = "ingest medical (chexpert)"

    @classmethod
    def default_labels(cls, raw: Path, cfg: IngestConfig) -> Path:
        """``<raw>/labels.csv`` (the sample layout; CheXpert itself ships ``train.csv`` and ``valid.csv``)."""
        return raw / "labels.csv"

    @classmethod
    def detect(cls, labels: Path) -> bool:
        """A ``Path`` column next to ``Frontal/Lateral`` or ``AP/PA``."""
        columns = header_columns(labels)
        return PATH in columns and ("Frontal/Lateral" in columns or "AP/PA" in columns)

    def list_inputs(self) -> list[Path]:
        """Every non-hidden file under ``--raw``, the labels file excluded."""
        self.root = self.raw
        self.files = find_files(self.root, exclude=[self.labels])
        if not self.files:
            raise UserError(f"{self.root}: no input files found")
        return self.files

    def read_labels(self) -> tuple[str, ...]:
        """Match the CSV's ``Path`` cells to the files; the finding columns are the label names."""
        self.root_keys = relative_keys(self.files, self.root)
        self.table = match_chexpert_labels(self.labels, self.root_keys, self.raw.name, self.cfg.medical)
        return self.table.label_names
