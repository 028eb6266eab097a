"""Smooth random fields, the texture source of both synthetic domains."""

from __future__ import annotations

import numpy as np


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Unit-variance Gaussian random field with correlation length ``sigma`` pixels, (H, W) float32."""
    white = rng.standard_normal(shape)
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    kernel = np.exp(-2.0 * (np.pi * sigma) ** 2 * (fx**2 + fy**2))  # FT of a Gaussian blur
    field = np.fft.irfft2(np.fft.rfft2(white) * kernel, s=shape)
    return (field / (field.std() + 1e-12)).astype(np.float32)
