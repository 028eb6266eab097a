"""Channel -> RGB mapping and the batched CLIP preprocessing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medvit.zeroshot.preprocess import ClipPreprocess, band_mapping, replicate_mapping


def test_replicate_copies_the_grey_channel() -> None:
    x = torch.rand(2, 1, 8, 8)
    rgb = replicate_mapping()(x)
    assert rgb.shape == (2, 3, 8, 8)
    for c in range(3):
        torch.testing.assert_close(rgb[:, c], x[:, 0])


def test_bands_are_selected_by_name_and_stretched_by_train_percentiles() -> None:
    rng = np.random.default_rng(0)
    # channels B2, B3, B4, B8 with different ranges (reflectance-like)
    train = np.stack([rng.uniform(lo, hi, size=(20, 8, 8)) for lo, hi in
                      [(0, 0.1), (0, 0.2), (0, 0.4), (0, 0.8)]], axis=1).astype(np.float32)
    m = band_mapping(["B2", "B3", "B4", "B8"], ["B4", "B3", "B2"], train, (2, 98))
    assert m.channels == (2, 1, 0)
    assert m.low[0] == pytest.approx(np.percentile(train[:, 2], 2), abs=1e-6)
    assert m.high[2] == pytest.approx(np.percentile(train[:, 0], 98), abs=1e-6)
    rgb = m(torch.from_numpy(train))
    assert rgb.min() == 0 and rgb.max() == 1
    for c in range(3):  # each band's 2..98 % range now spans most of [0, 1]
        q = np.percentile(rgb[:, c].numpy(), [2, 98])
        np.testing.assert_allclose(q, [0, 1], atol=0.01)
    with pytest.raises(ValueError, match="B5"):
        band_mapping(["B2", "B3", "B4"], ["B5", "B3", "B2"], train[:, :3], (2, 98))


@pytest.mark.parametrize("hw", [(64, 64), (48, 64), (64, 48), (16, 16)])
def test_matches_clip_image_processor(hw: tuple[int, int]) -> None:
    """Down- and upsampling, square and not: our tensor path ~= CLIPImageProcessor's PIL path."""
    from transformers import CLIPImageProcessor

    ip = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    pre = ClipPreprocess(size=32, crop=32, mean=tuple(ip.image_mean), std=tuple(ip.image_std))
    img_u8 = np.random.default_rng(0).integers(0, 256, size=(3, *hw)).astype(np.uint8)  # noise: worst case
    want = ip(images=[img_u8.transpose(1, 2, 0)], return_tensors="pt")["pixel_values"]
    got = pre(torch.from_numpy(img_u8.astype(np.float32) / 255)[None])
    assert got.shape == want.shape == (1, 3, 32, 32)
    # mean error in normalised units (1 grey level ~ 0.015); a wrong crop or scale gives ~0.4
    assert (got - want).abs().mean() < 0.01
