"""Colour to grey for the single-channel medical cache: ITU-R BT.601 luma, shared by every reader.

The weights are those that define the Y of DICOM's YBR_FULL (PS3.3 C.7.6.3.1.2,
from ITU-R BT.601), so a colour radiograph reads the same whether it arrives as a
DICOM file or as a PNG/JPEG. The arithmetic (float32 samples, weighted sum, then
one division by the largest storable value) is the one the DICOM intensity chain
has used since before this module existed; keep it bit-for-bit when changing it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["BT601_WEIGHTS", "luma"]

BT601_WEIGHTS: tuple[float, float, float] = (0.299, 0.587, 0.114)


def luma(rgb: np.ndarray, peak: float) -> np.ndarray:
    """(H, W, 3) samples in R, G, B order -> (H, W) float32 luma divided by ``peak``.

    Args:
        rgb: colour samples, any real dtype.
        peak: the largest storable sample value (``2**bits - 1``), or 1.0 for samples already in [0, 1].

    Raises:
        ValueError: ``rgb`` is not (H, W, 3).
    """
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"expected (H, W, 3) colour samples, got shape {rgb.shape}")
    wr, wg, wb = BT601_WEIGHTS
    samples = rgb.astype(np.float32)
    grey = wr * samples[..., 0] + wg * samples[..., 1] + wb * samples[..., 2]
    return (grey / np.float32(peak)).astype(np.float32)
