"""Per-sample transforms on (C, H, W) float32 arrays: augmentation, resize, normalisation.

Everything stays channel-first. Albumentations 2.x only accepts channel-last
images, so ``RandAlbumentations`` hands it a *view* (``np.moveaxis``) for the
duration of the call and moves the axis back on the way out; no other code sees
HWC. Resize (torch, antialiased; bilinear or bicubic as the model's timm data
config says) and the multispectral noise work on CHW directly and are safe for
any number of channels.

Order: augment at cache resolution -> resize to ``img_size`` -> normalise ->
(satellite) additive Gaussian noise in normalised units, i.e. a fixed fraction
of each band's train-split std, whatever the band's physical scale.

Randomness is a function of an explicit per-call ``seed`` (the training loop
passes one derived from (seed, epoch, sample index)), so augmentation is
identical across DataLoader workers, DDP ranks and a resumed run.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

Op = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def norm_stats(
    normalize: str,
    in_chans: int,
    dataset_stats: dict[str, Any] | None = None,
    pretrained_cfg: dict[str, Any] | None = None,
) -> tuple[list[float], list[float]]:
    """Per-channel (mean, std) for ``normalize`` = ``dataset`` (train-split stats.json) or ``pretrained``.

    For ``pretrained`` with ``in_chans != 3`` the RGB values are averaged and
    repeated, matching timm's summed/repeated first-conv adaptation.
    """
    if normalize == "dataset":
        if dataset_stats is None:
            raise ValueError("normalize: dataset needs the cache's stats.json")
        mean, std = list(map(float, dataset_stats["mean"])), list(map(float, dataset_stats["std"]))
    elif normalize == "pretrained":
        cfg = pretrained_cfg or {}
        m = [float(v) for v in cfg.get("mean", (0.485, 0.456, 0.406))]
        s = [float(v) for v in cfg.get("std", (0.229, 0.224, 0.225))]
        mean, std = (m, s) if in_chans == len(m) else ([float(np.mean(m))] * in_chans, [float(np.mean(s))] * in_chans)
    else:
        raise ValueError(f"unknown normalize mode {normalize!r}")
    if len(mean) != in_chans or len(std) != in_chans:
        raise ValueError(f"normalisation has {len(mean)} channels, images have {in_chans}")
    return mean, [max(v, 1e-6) for v in std]


INTERPOLATIONS = ("bilinear", "bicubic")


def resize(img: np.ndarray, size: int, interpolation: str = "bilinear") -> np.ndarray:
    """(C, h, w) -> (C, size, size), ``interpolation`` (bilinear | bicubic) with antialias (any channel count).

    The classifier passes its timm data config's interpolation (``resolve_model_data_config``;
    bicubic for DeiT3), so images are resized as the pretrained weights saw them.
    """
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {interpolation!r}; expected one of {INTERPOLATIONS}")
    if img.shape[-2:] == (size, size):
        return img
    t = torch.from_numpy(np.ascontiguousarray(img))[None]
    return F.interpolate(t, size=(size, size), mode=interpolation, antialias=True, align_corners=False)[0].numpy()


class RandAlbumentations:
    """An albumentations ``Compose`` applied to a CHW array (HWC view only inside the call)."""

    def __init__(self, transforms: Sequence[Any]) -> None:
        import albumentations as A

        self.compose = A.Compose(list(transforms), seed=0)

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        self.compose.set_random_seed(int(rng.integers(2**31 - 1)))
        out = self.compose(image=np.moveaxis(img, 0, -1))["image"]  # (H, W, C)
        return np.ascontiguousarray(np.moveaxis(out, -1, 0), dtype=np.float32)


class RandGaussianNoise:
    """Additive per-pixel, per-band N(0, std) noise on normalised data (multispectral-safe: no clipping)."""

    def __init__(self, std: float) -> None:
        self.std = std

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return (img + rng.normal(0.0, self.std, size=img.shape)).astype(np.float32)


class Pipeline:
    """augment -> resize -> normalise -> post-normalisation ops, on (C, H, W) float32."""

    def __init__(
        self,
        img_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        augment: Sequence[Op] = (),
        post: Sequence[Op] = (),
        interpolation: str = "bilinear",
    ) -> None:
        self.img_size = img_size
        self.interpolation = interpolation
        self.mean = np.asarray(mean, np.float32)[:, None, None]
        self.std = np.asarray(std, np.float32)[:, None, None]
        self.augment = list(augment)
        self.post = list(post)

    @property
    def random(self) -> bool:
        return bool(self.augment or self.post)

    def __call__(self, img: np.ndarray, seed: int | None = None) -> np.ndarray:
        """Transform one (C, H, W) image; ``seed`` fixes the augmentation draw."""
        rng = np.random.default_rng(seed)
        for op in self.augment:
            img = op(img, rng)
        img = (resize(img, self.img_size, self.interpolation) - self.mean) / self.std
        for op in self.post:
            img = op(img, rng)
        return np.ascontiguousarray(img, dtype=np.float32)


def eval_transform(
    img_size: int, mean: Sequence[float], std: Sequence[float], interpolation: str = "bilinear"
) -> Pipeline:
    """Deterministic preprocessing of cache images for the classifier (resize + normalise)."""
    return Pipeline(img_size, mean, std, interpolation=interpolation)


def train_transform(
    domain: str, augment_cfg: Any, img_size: int, mean: Sequence[float], std: Sequence[float],
    interpolation: str = "bilinear",
) -> Pipeline:
    """Domain augmentation from params (``finetune.augment.<domain>``) + preprocessing.

    Medical: small affine, brightness/contrast, optional horizontal flip, never a
    vertical flip (anatomy is not up-down symmetric). Satellite: flips, rot90
    (nadir imagery has no canonical orientation) and band-safe Gaussian noise.
    """
    import albumentations as A
    import cv2

    ops: list[Any] = []
    post: list[Op] = []
    if domain == "medical":
        c = augment_cfg.medical
        if c.affine_degrees > 0 or c.affine_scale > 0:
            ops.append(A.Affine(rotate=(-c.affine_degrees, c.affine_degrees),
                                scale=(1 - c.affine_scale, 1 + c.affine_scale),
                                border_mode=cv2.BORDER_REFLECT_101, p=0.7))
        if c.brightness > 0 or c.contrast > 0:
            ops.append(A.RandomBrightnessContrast(brightness_limit=c.brightness, contrast_limit=c.contrast, p=0.5))
        if c.hflip:
            ops.append(A.HorizontalFlip(p=0.5))
    elif domain == "satellite":
        c = augment_cfg.satellite
        if c.flips:
            ops += [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)]
        if c.rot90:
            ops.append(A.RandomRotate90(p=0.5))
        if c.noise_std > 0:
            post.append(RandGaussianNoise(c.noise_std))
    else:
        raise ValueError(f"unknown domain {domain!r}")
    return Pipeline(img_size, mean, std, augment=[RandAlbumentations(ops)] if ops else [], post=post,
                    interpolation=interpolation)
