"""Backbone weights loading (local file, local dir, offline HF cache), in_chans/img_size adaptation, freezing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from medvit.errors import UserError
from medvit.models.backbone import RANDOM_INIT, create_backbone, freeze, prefix_modules, run_prefix, weights_kind

ARCH = "deit3_small_patch16_384"
TINY = {"depth": 2, "embed_dim": 64, "num_heads": 2}


@pytest.fixture(scope="module")
def source_state() -> dict[str, torch.Tensor]:
    """A 'pretrained' tiny DeiT3 (RGB, img 64, with a 1000-class head) as a state dict."""
    torch.manual_seed(123)
    model = timm.create_model(ARCH, img_size=64, **TINY)
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def _assert_loaded(model: torch.nn.Module, src: dict[str, torch.Tensor], in_chans: int) -> None:
    got = model.state_dict()
    assert torch.equal(got["blocks.1.mlp.fc1.weight"], src["blocks.1.mlp.fc1.weight"])
    assert torch.equal(got["cls_token"], src["cls_token"])
    w = src["patch_embed.proj.weight"]  # (D, 3, p, p)
    if in_chans == 1:  # timm's adapt_input_conv sums RGB for one channel
        assert torch.allclose(got["patch_embed.proj.weight"], w.sum(1, keepdim=True))
    else:
        assert got["patch_embed.proj.weight"].shape[1] == in_chans
    assert "head.weight" not in got  # ImageNet classifier dropped (num_classes=0)


def test_local_safetensors_file_adapts_in_chans_and_img_size(tmp_path: Path, source_state: dict) -> None:
    path = tmp_path / "tiny.safetensors"
    save_file(source_state, str(path))
    model, prov = create_backbone(ARCH, in_chans=1, img_size=96, weights=str(path), model_kwargs=TINY)
    assert prov == f"local:{path.resolve()}"
    _assert_loaded(model, source_state, 1)
    # 96 / 16 = 6x6 patches: timm resampled the 4x4 position embeddings.
    assert model.pos_embed.shape == (1, 36, 64)
    assert model(torch.zeros(2, 1, 96, 96)).shape == (2, 64)


def test_local_pth_file_with_model_key_and_band_count(tmp_path: Path, source_state: dict) -> None:
    path = tmp_path / "tiny.pth"
    torch.save({"model": source_state, "epoch": 3}, path)  # DeiT-style checkpoint, loaded weights_only
    model, prov = create_backbone(ARCH, in_chans=4, img_size=64, weights=str(path), model_kwargs=TINY)
    assert prov.startswith("local:")
    _assert_loaded(model, source_state, 4)
    w, src = model.patch_embed.proj.weight, source_state["patch_embed.proj.weight"]
    # 4 bands: RGB repeated cyclically and scaled by 3/4 (timm adapt_input_conv).
    assert torch.allclose(w[:, :3], src * 0.75) and torch.allclose(w[:, 3], src[:, 0] * 0.75)


def test_local_directory(tmp_path: Path, source_state: dict) -> None:
    folder = tmp_path / "ckpt"
    folder.mkdir()
    save_file(source_state, str(folder / "model.safetensors"))
    model, prov = create_backbone(ARCH, in_chans=3, img_size=64, weights=str(folder), model_kwargs=TINY)
    assert prov == f"local:{folder.resolve()}"
    assert torch.equal(model.patch_embed.proj.weight, source_state["patch_embed.proj.weight"])


def test_offline_hf_cache_layout(tmp_path: Path, source_state: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    cache, repo, sha = tmp_path / "hub", "timm/tiny_deit3.test", "0" * 39 + "1"
    snap = cache / "models--timm--tiny_deit3.test" / "snapshots" / sha
    snap.mkdir(parents=True)
    save_file(source_state, str(snap / "model.safetensors"))
    (snap / "config.json").write_text(json.dumps({"architecture": ARCH, "num_classes": 1000}))
    (cache / "models--timm--tiny_deit3.test" / "refs").mkdir()
    (cache / "models--timm--tiny_deit3.test" / "refs" / "main").write_text(sha)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    model, prov = create_backbone(ARCH, in_chans=1, img_size=64, weights=repo, model_kwargs=TINY)
    assert prov == f"hub:{repo}"
    _assert_loaded(model, source_state, 1)
    # Not cached: a clear error naming the reference and the fix.
    with pytest.raises(UserError, match=r"timm/absent\.x.*huggingface-cli download.*allow_random_init"):
        create_backbone(ARCH, in_chans=1, img_size=64, weights="timm/absent.x", model_kwargs=TINY)


def test_missing_weights_error_or_loud_random_init(tmp_path: Path) -> None:
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(UserError, match="nope.safetensors"):
        create_backbone(ARCH, in_chans=1, img_size=64, weights=str(missing), model_kwargs=TINY)
    with pytest.raises(UserError, match="allow_random_init"):
        create_backbone(ARCH, in_chans=1, img_size=64, weights="none", model_kwargs=TINY)
    with pytest.warns(UserWarning, match="RANDOM WEIGHTS"):
        _, prov = create_backbone(ARCH, in_chans=1, img_size=64, weights=str(missing), allow_random_init=True,
                                  model_kwargs=TINY)
    assert prov == RANDOM_INIT


def test_weights_kind() -> None:
    assert weights_kind("none") == "none"
    assert weights_kind("timm/deit3_base_patch16_384.fb_in22k_ft_in1k") == "hub"
    assert weights_kind("hf-hub:timm/x") == "hub"
    assert weights_kind("./w.safetensors") == "local"


def test_freeze_embeddings_and_first_blocks() -> None:
    model = timm.create_model(ARCH, img_size=64, num_classes=0, depth=3, embed_dim=64, num_heads=2)
    frozen = set(freeze(model, 2))
    for name, p in model.named_parameters():
        should = name in ("cls_token", "pos_embed") or name.startswith(("patch_embed.", "blocks.0.", "blocks.1."))
        assert (not p.requires_grad) == should, name
        assert (name in frozen) == should
    assert freeze(model, 0) == []
    with pytest.raises(UserError, match="exceeds the model depth"):
        freeze(model, 4)


def test_prefix_modules_and_run_prefix_cover_exactly_the_frozen_parameters() -> None:
    torch.manual_seed(0)
    model = timm.create_model(ARCH, img_size=64, num_classes=0, depth=3, embed_dim=64, num_heads=2).eval()
    frozen = set(freeze(model, 2))
    in_modules = {id(p) for m in prefix_modules(model, 2) for p in m.parameters()}
    direct = {id(model.cls_token), id(model.pos_embed)}  # parameters of the backbone itself, not of a module
    by_id = {id(p): n for n, p in model.named_parameters()}
    assert {by_id[i] for i in in_modules | direct} == frozen
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        tokens = run_prefix(model, x, 2)  # (B, 1 + 16, D)
        assert tokens.shape == (2, 17, 64)
        rest = model.blocks[2](tokens)
        torch.testing.assert_close(model.norm(rest), model.forward_features(x))
