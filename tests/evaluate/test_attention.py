"""Attention rollout on a tiny timm ViT, checked against attention computed by hand from qkv."""

from __future__ import annotations

import numpy as np
import timm
import torch

from timm.layers import use_fused_attn

from medvit.evaluate.attention import attention_rollout, display_image, find_vit
from medvit.models.backbone import explicit_attention
from medvit.models.classifier import build_classifier, load_classifier, save_classifier

META = {"model": "deit3_small_patch16_384", "img_size": 64, "in_chans": 1, "label_names": ["a", "b"],
        "head": {"hidden_dim": 8, "dropout": 0.0}, "freeze_blocks": 1,
        "model_kwargs": {"depth": 2, "embed_dim": 64, "num_heads": 2}}


def _tiny_vit() -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model("deit3_small_patch16_384", depth=2, embed_dim=64, num_heads=2, img_size=64, in_chans=1)


def _manual_attention(vit: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """(B, heads, T, T) softmax(q k^T * scale) of each block, from the inputs the attention modules see."""
    inputs: list[torch.Tensor] = []
    hooks = [b.attn.register_forward_pre_hook(lambda _m, a: inputs.append(a[0])) for b in vit.blocks]
    with torch.no_grad():
        vit.forward_features(x)
    for h in hooks:
        h.remove()
    out = []
    for block, t in zip(vit.blocks, inputs):
        a = block.attn
        b, n, _ = t.shape
        q, k, _v = a.qkv(t).reshape(b, n, 3, a.num_heads, a.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = a.q_norm(q), a.k_norm(k)
        out.append(((q * a.scale) @ k.transpose(-2, -1)).softmax(-1))
    return out


def test_rollout_matches_a_hand_computed_rollout_and_restores_fused_attention() -> None:
    vit = _tiny_vit().eval()
    x = torch.randn(3, 1, 64, 64)
    maps = attention_rollout(vit, x)
    assert maps.shape == (3, 4, 4)  # 64 / 16 patches per side
    assert torch.all(maps >= 0) and torch.all(maps <= 1)
    assert all(b.attn.fused_attn for b in vit.blocks)  # switched back after capturing
    eye = torch.eye(17)
    r = eye.expand(3, 17, 17)
    for a in _manual_attention(vit, x):
        a = 0.5 * a.mean(1) + 0.5 * eye
        r = (a / a.sum(-1, keepdim=True)) @ r
    row = r[:, 0, 1:].reshape(3, 4, 4)
    lo, hi = row.amin((1, 2), keepdim=True), row.amax((1, 2), keepdim=True)
    torch.testing.assert_close(maps, (row - lo) / (hi - lo), atol=1e-5, rtol=1e-4)
    assert not torch.allclose(maps[0], maps[1])  # depends on the image


def test_explicit_attention_build_gives_the_same_maps_and_restores_the_global_flag(tmp_path) -> None:  # noqa: ANN001
    fused = _tiny_vit().eval()
    with explicit_attention():
        assert not use_fused_attn()
        explicit = _tiny_vit().eval()  # same seed, same weights
    assert use_fused_attn()  # timm's global flag is back
    assert not any(b.attn.fused_attn for b in explicit.blocks)
    x = torch.randn(2, 1, 64, 64)
    torch.testing.assert_close(attention_rollout(explicit, x), attention_rollout(fused, x))
    assert not any(b.attn.fused_attn for b in explicit.blocks)
    save_classifier(build_classifier(META), META, tmp_path)
    clf, _ = load_classifier(tmp_path, fused_attn=False)
    assert not any(b.attn.fused_attn for b in clf.backbone.blocks)
    assert all(b.attn.fused_attn for b in load_classifier(tmp_path)[0].backbone.blocks)


def test_find_vit_inside_the_classifier() -> None:
    clf = build_classifier(META).train()
    vit = find_vit(clf)
    assert vit is clf.backbone
    assert attention_rollout(vit, torch.randn(1, 1, 64, 64)).shape == (1, 4, 4)
    assert clf.head.training and vit.training  # the mode is restored after the extraction


def test_rollout_of_a_model_without_attention_is_a_clear_error() -> None:
    import pytest

    class NotAViT(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = torch.nn.ModuleList([torch.nn.Identity()])
            self.patch_embed = torch.nn.Identity()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    with pytest.raises(ValueError, match="no attention to extract"):
        attention_rollout(NotAViT(), torch.randn(1, 1, 4, 4))


def test_display_image_true_colour_from_band_names() -> None:
    img = np.zeros((4, 8, 8), np.float32)
    img[2] = np.linspace(0, 1, 64).reshape(8, 8)  # B4 = red
    rgb = display_image(img, ["B2", "B3", "B4", "B8"])
    assert rgb.shape == (8, 8, 3)
    assert rgb[..., 0].max() > 0.9 and rgb[..., 1].max() == 0  # red channel carries B4
    grey = display_image(img[:1])
    assert grey.shape == (8, 8)
