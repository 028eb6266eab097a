"""AdamW param groups: trainable only, no decay on norms/biases/tokens, layer decay applied by our schedule."""

from __future__ import annotations

import math

import pytest
import torch

from medvit.models.classifier import build_classifier
from medvit.train.optimizer import build_optimizer
from medvit.train.schedule import WarmupCosine

META = {"model": "deit3_small_patch16_384", "model_kwargs": {"depth": 3, "embed_dim": 64, "num_heads": 2},
        "img_size": 32, "in_chans": 1, "label_names": ["a", "b"], "head": {"hidden_dim": 16, "dropout": 0.0}}


def _lr_of(opt: torch.optim.Optimizer, param: torch.Tensor) -> float:
    return next(g["lr"] for g in opt.param_groups if any(p is param for p in g["params"]))


def test_groups_hold_only_trainable_params_with_right_decay() -> None:
    model = build_classifier({**META, "freeze_blocks": 1})
    opt = build_optimizer(model, lr=1e-3, weight_decay=0.05, layer_decay=0.5)
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    for name, p in model.named_parameters():
        assert (id(p) in in_opt) == p.requires_grad, name
    for g in opt.param_groups:
        for name, p in zip(g["names"], g["params"]):
            decays = p.ndim >= 2 and not name.endswith(("pos_embed", "cls_token"))
            assert g["weight_decay"] == (0.05 if decays else 0.0), name


def test_layer_decay_takes_effect_under_our_schedule() -> None:
    model = build_classifier({**META, "freeze_blocks": 0})
    opt = build_optimizer(model, lr=1e-2, weight_decay=0.05, layer_decay=0.5)
    sched = WarmupCosine(opt, base_lr=1e-2, warmup_steps=2, total_steps=10, min_ratio=0.0)
    bb = model.backbone
    for _ in range(4):  # past warmup, mid-cosine
        opt.step()
        sched.step()
    f = sched.factor(4)
    assert 0 < f < 1
    depth = 3  # scale = 0.5 ** (depth + 1 - layer_id)
    expect = {
        "head": (model.head.fc2.weight, 1.0), "norm": (bb.norm.weight, 1.0),
        "block2": (bb.blocks[2].mlp.fc1.weight, 0.5), "block0": (bb.blocks[0].attn.qkv.weight, 0.5 ** 3),
        "embed": (bb.patch_embed.proj.weight, 0.5 ** (depth + 1)), "cls": (bb.cls_token, 0.5 ** (depth + 1)),
    }
    for name, (param, scale) in expect.items():
        assert _lr_of(opt, param) == pytest.approx(1e-2 * f * scale), name


def test_warmup_then_cosine() -> None:
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([{"params": [p], "lr_scale": 1.0}], lr=1.0)
    sched = WarmupCosine(opt, base_lr=1.0, warmup_steps=4, total_steps=14, min_ratio=0.0)
    lrs = []
    for _ in range(14):
        lrs.append(opt.param_groups[0]["lr"])
        sched.step()
    assert lrs[:4] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert lrs[4] == pytest.approx(1.0)
    assert lrs[9] == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:]))
    state = sched.state_dict()
    again = WarmupCosine(opt, 1.0, 4, 14, 0.0)
    again.load_state_dict(state)
    assert opt.param_groups[0]["lr"] == pytest.approx(sched.base_lr * sched.factor(14))
