"""MixUp / CutMix for multi-hot targets: mixed targets are the area-weighted mix of both label sets.

Unknown targets (NaN, an ignored uncertain/blank label) stay unknown: a mixed
entry is masked when either source entry is, since its soft target would need the
unknown value. The arithmetic does this by itself (``lam * NaN`` is NaN, also for
``lam`` 0 or 1), and the masked losses then leave the entry out.

Ours, not ``timm.data.Mixup``: timm draws from NumPy's global RNG, while these draws come from a
generator seeded by (seed, epoch, rank), which the bitwise resume after a kill relies on.
"""

from __future__ import annotations

import math

import torch


def mix_batch(
    images: torch.Tensor, targets: torch.Tensor, mixup_alpha: float, cutmix_alpha: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix a batch with its reverse. (B, C, H, W), (B, L) -> same shapes.

    When both alphas are set, each batch picks one of the two with equal odds.
    Soft targets ``lam * y + (1 - lam) * y[::-1]`` suit BCE (multi-label MixUp,
    e.g. as in timm's Mixup with label smoothing 0). A NaN (unknown) target in
    either source gives a NaN mixed target.
    """
    if mixup_alpha <= 0 and cutmix_alpha <= 0:
        return images, targets
    use_cutmix = cutmix_alpha > 0 and (mixup_alpha <= 0 or torch.rand((), generator=generator).item() < 0.5)
    alpha = cutmix_alpha if use_cutmix else mixup_alpha
    lam = _beta(alpha, generator)
    flipped = images.flip(0)
    if use_cutmix:
        h, w = images.shape[-2:]
        cut = math.sqrt(1 - lam)
        ch, cw = int(h * cut), int(w * cut)
        cy = int(torch.randint(h, (), generator=generator))
        cx = int(torch.randint(w, (), generator=generator))
        y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
        x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
        images = images.clone()
        images[..., y0:y1, x0:x1] = flipped[..., y0:y1, x0:x1]
        lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)
    else:
        images = lam * images + (1 - lam) * flipped
    return images, lam * targets + (1 - lam) * targets.flip(0)


def _beta(alpha: float, generator: torch.Generator) -> float:
    """Beta(alpha, alpha) from two seeded Gamma draws (Beta.sample takes no generator)."""
    g1 = torch._standard_gamma(torch.tensor([alpha]), generator=generator)
    g2 = torch._standard_gamma(torch.tensor([alpha]), generator=generator)
    return float((g1 / (g1 + g2)).item())
