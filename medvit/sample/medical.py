"""Medical sample files: DICOM chest radiographs with planted PHI and a CheXpert-style labels.csv.

Layout under ``out`` (what ``medvit.ingest`` reads for the medical domain):

* ``images/img_NNNNN.dcm``: DICOM Part 10 DX / CR chest radiographs, numbered in random order so
  that a file name says nothing about its patient;
* ``labels.csv`` in CheXpert's layout (``medvit.ingest.chexpert``): ``Path`` (``images/img_NNNNN.dcm``,
  relative to ``out``), ``Sex``, ``Age``, ``Frontal/Lateral``, ``AP/PA``, ``No Finding``, then one column
  per finding: ``1.0`` positive, ``0.0`` negative, ``-1.0`` uncertain (``UNCERTAIN_FRACTION`` of all
  entries, drawn at random, so the demo's ``uncertain: ignore`` masks them) or blank (``BLANK_FRACTION``
  of the other negatives: "not mentioned"). There is no patient id column: ingest groups by the
  DICOM PatientID.

Each file comes from two builders: ``build_pixels`` maps the phantom's attenuation to stored values
with their windows and photometric interpretation, and ``build_header`` makes the DICOM data set
around them. The PHI in the headers (``PHIDOE^...``, ``PHIPID...``, a private block) is synthetic; it
exists so that ingest's de-identification (DICOM PS3.15 Annex E) is tested on real headers.

This module writes DICOM, so it imports pydicom although only medvit/io reads it.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
    generate_uid,
)
from tqdm import tqdm

from medvit.config import SampleMedical
from medvit.data.layout import NO_FINDING
from medvit.errors import UserError
from medvit.sample.output import SampleSummary, staging
from medvit.sample.radiograph import FINDINGS, Anatomy, burn_in, chest_radiograph

MEDICAL_ENTRIES = frozenset({"images", "labels.csv"})
UNCERTAIN_FRACTION = 0.10  # of all finding entries: written -1.0 whatever the truth
BLANK_FRACTION = 0.15      # of the remaining negative entries: written blank
PHI_PRIVATE_CREATOR = "MEDVIT SYNTHETIC PHI"  # private block (0011,10xx); its (0011,1001) holds PHI
# DICOM SOP classes (PS3.4 Annex B): Digital X-Ray for presentation, and Computed Radiography.
_DX_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.1.1"
_CR_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.1"
# Indexed by the category _assign draws: 0 explicit (the rest), 1 implicit, 2 RLE, 3 JPEG 2000.
_TRANSFER_SYNTAXES: tuple[UID, ...] = (ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless,
                                       JPEG2000Lossless)
# The sample's sites: (InstitutionName, modality -> (Manufacturer, ManufacturerModelName)), each with a DX
# detector and a CR reader, so that the per-subgroup report sees several sites and devices. Site names hold
# "PHI": InstitutionName is PHI (only its keyed pseudonym leaves ingest); device names are not.
SITES: tuple[tuple[str, dict[str, tuple[str, str]]], ...] = (
    ("PHI General Hospital", {"DX": ("Carestream Health", "DRX-Evolution Plus"), "CR": ("Agfa", "CR 30-X")}),
    ("PHI Northside Clinic", {"DX": ("Philips Medical Systems", "DigitalDiagnost C90"),
                              "CR": ("FUJIFILM Corporation", "FCR PRIMA T2")}),
    ("PHI Riverside Medical Center", {"DX": ("GE Healthcare", "Definium 656 HD"),
                                      "CR": ("KONICA MINOLTA", "REGIUS 110")}),
)
_SITE_OF_PATIENT = (0, 0, 1, 0, 2, 1, 0, 2, 0, 1)  # patient index mod 10 -> site: 50 / 30 / 20 %


@dataclass(frozen=True)
class Patient:
    """One synthetic patient; ``index`` numbers the planted identifiers."""

    index: int
    anatomy: Anatomy
    sex: str
    birth: dt.date
    first_study: dt.date

    @classmethod
    def draw(cls, rng: np.random.Generator, index: int) -> Patient:
        """A random adult, 25-85 years old at the first study (2014-2022)."""
        anatomy = Anatomy.draw(rng)
        sex = "F" if rng.random() < 0.5 else "M"
        age = int(rng.integers(25, 86))
        first = dt.date(2014, 1, 1) + dt.timedelta(days=int(rng.integers(0, 3000)))
        birth = first - dt.timedelta(days=int(365.25 * age) + int(rng.integers(0, 365)))
        return cls(index, anatomy, sex, birth, first)

    @property
    def name(self) -> str:
        """PatientName (planted PHI)."""
        return f"PHIDOE^{'JANE' if self.sex == 'F' else 'JOHN'}^{self.index}"

    @property
    def site(self) -> int:
        """Index into ``SITES`` of the patient's hospital (from the index: no draw, so files stay as they were)."""
        return _SITE_OF_PATIENT[self.index % len(_SITE_OF_PATIENT)]

    @property
    def patient_id(self) -> str:
        """PatientID (planted PHI), also labels.csv's ``Patient ID``."""
        return f"PHIPID{self.index:05d}"


@dataclass(frozen=True)
class Study:
    """One image of a patient; every image is its own study and ``index`` is its ``Follow-up #``."""

    patient: Patient
    index: int
    date: dt.date
    findings: tuple[str, ...]
    view: str
    modality: str

    @classmethod
    def draw(cls, rng: np.random.Generator, patient: Patient, index: int, previous: dt.date,
             findings: tuple[str, ...]) -> Study:
        """Study ``index`` of ``patient``: on ``previous`` when it is the first, else 14-400 days later."""
        date = previous + dt.timedelta(days=int(rng.integers(14, 400))) if index else previous
        view = "PA" if rng.random() < 0.85 else "AP"
        modality = "DX" if rng.random() < 0.5 else "CR"
        return cls(patient, index, date, findings, view, modality)

    @property
    def age(self) -> int:
        """Age in whole years on the study date."""
        return (self.date - self.patient.birth).days // 365


@dataclass(frozen=True)
class StoredImage:
    """Stored pixel values and the attributes that say how to display them.

    Attributes:
        pixels: (H, W) uint16 stored values.
        bits: BitsStored, 12 or 16.
        centers, widths: the VOI windows in modality units, the default one first.
    """

    pixels: np.ndarray
    bits: int
    slope: float
    intercept: float
    centers: tuple[float, ...]
    widths: tuple[float, ...]
    photometric: str
    burned_in: bool


def _ds_str(value: float) -> str:
    """A DICOM DS string (at most 16 characters)."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _uid(seed: int, *parts: object) -> UID:
    """A UID that is the same for the same seed and parts (so files are byte-identical per seed)."""
    return generate_uid(entropy_srcs=["medvit-sample", str(seed), *map(str, parts)])


def build_pixels(rng: np.random.Generator, study: Study, size: int, *, burned_in: bool, two_windows: bool,
                 monochrome1: bool) -> StoredImage:
    """Render ``study``'s radiograph and map it to stored values, as a detector would.

    Stored values are 12 or 16 bit, mapped so that a linear window covers the attenuation range. DX
    keeps the identity rescale (PS3.3 C.8.11.7); CR varies RescaleSlope / Intercept. MONOCHROME1
    inverts the stored values and mirrors the window centre, so the PS3.3 C.7.6.3.1.2 chain (modality
    LUT, VOI window, then inversion) displays it like MONOCHROME2.
    """
    patient = study.patient
    att = chest_radiograph(rng, size, study.findings, patient.anatomy)
    if burned_in:
        att = burn_in(att, f"{patient.name.replace('^', ' ')} {study.date:%Y%m%d}")
    bits = 12 if rng.random() < 0.5 else 16
    maxv = 2**bits - 1
    lo, hi = maxv * rng.uniform(0.02, 0.10), maxv * rng.uniform(0.55, 0.95)  # detectors rarely use the full range
    stored = np.round(lo + att * (hi - lo)).astype(np.uint16)  # (H, W)
    slope, intercept = (1.0, 0.0) if study.modality == "DX" else (
        float(rng.choice([0.5, 1.0, 2.0])), float(rng.choice([-1024.0, 0.0, 1000.0])))
    centers = [slope * (lo + hi) / 2 * rng.uniform(0.98, 1.02) + intercept]
    widths = [slope * (hi - lo) * rng.uniform(1.0, 1.08)]
    if two_windows:  # a second, harder window; readers use the first (PS3.3 C.11.2.1.2)
        centers.append(centers[0] + 0.15 * widths[0])
        widths.append(0.5 * widths[0])
    photometric = "MONOCHROME2"
    if monochrome1:  # PS3.3 C.7.6.3.1.2: minimum value is displayed white
        photometric = "MONOCHROME1"
        stored = (maxv - stored).astype(np.uint16)
        centers = [slope * maxv + 2 * intercept - c for c in centers]
    return StoredImage(stored, bits, slope, intercept, tuple(centers), tuple(widths), photometric, burned_in)


def build_header(rng: np.random.Generator, study: Study, image: StoredImage, transfer_syntax: UID,
                 seed: int) -> Dataset:
    """The DICOM data set of ``study`` for ``image``, without Pixel Data.

    Draws the study time from ``rng`` (after ``build_pixels``: the order keeps files byte-identical).
    Every identifying attribute holds planted PHI, plus one private element in ``PHI_PRIVATE_CREATOR``'s
    block, which the PS3.15 basic profile removes. The patient's site (``SITES``) gives InstitutionName
    and, by modality, Manufacturer and ManufacturerModelName; PatientAge is left out for every 13th patient.
    """
    patient, p, j = study.patient, study.patient.index, study.index
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    sop_class = _DX_SOP_CLASS if study.modality == "DX" else _CR_SOP_CLASS
    sop_uid = _uid(seed, "sop", p, j)
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    # SOP common, general study, series and equipment.
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = f"{study.date:%Y%m%d}"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = f"{int(rng.integers(7, 19)):02d}{int(rng.integers(0, 60)):02d}00"
    ds.AccessionNumber = f"PHIACC{p:05d}{j:02d}"
    ds.Modality = study.modality
    if study.modality == "DX":
        ds.PresentationIntentType = "FOR PRESENTATION"
    institution, devices = SITES[patient.site]
    ds.Manufacturer, ds.ManufacturerModelName = devices[study.modality]
    ds.InstitutionName = institution
    ds.InstitutionAddress = "1 PHI Street, Springfield"
    ds.ReferringPhysicianName = f"PHIREF^GREGORY^{p % 7}"
    ds.StudyDescription = f"XR CHEST {study.view}"
    ds.SeriesDescription = f"CHEST {study.view}"
    ds.OperatorsName = f"PHIOPR^TECH^{p % 5}"
    ds.StudyInstanceUID = _uid(seed, "study", p, j)
    ds.SeriesInstanceUID = _uid(seed, "series", p, j)
    ds.StudyID = f"PHISTD{p:05d}{j:02d}"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    # Patient.
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = f"{patient.birth:%Y%m%d}"
    ds.PatientSex = patient.sex
    if p % 13 != 12:  # PatientAge is optional (type 3): ingest then counts from the birth and study dates
        ds.PatientAge = f"{study.age:03d}Y"
    ds.OtherPatientIDs = f"PHIOID{p:05d}"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = study.view
    ds.PatientOrientation = ["L", "F"]  # PA, displayed as if facing the patient
    # Image pixel, modality LUT, VOI LUT and presentation.
    size = image.pixels.shape[0]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = image.photometric
    ds.Rows = ds.Columns = size
    spacing = _ds_str(430.0 / size)  # a 43 cm detector
    ds.ImagerPixelSpacing = [spacing, spacing]
    ds.PixelSpacing = [spacing, spacing]
    ds.BitsAllocated = 16
    ds.BitsStored = image.bits
    ds.HighBit = image.bits - 1
    ds.PixelRepresentation = 0
    ds.BurnedInAnnotation = "YES" if image.burned_in else "NO"
    centers, widths = image.centers, image.widths
    ds.WindowCenter = [_ds_str(c) for c in centers] if len(centers) > 1 else _ds_str(centers[0])
    ds.WindowWidth = [_ds_str(w) for w in widths] if len(widths) > 1 else _ds_str(widths[0])
    if len(centers) > 1:
        ds.WindowCenterWidthExplanation = ["NORMAL", "HARD"]
    ds.RescaleIntercept = _ds_str(image.intercept)
    ds.RescaleSlope = _ds_str(image.slope)
    ds.RescaleType = "US"
    if study.modality == "DX":
        ds.PresentationLUTShape = "INVERSE" if image.photometric == "MONOCHROME1" else "IDENTITY"
    ds.LossyImageCompression = "00"
    ds.private_block(0x0011, PHI_PRIVATE_CREATOR, create=True).add_new(0x01, "LO", f"PHIPRIV {patient.name}")
    return ds


def _save(path: Path, ds: Dataset, image: StoredImage) -> None:
    """Add the Pixel Data in ``ds``'s transfer syntax and write a Part 10 file."""
    transfer_syntax = ds.file_meta.TransferSyntaxUID
    if transfer_syntax.is_compressed:
        plugin = "pydicom" if transfer_syntax == RLELossless else "pylibjpeg"
        ds.compress(transfer_syntax, image.pixels, encoding_plugin=plugin, generate_instance_uid=False)
    else:
        ds.PixelData = image.pixels.tobytes()
        ds["PixelData"].VR = "OW"
    ds.save_as(path, enforce_file_format=True)


def _check_findings(findings: Sequence[str]) -> tuple[str, ...]:
    """``findings`` as a tuple, if they are distinct names the phantom draws; else a UserError."""
    unknown = [f for f in findings if f not in FINDINGS]
    if unknown or not findings or len(set(findings)) != len(findings):
        raise UserError(f"sample.medical.findings: {list(findings)} must be distinct names out of "
                        f"{', '.join(FINDINGS)} (unknown: {unknown})")
    return tuple(findings)


def _assign(rng: np.random.Generator, n: int, fractions: Sequence[float]) -> np.ndarray:
    """Give each of ``n`` items a category so that category i gets round(fractions[i] * n) items."""
    counts = [round(f * n) for f in fractions]
    cats = np.concatenate([np.full(c, i + 1) for i, c in enumerate(counts)] + [np.zeros(n, int)])[:n]
    return rng.permutation(cats)


def _label_design(rng: np.random.Generator, n: int, num_labels: int, prevalence: float,
                  tries: int = 200) -> np.ndarray:
    """(n, L) bool findings: independent draws, keeping the draw whose labels are least correlated.

    With a few hundred images, independent draws correlate findings by chance (|r| ~ 0.1-0.2); a
    model can then learn one finding as a proxy for another, which fails on the test split.
    """
    best, best_score = np.zeros((n, num_labels), bool), np.inf
    for _ in range(tries):
        y = rng.random((n, num_labels)) < prevalence
        corr = np.corrcoef(y.T.astype(float)) if num_labels > 1 and y.std(0).all() else np.zeros((1, 1))
        score = np.abs(corr - np.eye(len(corr))).max() + np.abs(y.mean(0) - prevalence).max()
        if score < best_score:
            best, best_score = y, score
    return best


def _label_cells(rng: np.random.Generator, design: np.ndarray) -> np.ndarray:
    """(n, L) CheXpert cells of the true findings ``design``: ``1.0``/``0.0``, some ``-1.0`` and blanks."""
    cells = np.where(design, "1.0", "0.0").astype(object)
    uncertain = (_assign(rng, design.size, [UNCERTAIN_FRACTION]) == 1).reshape(design.shape)
    negatives = np.flatnonzero(~design & ~uncertain)
    blank = negatives[_assign(rng, len(negatives), [BLANK_FRACTION]) == 1]
    cells[uncertain] = "-1.0"
    cells.flat[blank] = ""
    return cells


def write_medical(out: Path, cfg: SampleMedical, seed: int) -> SampleSummary:
    """Write ``images/img_NNNNN.dcm`` and ``labels.csv`` (CheXpert style) into ``out``.

    Headers vary the way real archives do: DX and CR; BitsStored 12 or 16; a share of MONOCHROME1
    images; a few with two windows; Explicit and Implicit VR Little Endian, RLE Lossless and JPEG
    2000 Lossless transfer syntaxes; ``cfg.burned_in`` images with text burned into the pixels and
    BurnedInAnnotation YES.
    """
    start = time.perf_counter()
    logging.getLogger("openjpeg").setLevel(logging.WARNING)  # it logs one INFO line per encoded tile
    findings = _check_findings(cfg.findings)
    n_images = cfg.n_patients * cfg.images_per_patient
    rng = np.random.default_rng([seed, 1])
    numbers = rng.permutation(n_images)  # file numbers: file order says nothing about the patient
    mono1 = _assign(rng, n_images, [cfg.monochrome1_fraction]) == 1
    burned = _assign(rng, n_images, [min(cfg.burned_in, n_images) / n_images]) == 1
    syntax = _assign(rng, n_images, [0.1, 0.1, 0.1])  # an index into _TRANSFER_SYNTAXES
    multi_window = _assign(rng, n_images, [0.1]) == 1
    design = _label_design(rng, n_images, len(findings), cfg.prevalence)
    cells = _label_cells(np.random.default_rng([seed, 2]), design)  # own stream: the files stay as they were
    rows: list[dict[str, object]] = []
    with staging(out, MEDICAL_ENTRIES) as tmp, tqdm(total=n_images, desc="sample medical", unit="img") as bar:
        (tmp / "images").mkdir()
        for p in range(cfg.n_patients):
            patient = Patient.draw(np.random.default_rng([seed, 1, p]), p)  # one stream per patient
            date = patient.first_study
            for j in range(cfg.images_per_patient):
                k = p * cfg.images_per_patient + j
                irng = np.random.default_rng([seed, 1, p, j])  # one stream per image
                has = tuple(f for f, on in zip(findings, design[k]) if on)
                study = Study.draw(irng, patient, j, date, has)
                date = study.date
                image = build_pixels(irng, study, cfg.image_size, burned_in=bool(burned[k]),
                                     two_windows=bool(multi_window[k]), monochrome1=bool(mono1[k]))
                ds = build_header(irng, study, image, _TRANSFER_SYNTAXES[syntax[k]], seed)
                file_name = f"img_{numbers[k]:05d}.dcm"
                _save(tmp / "images" / file_name, ds, image)
                rows.append({"Path": f"images/{file_name}", "Sex": {"F": "Female", "M": "Male"}[patient.sex],
                             "Age": study.age, "Frontal/Lateral": "Frontal", "AP/PA": study.view,
                             NO_FINDING: "" if has else "1.0", **dict(zip(findings, cells[k]))})
                bar.update()
        labels = pd.DataFrame(rows).sort_values("Path")
        labels.to_csv(tmp / "labels.csv", index=False, lineterminator="\n")
    counts = {f: int(design[:, j].sum()) for j, f in enumerate(findings)}
    counts[NO_FINDING] = int((~design.any(1)).sum())
    detail = (", ".join(f"{k} {v}" for k, v in counts.items())
              + f"; {int((cells == '-1.0').sum())} uncertain and {int((cells == '').sum())} blank entries"
              + f"; {int(mono1.sum())} MONOCHROME1, {int(burned.sum())} burned-in")
    return SampleSummary("medical", out, n_images, "DICOM files", cfg.n_patients, "patients", detail,
                         time.perf_counter() - start)
