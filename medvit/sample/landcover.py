"""The land-cover scene phantom: Sentinel-2 L2A-like reflectance and its class raster.

Pure numpy: ``land_cover_scene`` returns (B, H, W) reflectance x 10000 and an (H, W) class index,
which ``medvit.sample.satellite`` writes as GeoTIFFs. Classes differ strongly in spectrum and
texture, so that a model fine-tuned on a few hundred 64 px chips can learn them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from medvit.data.layout import LABEL_NODATA
from medvit.sample.noise import smooth_noise

# Sentinel-2 MSI bands the signatures cover (B9 and B10 are atmospheric bands, not surface).
BANDS: tuple[str, ...] = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")
# Synthetic Sentinel-2 L2A-like surface reflectance (x 10000) per class and band, roughly after
# published spectral libraries, exaggerated so that classes are strongly separable.
SIGNATURES: dict[str, dict[str, float]] = {
    #                       B1    B2    B3    B4    B5    B6    B7    B8   B8A   B11   B12
    "water":    dict(zip(BANDS, (900, 800, 650, 420, 300, 220, 190, 150, 130, 80, 60))),
    "forest":   dict(zip(BANDS, (300, 260, 520, 240, 800, 2600, 3200, 3500, 3600, 1500, 700))),
    "cropland": dict(zip(BANDS, (550, 550, 900, 850, 1300, 1900, 2200, 2400, 2500, 2300, 1500))),
    "urban":    dict(zip(BANDS, (1500, 1500, 1600, 1700, 1750, 1800, 1850, 1900, 1950, 2300, 2100))),
    "bare":     dict(zip(BANDS, (1000, 1100, 1600, 2500, 2800, 2950, 3050, 3150, 3250, 3900, 3400))),
}
_ASPHALT: dict[str, float] = dict(zip(BANDS, (800, 750, 780, 800, 820, 850, 880, 900, 920, 1000, 950)))
# How a greener crop parcel changes each band (relative): red down, NIR up.
_GREENNESS: dict[str, float] = dict(zip(BANDS, (-0.10, -0.10, 0.0, -0.25, -0.05, 0.12, 0.15, 0.18, 0.18, -0.10,
                                                -0.15)))
# Share of a scene's regions per class, after one region of each class.
_CLASS_WEIGHTS: dict[str, float] = {"water": 0.12, "forest": 0.25, "cropland": 0.30, "urban": 0.15, "bare": 0.18}


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
    wy = yy + size / 25 * smooth_noise(rng, (size, size), size / 12)  # domain warp: natural boundaries
    wx = xx + size / 25 * smooth_noise(rng, (size, size), size / 12)
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
        (size, size) uint8 class index, ``LABEL_NODATA`` (255) = nodata.
    """
    labels, cells = land_cover_map(rng, size, class_names)
    shape = (size, size)
    sig = np.array([[SIGNATURES[c][b] for b in band_names] for c in class_names], np.float32)  # (K, B)
    refl = sig[labels].transpose(2, 0, 1).copy()  # (B, H, W)
    texture = np.ones(shape, np.float32)
    idx = {c: i for i, c in enumerate(class_names)}
    if "water" in idx:
        m = labels == idx["water"]
        texture[m] = (1 + 0.05 * smooth_noise(rng, shape, size / 10))[m]
    if "forest" in idx:
        m = labels == idx["forest"]
        texture[m] = (1 + 0.14 * smooth_noise(rng, shape, 1.2) + 0.08 * smooth_noise(rng, shape, 6))[m]
    if "bare" in idx:
        m = labels == idx["bare"]
        texture[m] = (1 + 0.08 * smooth_noise(rng, shape, 12) + 0.04 * smooth_noise(rng, shape, 1))[m]
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
        labels[nodata] = LABEL_NODATA
    return refl.astype(np.float32), labels
