"""timm's AdamW groups on our classifier, its cosine schedule per update, and its EMA."""

from __future__ import annotations

import math

import pytest
import torch

from medvit.config import FinetuneConfig
from medvit.models.classifier import build_classifier
from medvit.train.optimizer import MIN_LR_RATIO, build_ema, build_optimizer, build_scheduler, top_lr

META = {"model": "deit3_small_patch16_384", "model_kwargs": {"depth": 3, "embed_dim": 64, "num_heads": 2},
        "img_size": 32, "in_chans": 1, "label_names": ["a", "b"], "head": {"hidden_dim": 16, "dropout": 0.0}}


def _cfg(**overrides: object) -> FinetuneConfig:
    base = {"lr": 1e-2, "weight_decay": 0.05, "layer_decay": 0.5, "epochs": 2, "warmup_epochs": 0.5}
    return FinetuneConfig.model_validate({**base, **overrides})


def _group_of(opt: torch.optim.Optimizer, param: torch.Tensor) -> dict:
    return next(g for g in opt.param_groups if any(p is param for p in g["params"]))


def test_groups_hold_only_trainable_params_with_right_decay() -> None:
    model = build_classifier({**META, "freeze_blocks": 1})
    opt = build_optimizer(model, _cfg())
    assert isinstance(opt, torch.optim.AdamW)
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    for name, p in model.named_parameters():
        assert (id(p) in in_opt) == p.requires_grad, name
    bb = model.backbone
    no_decay = {"norm": bb.norm.weight, "bias": bb.blocks[2].attn.qkv.bias, "layerscale": bb.blocks[2].ls1.gamma,
                "head norm": model.head.norm.weight, "head bias": model.head.fc2.bias}
    for name, p in no_decay.items():
        assert _group_of(opt, p)["weight_decay"] == 0.0, name
    for name, p in {"qkv": bb.blocks[1].attn.qkv.weight, "head": model.head.fc1.weight}.items():
        assert _group_of(opt, p)["weight_decay"] == 0.05, name


def test_position_embedding_and_class_token_get_no_weight_decay() -> None:
    model = build_classifier({**META, "freeze_blocks": 0})  # the stem is trainable here
    opt = build_optimizer(model, _cfg())
    for p in (model.backbone.pos_embed, model.backbone.cls_token):  # 3-D tensors: only no_weight_decay() spares them
        assert p.ndim == 3 and _group_of(opt, p)["weight_decay"] == 0.0
    assert _group_of(opt, model.backbone.patch_embed.proj.weight)["weight_decay"] == 0.05


def test_layer_decay_gives_earlier_layers_smaller_lr_under_the_schedule() -> None:
    model = build_classifier({**META, "freeze_blocks": 0})
    cfg = _cfg()
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg, steps_per_epoch=5)  # 10 updates, 2 (rounded 2.5) of warmup
    for step in range(1, 5):  # past warmup, mid-cosine
        opt.step()
        sched.step_update(step)
    top = top_lr(opt)
    assert cfg.lr * MIN_LR_RATIO < top < cfg.lr
    bb, depth = model.backbone, 3  # scale = 0.5 ** (depth + 1 - layer): stem 0, block i i+1, norm/head depth+1
    expect = {
        "head": (model.head.fc2.weight, 1.0), "norm": (bb.norm.weight, 1.0),
        "block2": (bb.blocks[2].mlp.fc1.weight, 0.5), "block0": (bb.blocks[0].attn.qkv.weight, 0.5 ** 3),
        "embed": (bb.patch_embed.proj.weight, 0.5 ** (depth + 1)), "cls": (bb.cls_token, 0.5 ** (depth + 1)),
    }
    for name, (param, scale) in expect.items():
        assert _group_of(opt, param)["lr"] == pytest.approx(top * scale), name


def test_warmup_then_cosine_per_update_and_state_round_trip() -> None:
    p = torch.nn.Parameter(torch.zeros(2, 2))
    cfg = _cfg(lr=1.0, epochs=2, warmup_epochs=0.8)  # 10 updates per epoch: 8 warmup, 12 cosine
    opt = torch.optim.AdamW([p], lr=cfg.lr)
    sched = build_scheduler(opt, cfg, steps_per_epoch=10)
    lrs = []
    for step in range(1, 21):
        lrs.append(opt.param_groups[0]["lr"])  # the LR update `step` runs at
        sched.step_update(step)
    assert lrs[:8] == pytest.approx([(k + 1) / 9 for k in range(8)])  # linear, never 0
    assert lrs[8] == pytest.approx(1.0)
    floor = MIN_LR_RATIO
    assert lrs[14] == pytest.approx(floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * 6 / 12)))
    assert all(a > b for a, b in zip(lrs[8:], lrs[9:]))
    assert opt.param_groups[0]["lr"] == pytest.approx(floor)  # after the last update
    again = build_scheduler(torch.optim.AdamW([p], lr=cfg.lr), cfg, steps_per_epoch=10)
    again.load_state_dict(sched.state_dict())
    assert again.state_dict() == sched.state_dict()
    again.step_update(14)
    assert again.optimizer.param_groups[0]["lr"] == pytest.approx(lrs[14])


def test_ema_follows_the_update_formula_and_keeps_frozen_weights() -> None:
    model = build_classifier({**META, "freeze_blocks": 1})
    assert build_ema(model, 0.0) is None
    ema = build_ema(model, 0.9)
    frozen = dict(ema.module.named_parameters())["backbone.blocks.0.attn.qkv.weight"].detach().clone()
    before = ema.module.head.fc2.weight.detach().clone()
    with torch.no_grad():
        model.head.fc2.weight.add_(1.0)
    ema.update(model)
    torch.testing.assert_close(ema.module.head.fc2.weight, 0.9 * before + 0.1 * model.head.fc2.weight)
    assert not torch.equal(ema.module.head.fc2.weight, model.head.fc2.weight)
    assert torch.equal(ema.module.backbone.blocks[0].attn.qkv.weight, frozen)
