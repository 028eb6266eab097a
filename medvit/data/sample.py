"""Write the embedded demo data set: real DICOM and GeoTIFF files with a learnable multi-label signal.

So that ``dvc repro`` runs on a fresh offline machine, the sample stage writes the raw inputs a user
would have, in the same layout:

* medical: ``images/img_NNNNN.dcm`` (DICOM Part 10 DX / CR chest radiographs) and a ChestX-ray14-style
  ``labels.csv`` (``Image Index``, ``Finding Labels`` with ``|`` and ``No Finding``, ``Follow-up #``,
  ``Patient ID``, ``Patient Age``, ``Patient Gender``, ``View Position``);
* satellite: ``scenes/<stem>.tif`` (tiled, deflate-compressed uint16 GeoTIFF, 10 m UTM grid, nodata 0),
  ``labels/<stem>.tif`` (uint8 land-cover class index on the same grid, 255 = nodata) and ``tiles.csv``
  (``tile``, ``labels``, ``scene``), the per-tile label variant (BigEarthNet derived its tile labels
  from CORINE rasters the same way).

Import-rule exception: only medvit/io reads DICOM / GeoTIFF, but this module *writes* raw inputs, so
``write_medical`` imports pydicom and ``write_satellite`` imports rasterio (lazily, each only in its
own writer). Pixel synthesis (``chest_radiograph``, ``land_cover_scene``) is pure numpy.

The PHI planted in the DICOM headers (``PHI_KEYWORDS``, ``PHI_PATTERN``, ``planted_phi``) exists so that
ingest's de-identification (DICOM PS3.15 Annex E) is tested on real headers; it is all synthetic.
Generation is deterministic for a seed: the same params give byte-identical files.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import re
import shutil
import time
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from medvit.config import SampleConfig, SampleMedical, SampleSatellite
from medvit.errors import UserError

FINDINGS: tuple[str, ...] = ("cardiomegaly", "effusion", "nodule", "pneumothorax")
NO_FINDING = "No Finding"
MEDICAL_ENTRIES = frozenset({"images", "labels.csv"})
SATELLITE_ENTRIES = frozenset({"scenes", "labels", "tiles.csv"})

# Header attributes that carry planted (synthetic) PHI; every value below contains "PHI" except
# the birth date. Ingest must remove or replace all of them (PS3.15 Annex E basic profile).
PHI_KEYWORDS: tuple[str, ...] = (
    "PatientName", "PatientID", "PatientBirthDate", "AccessionNumber", "InstitutionName",
    "InstitutionAddress", "ReferringPhysicianName", "OperatorsName", "OtherPatientIDs", "StudyID",
)
PHI_PRIVATE_CREATOR = "MEDVIT SYNTHETIC PHI"  # private block (0011,10xx); its (0011,1001) holds PHI
PHI_PATTERN = re.compile(r"PHI(?:DOE|PID|ACC|REF|OPR|OID|STD|PRIV)\w*|PHI General Hospital|PHI Street")

# DICOM SOP classes (PS3.4 Annex B): Digital X-Ray for presentation, and Computed Radiography.
_DX_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.1.1"
_CR_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.1"

# Synthetic Sentinel-2 L2A-like surface reflectance (x 10000) per class and band, roughly after
# published spectral libraries, exaggerated so that classes are strongly separable.
_SIGNATURES: dict[str, dict[str, float]] = {
    #          B1    B2    B3    B4    B5    B6    B7    B8  B8A   B11   B12
    "water":    dict(zip(("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12"),
                         (900, 800, 650, 420, 300, 220, 190, 150, 130, 80, 60))),
    "forest":   dict(zip(("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12"),
                         (300, 260, 520, 240, 800, 2600, 3200, 3500, 3600, 1500, 700))),
    "cropland": dict(zip(("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12"),
                         (550, 550, 900, 850, 1300, 1900, 2200, 2400, 2500, 2300, 1500))),
    "urban":    dict(zip(("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12"),
                         (1500, 1500, 1600, 1700, 1750, 1800, 1850, 1900, 1950, 2300, 2100))),
    "bare":     dict(zip(("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12"),
                         (1000, 1100, 1600, 2500, 2800, 2950, 3050, 3150, 3250, 3900, 3400))),
}
_ASPHALT: dict[str, float] = dict(zip(("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12"),
                                      (800, 750, 780, 800, 820, 850, 880, 900, 920, 1000, 950)))
# How a greener crop parcel changes each band (relative): red down, NIR up.
_GREENNESS: dict[str, float] = {"B1": -0.10, "B2": -0.10, "B3": 0.0, "B4": -0.25, "B5": -0.05, "B6": 0.12,
                                "B7": 0.15, "B8": 0.18, "B8A": 0.18, "B11": -0.10, "B12": -0.15}
# Where the scenes lie: (EPSG code of a WGS 84 / UTM zone, upper-left easting, northing).
_PLACES: tuple[tuple[int, float, float], ...] = (
    (32632, 680_000.0, 5_340_000.0),  # 32N, Bavaria
    (32630, 440_000.0, 4_480_000.0),  # 30N, central Spain
    (32610, 620_000.0, 4_260_000.0),  # 10N, Central Valley
    (32755, 300_000.0, 6_260_000.0),  # 55S, New South Wales
    (32633, 500_000.0, 5_800_000.0),  # 33N, Poland
    (32736, 260_000.0, 9_860_000.0),  # 36S, Kenya
    (32644, 410_000.0, 3_100_000.0),  # 44N, Uttar Pradesh
    (32721, 330_000.0, 6_150_000.0),  # 21S, Pampas
    (32617, 580_000.0, 4_830_000.0),  # 17N, Ontario
    (32631, 450_000.0, 5_410_000.0),  # 31N, northern France
)
_PIXEL_M = 10.0


# --------------------------------------------------------------------------- shared helpers
def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Unit-variance Gaussian random field with correlation length ``sigma`` pixels, (H, W) float32."""
    white = rng.standard_normal(shape)
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    kernel = np.exp(-2.0 * (np.pi * sigma) ** 2 * (fx**2 + fy**2))  # FT of a Gaussian blur
    field = np.fft.irfft2(np.fft.rfft2(white) * kernel, s=shape)
    return (field / (field.std() + 1e-12)).astype(np.float32)


def _soft(d: np.ndarray, edge: float) -> np.ndarray:
    """Anti-aliased inside-mask from a signed distance ``d`` (negative inside), ramp width ``edge``."""
    return np.clip(0.5 - d / edge, 0.0, 1.0)


@contextmanager
def _staging(out: Path, entries: frozenset[str]) -> Iterator[Path]:
    """Yield an empty sibling folder of ``out``; on success it replaces ``out`` in two renames.

    Refuses to replace an existing ``out`` that holds anything besides ``entries``, so that a
    mistyped ``--out`` never deletes a user's own data.
    """
    if out.exists():
        if not out.is_dir():
            raise UserError(f"{out}: exists and is not a folder; pass another --out")
        foreign = sorted(p.name for p in out.iterdir() if p.name not in entries)
        if foreign:
            raise UserError(f"{out}: holds {', '.join(foreign[:5])}, which the sample stage did not write; "
                            "pass another --out or empty the folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    for stale in (tmp, old):
        shutil.rmtree(stale, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


@dataclass(frozen=True)
class SampleSummary:
    """What one sample run wrote (its ``str`` is the stage's one-line summary)."""

    domain: str
    out: Path
    n_files: int
    n_groups: int
    detail: str
    seconds: float

    def __str__(self) -> str:
        unit = "DICOM files" if self.domain == "medical" else "scenes"
        group = "patients" if self.domain == "medical" else "places"
        return (f"sample {self.domain}: wrote {self.n_files} {unit} ({self.n_groups} {group}; {self.detail}) "
                f"to {self.out} in {self.seconds:.1f}s")


def write_sample(domain: str, out: str | Path, cfg: SampleConfig) -> SampleSummary:
    """Write the demo data set of ``domain`` into ``out`` (replacing an earlier sample there)."""
    if domain == "medical":
        return write_medical(Path(out), cfg.medical, cfg.seed)
    if domain == "satellite":
        return write_satellite(Path(out), cfg.satellite, cfg.seed)
    raise UserError(f"unknown domain {domain!r}: use medical or satellite")


# --------------------------------------------------------------------------- medical: pixels
@dataclass(frozen=True)
class Anatomy:
    """Per-patient body shape, in image-width units (the image spans [-0.5, 0.5] both ways)."""

    body_half_width: float
    lung_offset: float
    lung_half_width: float
    lung_half_height: float
    heart_half_width: float
    rib_spacing: float
    bone: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Anatomy:
        """A random adult thorax."""
        return cls(body_half_width=rng.uniform(0.44, 0.48), lung_offset=rng.uniform(0.185, 0.20),
                   lung_half_width=rng.uniform(0.125, 0.14), lung_half_height=rng.uniform(0.26, 0.30),
                   heart_half_width=rng.uniform(0.12, 0.14), rib_spacing=rng.uniform(0.056, 0.064),
                   bone=rng.uniform(0.85, 1.15))


def _lung(u: np.ndarray, v: np.ndarray, side: int, anat: Anatomy, px: float) -> tuple[np.ndarray, ...]:
    """Soft lung mask and its normalised coordinates for ``side`` -1 (image left) or +1 (image right).

    Returns (mask, du, dv, r): du/dv are offsets from the lung centre in half-axis units and r the
    superellipse radius (1 on the outline).
    """
    a = anat.lung_half_width
    b = anat.lung_half_height * (0.96 if side < 0 else 1.0)  # the right hemidiaphragm sits higher
    cx, cy = side * anat.lung_offset, -0.03 - (0.01 if side < 0 else 0.0)
    du, dv = (u - cx) / a, (v - cy) / b
    p = np.where(dv < 0, 2.0, 3.5)  # round apex, square costophrenic angles
    r = (np.abs(du) ** p + np.abs(dv) ** p) ** (1.0 / p)
    dome = cy + b * (1.0 - 0.3 * np.clip(1.0 - du**2, 0.0, 1.0))  # hemidiaphragm, lowest laterally
    mask = _soft((r - 1.0) * a, 1.5 * px) * _soft(v - dome, 1.5 * px)
    return mask, du, dv, r


def chest_radiograph(rng: np.random.Generator, size: int, findings: Collection[str],
                     anatomy: Anatomy | None = None) -> np.ndarray:
    """A synthetic PA chest radiograph as attenuation in [0, 1] (1 = bone-bright), (size, size) float32.

    Each finding is a large, consistently located effect that survives downsampling to 64-96 px and
    any linear window: cardiomegaly makes the heart globular (cardiothoracic ratio ~0.7 instead of
    ~0.4, and taller), effusion fills the base of one or both lungs up to a meniscus, nodule adds 8-14
    round opacities (diameter 6-10 % of the width) and pneumothorax leaves a dark, marking-free
    apical-lateral space between the chest wall and the collapsed lung's pleural line.
    """
    unknown = set(findings) - set(FINDINGS)
    if unknown:
        raise UserError(f"sample.medical.findings: unknown finding(s) {sorted(unknown)}; "
                        f"the sample generator draws {', '.join(FINDINGS)}")
    anat = anatomy or Anatomy.draw(rng)
    px = 1.0 / size
    # Per-image pose: small rotation, scale and shift, applied to the sampling grid.
    ang = math.radians(rng.uniform(-2.0, 2.0))
    scale = rng.uniform(0.97, 1.03)
    shift = rng.uniform(-0.015, 0.015, size=2)
    g = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    y, x = np.meshgrid(g, g, indexing="ij")
    u = (math.cos(ang) * x + math.sin(ang) * y) / scale - shift[0]
    v = (-math.sin(ang) * x + math.cos(ang) * y) / scale - shift[1]

    bw = anat.body_half_width
    body_r = (np.abs(u / bw) ** 4 + np.abs((v - 0.14) / 0.60) ** 4) ** (1 / 4)
    body = np.maximum(_soft((body_r - 1.0) * bw, 2 * px), _soft(np.abs(u) - 0.085, 2 * px) * (v < -0.25))
    img = body * (0.46 + 0.10 * np.clip(1.0 - (u / bw) ** 2, 0.0, 1.0))  # thicker tissue centrally

    # Heart (patient's left = image right), mediastinum, aortic knob and spine.
    # Cardiomegaly: a globular heart, much wider and taller (its base stays on the diaphragm).
    big = "cardiomegaly" in findings
    hw = anat.heart_half_width * (1.85 if big else 1.0) * rng.uniform(0.96, 1.04)
    hh = 0.11 * (1.5 if big else 1.0) * rng.uniform(0.96, 1.04)
    hx, hy = 0.03 + 0.40 * hw, 0.235 - hh
    hu, hv = (u - hx) * 0.94 + (v - hy) * 0.34, -(u - hx) * 0.34 + (v - hy) * 0.94  # apex points down-left
    hr = np.sqrt((hu / hw) ** 2 + (hv / hh) ** 2)
    heart = _soft((hr - 1.0) * min(hw, hh), 2 * px)
    thick = np.sqrt(np.clip(1.0 - hr**2, 0.0, 1.0))  # projected thickness of an ellipsoid
    medi = _soft(np.abs(u - 0.01) - (0.065 + 0.1 * np.clip(-v - 0.25, 0, 1)), 2 * px) * _soft(v - hy, 2 * px)
    knob = _soft(np.hypot(u - 0.06, v + 0.17) - 0.035, 2 * px)
    vert = 0.5 + 0.5 * np.cos(2 * np.pi * v / 0.045)
    spine = _soft(np.abs(u) - 0.035, 2 * px) * (0.03 + 0.03 * vert)
    img += 0.09 * heart + 0.08 * thick + 0.12 * np.maximum(medi - heart, 0) + 0.06 * knob + spine * body

    # Lung texture: ridges of a smooth random field, denser towards the hila.
    ridge = np.clip(1.0 - np.abs(_smooth_noise(rng, (size, size), 0.008 * size)) / 0.45, 0.0, 1.0) ** 2
    air = np.zeros_like(img)
    marks = np.zeros_like(img)
    extra = np.zeros_like(img)
    collapsed = np.zeros_like(img)
    effusion_sides = ((-1,), (1,), (-1, 1), (-1, 1))[int(rng.integers(4))] if "effusion" in findings else ()
    ptx_side = int(rng.choice([-1, 1])) if "pneumothorax" in findings else 0
    for side in (-1, 1):
        lung, du, dv, _r = _lung(u, v, side, anat, px)
        lung = lung * (1.0 - heart) * (1.0 - medi)
        hilum = np.exp(-np.hypot(u - side * 0.09, v + 0.01) / 0.10)
        mk = (0.16 * ridge * (0.30 + 0.70 * hilum) + 0.08 * hilum) * lung
        la = lung.copy()
        if side in effusion_sides:
            # Fluid fills the base with a meniscus climbing laterally (blunted costophrenic angle).
            base = -0.03 + anat.lung_half_height
            level = base - rng.uniform(0.30, 0.42) * 2 * anat.lung_half_height \
                - 0.14 * np.clip((side * du + 1.0) / 2.0, 0.0, 1.0) ** 2
            fluid = _soft(level - v, 6 * px)
            la *= 1.0 - fluid
            mk *= 1.0 - fluid
            extra += 0.10 * fluid * lung
        if side == ptx_side:
            # Air between chest wall and collapsed lung: dark, no vessel markings, thin pleural line.
            # The lung collapses towards the hilum: a smaller copy of its outline, shifted medially down.
            k = rng.uniform(0.35, 0.47)
            cu, cv = (du + side * (1.0 - k)) / k, (dv - (1.0 - k)) / k
            cr = np.sqrt(cu**2 + cv**2)
            space = _soft((1.0 - cr) * k * anat.lung_half_width, 1.5 * px) * lung
            pleura = np.exp(-(((cr - 1.0) * k * anat.lung_half_width) / (0.9 * px)) ** 2) * lung * (cv < 0.6)
            mk *= 1.0 - space
            collapsed += space
            extra += -0.30 * space + 0.20 * pleura + 0.04 * (1.0 - space) * lung
        air += la
        marks += mk
    img += marks - 0.28 * air + extra

    if "nodule" in findings:
        lungs = (air > 0.9) & (heart < 0.1) & (collapsed < 0.1)
        cand = np.flatnonzero(lungs)
        for _ in range(int(rng.integers(8, 15))):
            if cand.size == 0:
                break
            cy, cx = divmod(int(cand[rng.integers(cand.size)]), size)
            rad = rng.uniform(0.03, 0.05) * size
            d2 = ((np.arange(size)[:, None] - cy) ** 2 + (np.arange(size)[None, :] - cx) ** 2) / rad**2
            img += 0.45 * np.sqrt(np.clip(1.0 - d2, 0.0, 1.0))  # projected thickness of a sphere

    # Ribs (posterior, curving down laterally) and clavicles, inside the body only.
    for side in (-1, 1):
        t = side * u - 0.035
        lat = (t > 0) & (t < bw * 0.97)
        for k in range(10):
            vc = -0.40 + k * anat.rib_spacing - 0.10 * t + 1.7 * t**2
            rib = _soft(np.abs(v - vc) - (0.008 + 0.008 * t), 1.5 * px) * lat
            img += 0.05 * anat.bone * rib * body
            # Anterior ribs: fainter, sloping down towards the sternum.
            va = -0.33 + k * anat.rib_spacing * 1.1 + 0.45 * (0.32 - t)
            img += 0.03 * anat.bone * _soft(np.abs(v - va) - 0.008, 1.5 * px) * lat * (t > 0.12) * body
        clav = _soft(np.abs(v - (-0.345 - 0.10 * (t - 0.04))) - 0.011, 1.5 * px) * (t > 0.02) * (t < 0.30)
        img += 0.13 * anat.bone * clav * body

    # Detector: exposure, heel-effect gradient, quantum noise.
    img = img * rng.uniform(0.95, 1.05) + 0.02 * _smooth_noise(rng, (size, size), size / 6)
    img += 0.012 * rng.standard_normal((size, size)).astype(np.float32)
    return np.clip(img, 0.0, 1.0).astype(np.float32)



def _burn_in(img: np.ndarray, text: str) -> np.ndarray:
    """Burn a box and ``text`` into the pixels, as a modality's overlay would (BurnedInAnnotation YES)."""
    from PIL import Image, ImageDraw, ImageFont

    size = img.shape[0]
    overlay = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(overlay)
    font = ImageFont.load_default(size=max(8, size // 18))
    margin = max(2, size // 40)
    draw.rectangle([margin, margin, 3 * size // 4, margin + size // 8], outline=255, width=max(1, size // 128))
    draw.text((2 * margin, margin + size // 64), text, fill=255, font=font)
    return np.maximum(img, np.asarray(overlay, dtype=np.float32) / 255.0)


# --------------------------------------------------------------------------- medical: files
def _ds_str(value: float) -> str:
    """A DICOM DS string (at most 16 characters)."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _check_findings(findings: Sequence[str]) -> tuple[str, ...]:
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
    best, best_score = None, np.inf
    for _ in range(tries):
        y = rng.random((n, num_labels)) < prevalence
        corr = np.corrcoef(y.T.astype(float)) if num_labels > 1 and y.std(0).all() else np.zeros((1, 1))
        score = np.abs(corr - np.eye(len(corr))).max() + np.abs(y.mean(0) - prevalence).max()
        if score < best_score:
            best, best_score = y, score
    return best


def write_medical(out: Path, cfg: SampleMedical, seed: int) -> SampleSummary:
    """Write ``images/img_NNNNN.dcm`` and ``labels.csv`` (ChestX-ray14 style) into ``out``.

    Every image is its own study (``Follow-up #`` counts a patient's studies). Headers vary the way
    real archives do: DX (rescale fixed at 1/0, PS3.3 C.8.11.7) and CR (varied RescaleSlope /
    Intercept); BitsStored 12 or 16; a share of MONOCHROME1 images whose stored values are inverted
    and whose window centre is mirrored, so the PS3.3 C.7.6.3.1.2 chain (modality LUT, VOI window,
    then inversion) displays them like the others; a few with two windows; Explicit and Implicit VR
    Little Endian, RLE Lossless and JPEG 2000 Lossless transfer syntaxes; ``cfg.burned_in`` images
    with text burned into the pixels and BurnedInAnnotation YES.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import (
        ExplicitVRLittleEndian,
        ImplicitVRLittleEndian,
        JPEG2000Lossless,
        RLELossless,
        generate_uid,
    )

    start = time.perf_counter()
    logging.getLogger("openjpeg").setLevel(logging.WARNING)  # it logs one INFO line per encoded tile
    findings = _check_findings(cfg.findings)
    n_images = cfg.n_patients * cfg.images_per_patient
    rng = np.random.default_rng([seed, 1])
    numbers = rng.permutation(n_images)  # file numbers: file order says nothing about the patient
    mono1 = _assign(rng, n_images, [cfg.monochrome1_fraction]) == 1
    burned = _assign(rng, n_images, [min(cfg.burned_in, n_images) / n_images]) == 1
    syntax = _assign(rng, n_images, [0.1, 0.1, 0.1])  # 0 explicit, 1 implicit, 2 RLE, 3 JPEG 2000
    multi_window = _assign(rng, n_images, [0.1]) == 1
    design = _label_design(rng, n_images, len(findings), cfg.prevalence)
    uid = lambda *parts: generate_uid(entropy_srcs=["medvit-sample", str(seed), *map(str, parts)])
    rows: list[dict[str, object]] = []
    with _staging(out, MEDICAL_ENTRIES) as tmp, tqdm(total=n_images, desc="sample medical", unit="img") as bar:
        (tmp / "images").mkdir()
        for p in range(cfg.n_patients):
            prng = np.random.default_rng([seed, 1, p])  # one stream per patient
            anatomy = Anatomy.draw(prng)
            sex = "F" if prng.random() < 0.5 else "M"
            age0 = int(prng.integers(25, 86))
            first = dt.date(2014, 1, 1) + dt.timedelta(days=int(prng.integers(0, 3000)))
            birth = first - dt.timedelta(days=int(365.25 * age0) + int(prng.integers(0, 365)))
            name = f"PHIDOE^{'JANE' if sex == 'F' else 'JOHN'}^{p}"
            study_date = first
            for j in range(cfg.images_per_patient):
                k = p * cfg.images_per_patient + j
                irng = np.random.default_rng([seed, 1, p, j])
                if j:
                    study_date += dt.timedelta(days=int(irng.integers(14, 400)))
                age = (study_date - birth).days // 365
                has = tuple(f for f, on in zip(findings, design[k]) if on)
                view = "PA" if irng.random() < 0.85 else "AP"
                modality = "DX" if irng.random() < 0.5 else "CR"
                att = chest_radiograph(irng, cfg.image_size, has, anatomy)
                if burned[k]:
                    att = _burn_in(att, f"{name.replace('^', ' ')} {study_date:%Y%m%d}")

                # Stored values: 12 or 16 bit, mapped so that a linear window covers the attenuation range.
                bits = 12 if irng.random() < 0.5 else 16
                maxv = 2**bits - 1
                lo, hi = maxv * irng.uniform(0.02, 0.10), maxv * irng.uniform(0.55, 0.95)  # detectors rarely use the full range
                stored = np.round(lo + att * (hi - lo)).astype(np.uint16)  # (H, W)
                slope, intercept = (1.0, 0.0) if modality == "DX" else (
                    float(irng.choice([0.5, 1.0, 2.0])), float(irng.choice([-1024.0, 0.0, 1000.0])))
                centers = [slope * (lo + hi) / 2 * irng.uniform(0.98, 1.02) + intercept]
                widths = [slope * (hi - lo) * irng.uniform(1.0, 1.08)]
                if multi_window[k]:  # a second, harder window; readers use the first (PS3.3 C.11.2.1.2)
                    centers.append(centers[0] + 0.15 * widths[0])
                    widths.append(0.5 * widths[0])
                photometric = "MONOCHROME2"
                if mono1[k]:  # PS3.3 C.7.6.3.1.2: minimum value is displayed white
                    photometric = "MONOCHROME1"
                    stored = (maxv - stored).astype(np.uint16)
                    centers = [slope * maxv + 2 * intercept - c for c in centers]

                ds = Dataset()
                ds.file_meta = FileMetaDataset()
                sop_class = _DX_SOP_CLASS if modality == "DX" else _CR_SOP_CLASS
                sop_uid = uid("sop", p, j)
                ds.file_meta.MediaStorageSOPClassUID = sop_class
                ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
                ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if syntax[k] == 1 else ExplicitVRLittleEndian
                ds.SpecificCharacterSet = "ISO_IR 100"
                ds.ImageType = ["ORIGINAL", "PRIMARY"]
                ds.SOPClassUID = sop_class
                ds.SOPInstanceUID = sop_uid
                ds.StudyDate = ds.SeriesDate = ds.ContentDate = f"{study_date:%Y%m%d}"
                ds.StudyTime = ds.SeriesTime = ds.ContentTime = f"{int(irng.integers(7, 19)):02d}{int(irng.integers(0, 60)):02d}00"
                ds.AccessionNumber = f"PHIACC{p:05d}{j:02d}"
                ds.Modality = modality
                if modality == "DX":
                    ds.PresentationIntentType = "FOR PRESENTATION"
                ds.Manufacturer = "medvit synthetic"
                ds.InstitutionName = "PHI General Hospital"
                ds.InstitutionAddress = "1 PHI Street, Springfield"
                ds.ReferringPhysicianName = f"PHIREF^GREGORY^{p % 7}"
                ds.StudyDescription = f"XR CHEST {view}"
                ds.SeriesDescription = f"CHEST {view}"
                ds.OperatorsName = f"PHIOPR^TECH^{p % 5}"
                ds.PatientName = name
                ds.PatientID = f"PHIPID{p:05d}"
                ds.PatientBirthDate = f"{birth:%Y%m%d}"
                ds.PatientSex = sex
                ds.PatientAge = f"{age:03d}Y"
                ds.OtherPatientIDs = f"PHIOID{p:05d}"
                ds.BodyPartExamined = "CHEST"
                ds.ViewPosition = view
                ds.StudyInstanceUID = uid("study", p, j)
                ds.SeriesInstanceUID = uid("series", p, j)
                ds.StudyID = f"PHISTD{p:05d}{j:02d}"
                ds.SeriesNumber = 1
                ds.InstanceNumber = 1
                ds.PatientOrientation = ["L", "F"]  # PA, displayed as if facing the patient
                ds.SamplesPerPixel = 1
                ds.PhotometricInterpretation = photometric
                ds.Rows = ds.Columns = cfg.image_size
                spacing = _ds_str(430.0 / cfg.image_size)  # a 43 cm detector
                ds.ImagerPixelSpacing = [spacing, spacing]
                ds.PixelSpacing = [spacing, spacing]
                ds.BitsAllocated = 16
                ds.BitsStored = bits
                ds.HighBit = bits - 1
                ds.PixelRepresentation = 0
                ds.BurnedInAnnotation = "YES" if burned[k] else "NO"
                ds.WindowCenter = [_ds_str(c) for c in centers] if len(centers) > 1 else _ds_str(centers[0])
                ds.WindowWidth = [_ds_str(w) for w in widths] if len(widths) > 1 else _ds_str(widths[0])
                if len(centers) > 1:
                    ds.WindowCenterWidthExplanation = ["NORMAL", "HARD"]
                ds.RescaleIntercept = _ds_str(intercept)
                ds.RescaleSlope = _ds_str(slope)
                ds.RescaleType = "US"
                if modality == "DX":
                    ds.PresentationLUTShape = "INVERSE" if mono1[k] else "IDENTITY"
                ds.LossyImageCompression = "00"
                ds.private_block(0x0011, PHI_PRIVATE_CREATOR, create=True).add_new(0x01, "LO", f"PHIPRIV {name}")
                if syntax[k] in (2, 3):
                    ts, plugin = (RLELossless, "pydicom") if syntax[k] == 2 else (JPEG2000Lossless, "pylibjpeg")
                    ds.compress(ts, stored, encoding_plugin=plugin, generate_instance_uid=False)
                else:
                    ds.PixelData = stored.tobytes()
                    ds["PixelData"].VR = "OW"
                file_name = f"img_{numbers[k]:05d}.dcm"
                ds.save_as(tmp / "images" / file_name, enforce_file_format=True)
                rows.append({"Image Index": file_name, "Finding Labels": "|".join(has) or NO_FINDING,
                             "Follow-up #": j, "Patient ID": ds.PatientID, "Patient Age": age,
                             "Patient Gender": sex, "View Position": view})
                bar.update()
        labels = pd.DataFrame(rows).sort_values("Image Index")
        labels.to_csv(tmp / "labels.csv", index=False, lineterminator="\n")
    counts = {f: int(labels["Finding Labels"].str.split("|").map(lambda fs, f=f: f in fs).sum()) for f in findings}
    counts[NO_FINDING] = int((labels["Finding Labels"] == NO_FINDING).sum())
    detail = (", ".join(f"{k} {v}" for k, v in counts.items())
              + f"; {int(mono1.sum())} MONOCHROME1, {int(burned.sum())} burned-in")
    return SampleSummary("medical", out, n_images, cfg.n_patients, detail, time.perf_counter() - start)


def planted_phi(raw_dir: str | Path) -> set[str]:
    """Every planted PHI value in the DICOM headers under ``raw_dir`` (what de-identification must drop)."""
    from pydicom import dcmread

    values: set[str] = set()
    for path in sorted(Path(raw_dir).rglob("*.dcm")):
        ds = dcmread(path, stop_before_pixels=True)
        for keyword in PHI_KEYWORDS:
            if keyword in ds and ds[keyword].value not in (None, ""):
                values.add(str(ds[keyword].value))
        try:
            values.add(str(ds.private_block(0x0011, PHI_PRIVATE_CREATOR)[0x01].value))
        except KeyError:  # not a file the sample stage wrote
            pass
    return values


# --------------------------------------------------------------------------- satellite: pixels
_CLASS_WEIGHTS = {"water": 0.12, "forest": 0.25, "cropland": 0.30, "urban": 0.15, "bare": 0.18}


def _check_satellite(cfg: SampleSatellite) -> None:
    bad_classes = [c for c in cfg.classes if c not in _SIGNATURES]
    if bad_classes or not cfg.classes or len(set(cfg.classes)) != len(cfg.classes):
        raise UserError(f"sample.satellite.classes: {list(cfg.classes)} must be distinct names out of "
                        f"{', '.join(_SIGNATURES)} (unknown: {bad_classes})")
    bad_bands = [b for b in cfg.band_names if b not in _ASPHALT]
    if bad_bands or not cfg.band_names:
        raise UserError(f"sample.satellite.band_names: unknown Sentinel-2 band(s) {bad_bands}; "
                        f"use names out of {', '.join(_ASPHALT)}")


def _rotated(size: int, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates rotated by ``angle`` radians, each (size, size) float32."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    c, s = math.cos(angle), math.sin(angle)
    return c * xx + s * yy, -s * xx + c * yy


def land_cover_map(rng: np.random.Generator, size: int, class_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Large smooth land-cover regions: warped Voronoi cells, plus a river when water is a class.

    Returns:
        (labels, cells): (size, size) uint8 class index in ``class_names`` order and int cell id.
    """
    k = len(class_names)
    n_cells = max(k, round((size / 110) ** 2))  # ~110 px cells: a 64 px chip holds 1-3 classes
    seeds = rng.uniform(0, size, (n_cells, 2)).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    wy = yy + size / 25 * _smooth_noise(rng, (size, size), size / 12)  # domain warp: natural boundaries
    wx = xx + size / 25 * _smooth_noise(rng, (size, size), size / 12)
    dist = (wy[None] - seeds[:, 0, None, None]) ** 2 + (wx[None] - seeds[:, 1, None, None]) ** 2
    cells = dist.argmin(0)
    weights = np.array([_CLASS_WEIGHTS[c] for c in class_names])
    extra = rng.choice(k, n_cells - k, p=weights / weights.sum())
    cell_class = np.concatenate([rng.permutation(k), extra])  # every class in every scene
    labels = cell_class[cells].astype(np.uint8)
    if "water" in class_names and rng.random() < 0.5:
        along, across = (yy, xx) if rng.random() < 0.5 else (xx, yy)
        centre = rng.uniform(0.2, 0.8) * size + rng.uniform(-0.3, 0.3) * along \
            + rng.uniform(0.03, 0.08) * size * np.sin(2 * np.pi * along / rng.uniform(0.4, 1.0) / size
                                                      + rng.uniform(0, 2 * np.pi))
        labels[np.abs(across - centre) < rng.uniform(4, 7)] = class_names.index("water")
    return labels, cells


def land_cover_scene(rng: np.random.Generator, size: int, class_names: Sequence[str],
                     band_names: Sequence[str], swath_edge: bool) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic Sentinel-2 L2A-like scene and its land-cover raster.

    Each class has its own spectral signature (water dark with very low NIR, forest low red and high
    NIR, cropland medium with field stripes, urban bright with a street grid, bare soil bright red and
    SWIR) and texture, plus per-region, per-scene (haze, gain) and per-pixel variation. With
    ``swath_edge`` a slanted strip outside the orbit swath is nodata.

    Returns:
        (reflectance, labels): (B, size, size) float32 reflectance x 10000, 0 = nodata; and
        (size, size) uint8 class index, 255 = nodata.
    """
    labels, cells = land_cover_map(rng, size, class_names)
    shape = (size, size)
    sig = np.array([[_SIGNATURES[c][b] for b in band_names] for c in class_names], np.float32)  # (K, B)
    refl = sig[labels].transpose(2, 0, 1).copy()  # (B, H, W)
    texture = np.ones(shape, np.float32)
    idx = {c: i for i, c in enumerate(class_names)}
    if "water" in idx:
        m = labels == idx["water"]
        texture[m] = (1 + 0.05 * _smooth_noise(rng, shape, size / 10))[m]
    if "forest" in idx:
        m = labels == idx["forest"]
        texture[m] = (1 + 0.14 * _smooth_noise(rng, shape, 1.2) + 0.08 * _smooth_noise(rng, shape, 6))[m]
    if "bare" in idx:
        m = labels == idx["bare"]
        texture[m] = (1 + 0.08 * _smooth_noise(rng, shape, 12) + 0.04 * _smooth_noise(rng, shape, 1))[m]
    if "cropland" in idx:
        # Rectangular parcels, each with its own stripe direction/period and greenness.
        m = labels == idx["cropland"]
        p, q = _rotated(size, rng.uniform(0, np.pi / 2))
        pw, ph = rng.uniform(28, 48), rng.uniform(24, 40)
        table = rng.random((64, 64, 3)).astype(np.float32)
        cell = table[(p // pw).astype(int) % 64, (q // ph).astype(int) % 64]  # (H, W, 3)
        along = np.where(cell[..., 0] < 0.5, p, q)
        stripes = 1 + 0.13 * np.sin(2 * np.pi * along / (4 + 3 * cell[..., 1]))
        texture[m] = stripes[m]
        coef = np.array([_GREENNESS[b] for b in band_names], np.float32)[:, None]
        refl[:, m] *= 1 + coef * (2 * cell[..., 2][m] - 1)[None]
    if "urban" in idx:
        # A street grid of asphalt around blocks of roofs with their own brightness.
        m = labels == idx["urban"]
        p, q = _rotated(size, rng.uniform(0, np.pi / 2))
        block = rng.uniform(12, 20)
        roofs = rng.uniform(0.8, 1.3, (64, 64)).astype(np.float32)
        texture[m] = roofs[(p // block).astype(int) % 64, (q // block).astype(int) % 64][m]
        street = m & (((p % block) < 3) | ((q % block) < 3))
        refl[:, street] = np.array([_ASPHALT[b] for b in band_names], np.float32)[:, None]
        texture[street] = 1.0
    gain = (1 + 0.05 * rng.standard_normal(cells.max() + 1)).astype(np.float32)[cells]  # per region
    refl *= texture * gain
    # Scene: haze (stronger at short wavelengths), gain; pixel: speckle and read noise.
    haze = np.array([{"B1": 150, "B2": 120, "B3": 80, "B4": 50}.get(b, 20) for b in band_names], np.float32)
    refl = refl * rng.uniform(0.93, 1.07) + rng.uniform(0.0, 1.0) * haze[:, None, None]
    refl *= 1 + 0.03 * rng.standard_normal(refl.shape).astype(np.float32)
    refl += 15 * rng.standard_normal(refl.shape).astype(np.float32)
    refl = np.clip(refl, 1, 10000)  # 0 is reserved for nodata
    if swath_edge:
        x, _ = _rotated(size, math.radians(rng.uniform(-15, 15)))
        if rng.random() < 0.5:
            x = x.max() - x
        nodata = x > np.quantile(x, 1 - rng.uniform(0.12, 0.30))
        refl[:, nodata] = 0
        labels[nodata] = 255
    return refl.astype(np.float32), labels


def tile_grid(height: int, width: int, tile_size: int, stride: int) -> list[tuple[int, int]]:
    """Top-left (y, x) pixel offsets of the full chips on a regular grid."""
    return [(y, x) for y in range(0, height - tile_size + 1, stride) for x in range(0, width - tile_size + 1, stride)]


def tile_id(scene: str, y: int, x: int) -> str:
    """The chip id shared by tiles.csv and ingest: ``{scene}_{y:05d}_{x:05d}``."""
    return f"{scene}_{y:05d}_{x:05d}"


def chip_labels(chip: np.ndarray, num_classes: int, min_fraction: float, nodata: int = 255) -> list[int]:
    """Classes whose share of the chip's *valid* (non-nodata) pixels is above ``min_fraction``."""
    valid = chip[chip != nodata]
    if valid.size == 0:
        return []
    share = np.bincount(valid.ravel(), minlength=num_classes)[:num_classes] / valid.size
    return [int(i) for i in np.flatnonzero(share > min_fraction)]


# --------------------------------------------------------------------------- satellite: files
def write_satellite(out: Path, cfg: SampleSatellite, seed: int) -> SampleSummary:
    """Write ``scenes/<stem>.tif``, ``labels/<stem>.tif`` and ``tiles.csv`` into ``out``.

    Scenes are tiled (so windowed reads touch few blocks), deflate-compressed uint16 GeoTIFFs on a
    north-up 10 m grid in a WGS 84 / UTM CRS, with band descriptions set to the band names and
    nodata 0. Label rasters share the grid: uint8 class index in ``cfg.classes`` order, 255 = nodata,
    with a colour map. tiles.csv lists every chip of the ``tile_size`` / ``stride`` grid that is at
    most ``max_nodata_fraction`` nodata, with the classes covering more than ``min_label_fraction``
    of its valid pixels (``chip_labels``).
    """
    import rasterio
    from rasterio.crs import CRS
    from rasterio.transform import from_origin

    start = time.perf_counter()
    _check_satellite(cfg)
    size = cfg.scene_size
    block = 128 if size >= 256 else 64
    colours = {"water": (30, 90, 200), "forest": (20, 110, 40), "cropland": (230, 200, 60),
               "urban": (200, 40, 40), "bare": (170, 130, 90)}
    rows: list[dict[str, str]] = []
    tiles_per_class = np.zeros(len(cfg.classes), int)
    with _staging(out, SATELLITE_ENTRIES) as tmp:
        (tmp / "scenes").mkdir()
        (tmp / "labels").mkdir()
        for i in tqdm(range(cfg.n_scenes), desc="sample satellite", unit="scene"):
            srng = np.random.default_rng([seed, 2, i])  # one stream per scene
            epsg, east, north = _PLACES[i % len(_PLACES)]
            east += (i // len(_PLACES)) * size * _PIXEL_M * 2  # repeats of a place sit side by side
            stem = f"scene{i:02d}-utm{epsg % 100}{'N' if epsg // 100 == 326 else 'S'}"
            refl, labels = land_cover_scene(srng, size, cfg.classes, cfg.band_names, swath_edge=i % 3 != 2)
            date = dt.date(2023, 4, 1) + dt.timedelta(days=int(srng.integers(0, 180)))
            profile = {"driver": "GTiff", "width": size, "height": size, "crs": CRS.from_epsg(epsg),
                           "transform": from_origin(east, north, _PIXEL_M, _PIXEL_M), "tiled": True,
                           "blockxsize": block, "blockysize": block, "compress": "deflate"}
            with rasterio.open(tmp / "scenes" / f"{stem}.tif", "w", count=len(cfg.band_names), dtype="uint16",
                               nodata=0, predictor=2, interleave="pixel", **profile) as dst:
                dst.write(np.round(refl).astype(np.uint16))
                for b, name in enumerate(cfg.band_names, start=1):
                    dst.set_band_description(b, name)
                dst.update_tags(ACQUISITION_DATE=f"{date:%Y-%m-%d}", PROCESSING_LEVEL="synthetic L2A",
                                QUANTIFICATION_VALUE="10000")
            with rasterio.open(tmp / "labels" / f"{stem}.tif", "w", count=1, dtype="uint8", nodata=255,
                               **profile) as dst:
                # The palette goes in before the pixels: GDAL cannot change the TIFF's photometric tag after.
                dst.write_colormap(1, {k: (*colours[c], 255) for k, c in enumerate(cfg.classes)})
                dst.write(labels[None])
                dst.set_band_description(1, "land cover")
                dst.update_tags(CLASS_NAMES="|".join(cfg.classes))
            for y, x in tile_grid(size, size, cfg.tile_size, cfg.stride):
                chip = labels[y:y + cfg.tile_size, x:x + cfg.tile_size]
                if np.mean(chip == 255) > cfg.max_nodata_fraction:
                    continue
                present = chip_labels(chip, len(cfg.classes), cfg.min_label_fraction)
                tiles_per_class[present] += 1
                rows.append({"tile": tile_id(stem, y, x), "labels": "|".join(cfg.classes[c] for c in present),
                             "scene": stem})
        pd.DataFrame(rows, columns=["tile", "labels", "scene"]).to_csv(tmp / "tiles.csv", index=False,
                                                                       lineterminator="\n")
    detail = f"{len(rows)} tiles; " + ", ".join(f"{c} {n}" for c, n in zip(cfg.classes, tiles_per_class))
    places = min(cfg.n_scenes, len(_PLACES))
    return SampleSummary("satellite", out, cfg.n_scenes, places, detail, time.perf_counter() - start)
