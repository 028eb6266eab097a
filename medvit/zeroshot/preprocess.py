"""Image preprocessing for CLIP: cache channels -> RGB in [0, 1] -> the model's own resize/crop/normalise.

Everything is a batched tensor op on (B, C, H, W) float32, so a batch costs a few
interpolations rather than one PIL round trip per image.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class RgbMapping:
    """Cache channels -> 3 RGB channels in [0, 1].

    ``channels`` indexes the cache channels used for R, G, B (``[0, 0, 0]`` replicates a
    single channel). ``low``/``high`` are per output channel; values are mapped by
    ``(x - low) / (high - low)`` and clipped to [0, 1].
    """

    channels: tuple[int, int, int]
    low: tuple[float, float, float]
    high: tuple[float, float, float]

    def spec(self) -> dict[str, Any]:
        return asdict(self)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) cache images -> (B, 3, H, W) RGB in [0, 1]."""
        rgb = x[:, list(self.channels)]
        low = torch.tensor(self.low, dtype=rgb.dtype).view(1, 3, 1, 1)
        span = torch.tensor(self.high, dtype=rgb.dtype).view(1, 3, 1, 1) - low
        return ((rgb - low) / span.clamp_min(1e-12)).clamp_(0.0, 1.0)


def replicate_mapping() -> RgbMapping:
    """One grey channel (ingest writes it VOI-windowed to [0, 1]) copied to R, G and B."""
    return RgbMapping(channels=(0, 0, 0), low=(0.0, 0.0, 0.0), high=(1.0, 1.0, 1.0))


def band_mapping(
    channel_names: Sequence[str], rgb_bands: Sequence[str], train_images: np.ndarray, percentiles: Sequence[float]
) -> RgbMapping:
    """Select R, G, B bands by name and rescale each by its train-split percentiles.

    Percentile stretching (e.g. 2-98 %) is the usual robust display scaling for
    multispectral reflectance, whose range varies per band and per sensor.

    Args:
        channel_names: cache channel names (stats.json "channels").
        rgb_bands: three names, e.g. ("B4", "B3", "B2").
        train_images: (N, C, H, W) train-split images (a sample is enough).
        percentiles: (low, high) in percent.

    Raises:
        ValueError: a band is not among the cache channels.
    """
    names = list(channel_names)
    missing = [b for b in rgb_bands if b not in names]
    if missing:
        raise ValueError(f"rgb_bands {missing} not among the cache channels {names} (stats.json 'channels')")
    idx = tuple(names.index(b) for b in rgb_bands)
    low, high = [], []
    for c in idx:
        lo, hi = np.percentile(train_images[:, c], list(percentiles)) if len(train_images) else (0.0, 1.0)
        low.append(round(float(lo), 6))
        high.append(round(float(max(hi, lo + 1e-6)), 6))
    return RgbMapping(channels=idx, low=tuple(low), high=tuple(high))  # type: ignore[arg-type]


@dataclass(frozen=True)
class ClipPreprocess:
    """A CLIP model's own preprocessing, as tensor ops.

    Mirrors CLIPImageProcessor / open_clip ``image_transform``: resize (shortest edge to
    ``size`` for ``shortest``, both edges for ``squash``, longest edge plus padding with
    ``fill`` for ``longest``), centre crop to ``crop``, then ``(x - mean) / std``.
    """

    size: int
    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"
    fill: float = 0.0

    def spec(self) -> dict[str, Any]:
        return asdict(self)

    def _resize(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        if tuple(x.shape[-2:]) == hw:
            return x
        # antialias matches PIL's filtered downsampling; clamp undoes bicubic overshoot (PIL clips to uint8).
        if self.interpolation == "nearest":
            return F.interpolate(x, size=hw, mode="nearest")
        return F.interpolate(x, size=hw, mode=self.interpolation, align_corners=False, antialias=True).clamp_(0, 1)

    def __call__(self, rgb: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in [0, 1] -> (B, 3, crop, crop) normalised model input."""
        h, w = rgb.shape[-2:]
        if self.resize_mode == "squash":
            x = self._resize(rgb, (self.size, self.size))
        elif self.resize_mode == "longest":
            scale = self.size / max(h, w)
            x = self._resize(rgb, (max(1, round(h * scale)), max(1, round(w * scale))))
            ph, pw = self.size - x.shape[-2], self.size - x.shape[-1]
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), value=self.fill)
        else:
            # shortest edge -> size, longest truncated as torchvision/CLIPImageProcessor do: int(size * long / short)
            short, long = min(h, w), max(h, w)
            new_long = max(self.size, int(self.size * long / short))
            x = self._resize(rgb, (self.size, new_long) if h <= w else (new_long, self.size))
        top, left = (x.shape[-2] - self.crop) // 2, (x.shape[-1] - self.crop) // 2
        if top > 0 or left > 0:
            x = x[..., max(top, 0) : max(top, 0) + self.crop, max(left, 0) : max(left, 0) + self.crop]
        mean = torch.tensor(self.mean, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype).view(1, 3, 1, 1)
        return (x - mean) / std
