"""Classifier: head structure, frozen prefix without autograd graph, save/load round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from medvit.models.classifier import build_classifier, load_classifier, save_classifier
from medvit.models.head import MultiLabelHead

META = {
    "model": "deit3_small_patch16_384", "model_kwargs": {"depth": 2, "embed_dim": 64, "num_heads": 2},
    "img_size": 64, "in_chans": 1, "label_names": ["a", "b", "c"], "head": {"hidden_dim": 32, "dropout": 0.1},
    "mean": [0.5], "std": [0.25], "weights": "random-init", "freeze_blocks": 1,
}


def test_head_layers_and_shape() -> None:
    head = MultiLabelHead(64, 5, hidden_dim=32, dropout=0.2)
    kinds = [type(m) for m in head.children()]
    assert kinds == [nn.LayerNorm, nn.Dropout, nn.Linear, nn.GELU, nn.Dropout, nn.Linear]
    assert head.fc1.in_features == 64 and head.fc1.out_features == 32 and head.fc2.out_features == 5
    assert head.drop1.p == 0.2 and head.drop2.p == 0.2
    assert head(torch.randn(3, 64)).shape == (3, 5)


def test_head_reads_pre_logits_features() -> None:
    torch.manual_seed(0)
    model = build_classifier(META).eval()
    x = torch.randn(2, 1, 64, 64)
    feats = model.backbone.forward_head(model.backbone.forward_features(x), pre_logits=True)  # (B, D)
    assert torch.allclose(model(x), model.head(feats), atol=1e-6)


def test_frozen_prefix_builds_no_graph() -> None:
    model = build_classifier(META).train()
    x = torch.randn(2, 1, 64, 64)
    tokens = model.forward_prefix(x)  # (B, 1 + 16, D)
    assert tokens.shape == (2, 17, 64)
    assert tokens.grad_fn is None and not tokens.requires_grad
    logits = model(x)
    assert logits.shape == (2, 3) and logits.grad_fn is not None
    logits.sum().backward()
    assert model.backbone.blocks[0].attn.qkv.weight.grad is None  # frozen block: no gradient
    assert model.backbone.patch_embed.proj.weight.grad is None
    assert model.backbone.blocks[1].attn.qkv.weight.grad is not None
    # Frozen modules stay in eval mode while training (fixed features), the rest trains.
    assert not model.backbone.blocks[0].training and model.backbone.blocks[1].training and model.head.training


def test_unfrozen_model_trains_embeddings() -> None:
    model = build_classifier({**META, "freeze_blocks": 0}).train()
    model(torch.randn(2, 1, 64, 64)).sum().backward()
    assert model.backbone.patch_embed.proj.weight.grad is not None
    assert model.backbone.cls_token.grad is not None


def test_token_input_matches_image_input() -> None:
    model = build_classifier(META).eval()
    x = torch.randn(2, 1, 64, 64)
    assert torch.equal(model(model.forward_prefix(x)), model(x))


def test_save_load_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = build_classifier(META).eval()
    save_classifier(model, META, tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["meta.json", "model.safetensors"]
    loaded, meta = load_classifier(tmp_path / "m")
    assert meta == META and not loaded.training
    x = torch.randn(3, 1, 64, 64)
    assert torch.equal(loaded(x), model(x))
    # Built on the meta device and loaded with assign=True: every tensor is real and the frozen prefix stays frozen.
    assert not any(t.is_meta for t in (*loaded.parameters(), *loaded.buffers()))
    assert [(n, p.requires_grad) for n, p in loaded.named_parameters()] == \
        [(n, p.requires_grad) for n, p in model.named_parameters()]
    assert not loaded.backbone.blocks[0].attn.qkv.weight.requires_grad and loaded.head.fc1.weight.requires_grad
    explicit, _ = load_classifier(tmp_path / "m", fused_attn=False)
    assert torch.allclose(explicit(x), model(x), atol=1e-5)
    with pytest.raises(FileNotFoundError, match="finetune"):
        load_classifier(tmp_path / "absent")
