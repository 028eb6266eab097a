"""Pixel steps shared by the sources: letterboxing to the cache size and per-channel sums for the stats.

``letterbox`` lives in ``medvit.data.preprocess`` (the one preprocessing path the served
model shares) and is re-exported here for the sources.
"""

from __future__ import annotations

import cv2
import numpy as np

from medvit.data.preprocess import letterbox

__all__ = ["channel_sums", "letterbox"]


def channel_sums(image: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """(3, C): per-channel sum, sum of squares and count of valid pixels, in float64.

    Args:
        image: (C, H, W) values.
        valid: (C, H, W) mask of the pixels to count; None counts every pixel.
    """
    if valid is None and image.dtype == np.float32:
        # OpenCV accumulates float32 in float64, in one pass each (NumPy would first copy to float64).
        planes = [np.ascontiguousarray(plane) for plane in image]
        return np.array([[cv2.sumElems(p)[0] for p in planes], [cv2.norm(p, cv2.NORM_L2SQR) for p in planes],
                         [float(p.size) for p in planes]], dtype=np.float64)
    x = image.reshape(image.shape[0], -1)
    if valid is not None:
        v = valid.reshape(image.shape[0], -1)
        x = np.where(v, x, np.float32(0.0))
        count = v.sum(1).astype(np.float64)
    else:
        count = np.full(x.shape[0], x.shape[1], np.float64)
    x64 = x.astype(np.float64)
    return np.stack([x64.sum(1), np.einsum("ij,ij->i", x64, x64), count])
