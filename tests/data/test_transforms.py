"""Channel-first transforms: normalisation stats, resize, per-domain augmentation, seeded draws."""

from __future__ import annotations

import numpy as np
import pytest

from medvit.config import AugmentConfig, AugmentMedical, AugmentSatellite
from medvit.data.transforms import eval_transform, norm_stats, resize, train_transform


def test_norm_stats_dataset_and_pretrained() -> None:
    stats = {"mean": [0.1, 0.2], "std": [0.5, 0.25]}
    assert norm_stats("dataset", 2, stats) == ([0.1, 0.2], [0.5, 0.25])
    cfg = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
    assert norm_stats("pretrained", 3, pretrained_cfg=cfg) == (list(cfg["mean"]), list(cfg["std"]))
    mean, std = norm_stats("pretrained", 1, pretrained_cfg=cfg)  # in_chans != 3: averaged
    assert mean == pytest.approx([np.mean(cfg["mean"])]) and std == pytest.approx([np.mean(cfg["std"])])
    with pytest.raises(ValueError, match="channels"):
        norm_stats("dataset", 3, stats)


def test_eval_transform_resizes_and_normalises_chw() -> None:
    img = np.full((4, 20, 20), 0.7, np.float32)
    out = eval_transform(32, [0.2] * 4, [0.5] * 4)(img)
    assert out.shape == (4, 32, 32) and out.dtype == np.float32
    assert np.allclose(out, (0.7 - 0.2) / 0.5, atol=1e-5)
    assert resize(img, 20) is img


def test_resize_interpolation_bicubic_differs_from_bilinear_and_is_checked() -> None:
    img = np.random.default_rng(0).random((2, 16, 16), np.float32)
    bicubic, bilinear = resize(img, 40, "bicubic"), resize(img, 40, "bilinear")
    assert bicubic.shape == bilinear.shape == (2, 40, 40)
    assert not np.allclose(bicubic, bilinear, atol=1e-3)
    assert np.allclose(eval_transform(40, [0.0] * 2, [1.0] * 2, "bicubic")(img), bicubic, atol=1e-6)
    with pytest.raises(ValueError, match="interpolation"):
        resize(img, 40, "lanczos")


def test_medical_augmentation_is_seeded_and_never_flips_vertically() -> None:
    cfg = AugmentConfig(medical=AugmentMedical(affine_degrees=0.0, affine_scale=0.0, brightness=0.0, contrast=0.0,
                                                hflip=True))
    t = train_transform("medical", cfg, 16, [0.0], [1.0])
    img = np.zeros((1, 16, 16), np.float32)
    img[0, :4, :] = 1.0  # bright top rows (e.g. apex of the lung field)
    outs = [t(img, seed) for seed in range(20)]
    for o in outs:
        assert o.shape == (1, 16, 16)
        assert np.allclose(o[0, :4].mean(), 1.0) and np.allclose(o[0, 4:].mean(), 0.0)  # top stays on top
    assert np.array_equal(t(img, 3), t(img, 3))


def test_medical_affine_and_brightness_change_the_image() -> None:
    t = train_transform("medical", AugmentConfig(medical=AugmentMedical(affine_degrees=10, brightness=0.2)),
                        16, [0.0], [1.0])
    rng = np.random.default_rng(0)
    img = rng.random((1, 16, 16)).astype(np.float32)
    outs = [t(img, s) for s in range(8)]
    assert any(not np.allclose(o, img) for o in outs)
    assert not np.array_equal(outs[0], outs[1])


def test_satellite_flips_rot90_and_band_safe_noise() -> None:
    cfg = AugmentConfig(satellite=AugmentSatellite(flips=True, rot90=True, noise_std=0.0))
    t = train_transform("satellite", cfg, 8, [0.0] * 6, [1.0] * 6)
    img = np.arange(6 * 8 * 8, dtype=np.float32).reshape(6, 8, 8)
    for s in range(10):
        out = t(img, s)
        assert out.shape == (6, 8, 8)
        # Geometric only: each band keeps its exact value set, and bands stay in order.
        for c in range(6):
            assert np.array_equal(np.sort(out[c].ravel()), np.sort(img[c].ravel()))
    noisy = train_transform("satellite", AugmentConfig(satellite=AugmentSatellite(flips=False, rot90=False,
                                                                                   noise_std=0.1)),
                            8, [1000.0] * 6, [500.0] * 6)
    big = np.full((6, 8, 8), 3000.0, np.float32)  # reflectance-scale values: noise is in normalised units
    out = noisy(big, 1)
    assert abs(out.mean() - 4.0) < 0.05 and 0.05 < out.std() < 0.15
