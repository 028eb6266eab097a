"""Pixel steps: letterboxing to the cache size, float64-exact channel sums."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from medvit.ingest.pixels import channel_sums, letterbox


def test_letterbox_block_average_then_bilinear() -> None:
    rng = np.random.default_rng(0)
    # An exact integer ratio is the exact block mean.
    image = rng.random((1, 64, 64), dtype=np.float32)
    np.testing.assert_allclose(letterbox(image, 16)[0], image[0].reshape(16, 4, 16, 4).mean((1, 3)),
                               atol=1e-6)
    # A non-integer ratio on a smooth, non-square image stays close to a one-pass area resample,
    # keeps the aspect ratio and pads black, centred.
    yy, xx = np.mgrid[0:300, 0:517].astype(np.float32)
    smooth = (0.5 + 0.4 * np.sin(xx / 23.0) * np.cos(yy / 17.0))[None]
    out = letterbox(smooth, 224)
    nh = round(300 * 224 / 517)  # 130 rows of image, 47 black rows above and below
    top = (224 - nh) // 2
    assert out.shape == (1, 224, 224) and out.dtype == np.float32
    assert (out[0, :top] == 0).all() and (out[0, top + nh:] == 0).all()
    area = np.asarray(Image.fromarray(smooth[0]).resize((224, nh), Image.Resampling.BOX))
    assert np.abs(out[0, top:top + nh] - area).mean() < 3e-3
    assert np.abs(out[0, top:top + nh] - area).max() < 1e-2
    # Upscaling keeps [0, 1] and fills the frame.
    small = rng.random((1, 8, 8), dtype=np.float32)
    up = letterbox(small, 32)
    assert up.min() >= 0.0 and up.max() <= 1.0 and up[0].std() > 0.05


def _padded_letterbox(image: np.ndarray, size: int) -> np.ndarray:
    """letterbox as first written: the whole plane padded with repeated edge pixels, then block means."""
    c, h, w = image.shape
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    kh, kw = max(1, h // nh), max(1, w // nw)
    ph, pw = -h % kh, -w % kw
    out = np.zeros((c, size, size), np.float32)
    top, left = (size - nh) // 2, (size - nw) // 2
    for k in range(c):
        plane = cv2.copyMakeBorder(image[k], 0, ph, 0, pw, cv2.BORDER_REPLICATE)
        plane = cv2.resize(plane, ((w + pw) // kw, (h + ph) // kh), interpolation=cv2.INTER_AREA)
        if ph or pw:
            sy, sx = h / kh / nh, w / kw / nw
            inverse = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5]])
            plane = cv2.warpAffine(plane, inverse, (nw, nh), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                   borderMode=cv2.BORDER_REPLICATE)
        else:
            plane = cv2.resize(plane, (nw, nh), interpolation=cv2.INTER_LINEAR)
        out[k, top:top + nh, left:left + nw] = plane
    return np.clip(out, 0.0, 1.0, out=out)


@pytest.mark.parametrize("shape", [(1, 3000, 2500), (1, 2500, 3000), (1, 449, 300), (3, 1021, 1024),
                                   (1, 1024, 1021), (2, 997, 991), (1, 301, 13)])
def test_partial_blocks_equal_padding_the_whole_plane_bit_for_bit(shape: tuple[int, int, int]) -> None:
    # Only the last block row and column are padded; the cache must not change by a bit.
    image = np.random.default_rng(shape[1]).random(shape, dtype=np.float32)
    for size in (224, 384):
        assert np.array_equal(letterbox(image, size), _padded_letterbox(image, size)), (shape, size)


def test_sums_are_float64_exact_with_and_without_a_mask() -> None:
    rng = np.random.default_rng(3)
    image = rng.random((3, 50, 40), dtype=np.float32)
    x64 = image.reshape(3, -1).astype(np.float64)
    got = channel_sums(image)
    np.testing.assert_allclose(got, np.stack([x64.sum(1), (x64**2).sum(1), np.full(3, 2000.0)]), rtol=1e-12)
    valid = rng.random((3, 50, 40)) > 0.3
    masked = channel_sums(image, valid)
    v = valid.reshape(3, -1)
    np.testing.assert_allclose(masked, np.stack([(x64 * v).sum(1), (x64**2 * v).sum(1), v.sum(1)]), rtol=1e-12)
