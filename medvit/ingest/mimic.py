"""Medical source: MIMIC-CXR / MIMIC-CXR-JPG (a metadata CSV per image, a label CSV per study).

Layout (the published one; ``--raw`` is the folder holding ``files/``)::

    <raw>/files/p<first two chars of subject>/p<subject>/s<study>/<dicom_id>.dcm (or .jpg)
    <raw>/<ingest.medical.metadata>      dicom_id, subject_id, study_id, ViewPosition, ...
    --labels                              subject_id, study_id, one column per finding

Both CSVs may be gzipped (``.csv.gz``, as published). Ids are strings
throughout (``01000032`` keeps its zero). A metadata row names one image; its
labels are the label-CSV row of its ``(subject_id, study_id)``, in the CheXpert
values (``medvit.ingest.labels.finding_values``). The split group is the
subject; ``ViewPosition`` fills the ``view`` subgroup column when the header
has none (JPEGs). Inputs are the ``.dcm`` and ``.jpg`` files under
``<raw>/files`` (or ``<raw>``); other files there (the ``s<study>.txt`` reports,
a wget mirror's ``index.html``) are counted in report.json
(``files_not_images``). An input no metadata row names, or whose study has no
label row, is rejected ("no labels"); a metadata row without its image is
counted in report.json (``labels_without_images``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medvit.config import IngestConfig, IngestMedical
from medvit.errors import UserError
from medvit.ingest.demographics import csv_demographics
from medvit.ingest.labels import csv_rows, finding_columns, finding_values, header_columns, read_csv
from medvit.ingest.nih import MedicalLabels, NihSource
from medvit.ingest.source import CacheInfo, Collected, find_files, relative_keys

log = logging.getLogger(__name__)

METADATA = "mimic-cxr-2.0.0-metadata.csv"   # ingest.medical.metadata when null
LABELS = "mimic-cxr-2.0.0-chexpert.csv"      # --labels default
KEYS: tuple[str, str] = ("subject_id", "study_id")
SUFFIXES: tuple[str, ...] = (".dcm", ".jpg")


def published(raw: Path, name: str) -> Path:
    """``<raw>/<name>``, or ``<raw>/<name>.gz`` when only the gzipped file (as PhysioNet ships it) exists."""
    plain, gz = raw / name, raw / f"{name}.gz"
    return gz if not plain.exists() and gz.exists() else plain


def image_key(subject: str, study: str, dicom_id: str, suffix: str) -> str:
    """``p<first two chars of subject>/p<subject>/s<study>/<dicom_id><suffix>``, relative to ``files/``."""
    return f"p{subject[:2]}/p{subject}/s{study}/{dicom_id}{suffix}"


def strip_ids(values: Sequence[str], prefix: str) -> list[str]:
    """Ids as strings, a redundant ``p``/``s`` prefix dropped (``s50414267`` -> ``50414267``)."""
    return [v.strip().removeprefix(prefix) for v in values]


def match_mimic_labels(labels: Path, metadata: Path, files: Sequence[str], mcfg: IngestMedical) -> MedicalLabels:
    """Join the metadata CSV (one row per image) to the label CSV (one row per study) over ``files``.

    Raises:
        UserError: a missing column, a duplicate study or ``dicom_id``, a malformed label value
            (file, rows and column named), or no metadata row matching any file.
    """
    if not metadata.is_file():
        raise UserError(f"{metadata}: MIMIC-CXR metadata CSV not found; set ingest.medical.metadata to its file "
                        "name relative to the raw folder")
    meta = read_csv(metadata, ("dicom_id", *KEYS))
    table = read_csv(labels, KEYS)
    names = finding_columns([c for c in table.columns if c not in KEYS], mcfg.label_names, labels)
    values = finding_values(table, names, labels, mcfg.uncertain, mcfg.blank)   # (S, L), NaN = unknown
    studies = list(zip(strip_ids(table["subject_id"], "p"), strip_ids(table["study_id"], "s")))
    seen: dict[tuple[str, str], int] = {}
    dup = [i for i, s in enumerate(studies) if seen.setdefault(s, i) != i]
    if dup:
        raise UserError(f"{labels}: duplicate (subject_id, study_id) on rows {csv_rows(dup)}; "
                        "each study must appear once")
    dicom_ids = [d.strip() for d in meta["dicom_id"]]
    repeated = meta["dicom_id"].str.strip().duplicated(keep=False).to_numpy()
    if repeated.any():
        raise UserError(f"{metadata}: duplicate dicom_id on rows {csv_rows(np.flatnonzero(repeated))}")
    views = meta["ViewPosition"].tolist() if "ViewPosition" in meta.columns else [None] * len(meta)
    present = set(files)
    by_file: dict[str, tuple[np.ndarray, str]] = {}
    demographics: dict[str, dict[str, str]] = {}
    missing = 0
    subjects = strip_ids(meta["subject_id"], "p")
    for dicom_id, subject, study, view in zip(dicom_ids, subjects, strip_ids(meta["study_id"], "s"), views):
        keys = [k for k in (image_key(subject, study, dicom_id, s) for s in SUFFIXES) if k in present]
        if not keys:
            missing += 1
            continue
        row = seen.get((subject, study))
        if row is None:  # an image of a study without labels: rejected as "no labels" when decoded
            continue
        for key in keys:
            by_file[key] = (values[row], subject)
            demographics[key] = csv_demographics(view=view)
    if not by_file and len(meta):
        raise UserError(f"{metadata}: none of its {len(meta)} images with a labelled study is a file under the "
                        "raw folder (expected files/p<2>/p<subject>/s<study>/<dicom_id>.dcm or .jpg); check --raw")
    # Every subject folder (p<subject>) is an identifier: an unlabelled file's path is pseudonymised too.
    folders = {f.split("/")[1].removeprefix("p") for f in files if f.count("/") >= 2 and f.startswith("p")}
    return MedicalLabels(names, by_file, frozenset(s for s in {*subjects, *folders} if s), missing, demographics)


class MimicSource(NihSource):
    """MIMIC-CXR DICOMs or MIMIC-CXR-JPG JPEGs with the metadata and CheXpert-labeler CSVs."""

    desc = "ingest medical (mimic)"

    @classmethod
    def default_labels(cls, raw: Path, cfg: IngestConfig) -> Path:
        """``<raw>/mimic-cxr-2.0.0-chexpert.csv`` (or ``.csv.gz``)."""
        return published(raw, LABELS)

    @classmethod
    def detect(cls, labels: Path) -> bool:
        """``subject_id`` and ``study_id`` columns (a per-study label CSV)."""
        columns = header_columns(labels)
        return all(k in columns for k in KEYS) and "dicom_id" not in columns

    def metadata(self) -> Path:
        """The metadata CSV: ``ingest.medical.metadata`` under ``--raw``, else the published name (``.gz`` too)."""
        name = self.cfg.medical.metadata
        return self.raw / name if name else published(self.raw, METADATA)

    def list_inputs(self) -> list[Path]:
        """The ``.dcm`` and ``.jpg`` files under ``<raw>/files`` (or ``<raw>``); other files are counted only.

        MIMIC-CXR keeps each study's free-text report beside its folder (``s<study>.txt``) and a wget
        mirror of PhysioNet leaves an ``index.html`` in every folder: they are no images of the layout,
        and as rejects they would outnumber the images (``max_reject_fraction``).
        """
        self.root = self.raw / "files" if (self.raw / "files").is_dir() else self.raw
        found = find_files(self.root, exclude=[self.labels, self.metadata()])
        self.files = [p for p in found if p.suffix.lower() in SUFFIXES]
        self.not_images = len(found) - len(self.files)
        if not self.files:
            raise UserError(f"{self.root}: no .dcm or .jpg files found (MIMIC-CXR layout: "
                            "files/p<2>/p<subject>/s<study>/<dicom_id>.dcm or .jpg); check --raw")
        if self.not_images:
            log.warning("%s: %d file(s) that are not .dcm or .jpg (reports, index.html; not inputs, counted in "
                        "report.json)", self.root, self.not_images)
        return self.files

    def read_labels(self) -> tuple[str, ...]:
        """Join metadata and labels; the finding columns are the label names."""
        self.root_keys = relative_keys(self.files, self.root)
        self.table = match_mimic_labels(self.labels, self.metadata(), self.root_keys, self.cfg.medical)
        return self.table.label_names

    def cache_info(self, col: Collected) -> CacheInfo:
        """NIH's, plus ``files_not_images``: files under the root that are not .dcm or .jpg (not inputs)."""
        info = super().cache_info(col)
        info.extra["files_not_images"] = self.not_images
        return info
