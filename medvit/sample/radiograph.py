"""The chest radiograph phantom: per-patient anatomy, lungs, four findings and burned-in text.

Pure numpy (PIL draws the burned-in text): ``chest_radiograph`` returns attenuation in [0, 1],
which ``medvit.sample.medical`` maps to stored DICOM values. Each finding is a large, consistently
located effect, so that a model fine-tuned on a few hundred 64-96 px images can learn it.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from medvit.errors import UserError
from medvit.sample.noise import smooth_noise

FINDINGS: tuple[str, ...] = ("cardiomegaly", "effusion", "nodule", "pneumothorax")


def _soft(d: np.ndarray, edge: float) -> np.ndarray:
    """Anti-aliased inside-mask from a signed distance ``d`` (negative inside), ramp width ``edge``."""
    return np.clip(0.5 - d / edge, 0.0, 1.0)


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
    ridge = np.clip(1.0 - np.abs(smooth_noise(rng, (size, size), 0.008 * size)) / 0.45, 0.0, 1.0) ** 2
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
    img = img * rng.uniform(0.95, 1.05) + 0.02 * smooth_noise(rng, (size, size), size / 6)
    img += 0.012 * rng.standard_normal((size, size)).astype(np.float32)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def burn_in(img: np.ndarray, text: str) -> np.ndarray:
    """Burn a box and ``text`` into the pixels, as a modality's overlay would (BurnedInAnnotation YES)."""
    size = img.shape[0]
    overlay = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(overlay)
    font = ImageFont.load_default(size=max(8, size // 18))
    margin = max(2, size // 40)
    draw.rectangle([margin, margin, 3 * size // 4, margin + size // 8], outline=255, width=max(1, size // 128))
    draw.text((2 * margin, margin + size // 64), text, fill=255, font=font)
    return np.maximum(img, np.asarray(overlay, dtype=np.float32) / 255.0)
