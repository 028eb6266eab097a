"""The training loop on a real tiny cache: frozen weights untouched, accumulation, EMA, checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from medvit.data.cache import read_stats
from medvit.data.manifest import read_manifest
from medvit.train.checkpoint import LAST, load_checkpoint, save_checkpoint
from medvit.train.distributed import DistInfo
from medvit.train.loop import evaluate, fit
from medvit.train.setup import build_training

INFO = DistInfo()
IDENTITY = {"params_hash": "p1", "data_hash": "d1", "world_size": 1}


def _setup(cache: Path, cfg):  # noqa: ANN001, ANN202
    return build_training(cfg, "medical", cache, read_manifest(cache), read_stats(cache), INFO)


def test_frozen_weights_bitwise_unchanged_and_trainable_updated(tiny_cache, tiny_cfg, tmp_path: Path) -> None:
    cache = tiny_cache()
    cfg = tiny_cfg(epochs=2, freeze_blocks=1)
    s = _setup(cache, cfg)
    before = {k: v.clone() for k, v in s.model.state_dict().items()}
    result = fit(s.model, s.train, s.val, cfg, s.loss, info=INFO, ckpt_dir=tmp_path / "ck", identity=IDENTITY)
    after = s.model.state_dict()
    frozen = set(f"backbone.{n}" for n in s.model.frozen_names)
    assert frozen and "backbone.blocks.0.attn.qkv.weight" in frozen and "backbone.pos_embed" in frozen
    for k in before:
        if k in frozen:
            assert torch.equal(before[k], after[k]), k
    assert not torch.equal(before["backbone.blocks.1.attn.qkv.weight"], after["backbone.blocks.1.attn.qkv.weight"])
    assert not torch.equal(before["head.fc2.weight"], after["head.fc2.weight"])
    assert [h["epoch"] for h in result.history] == [1, 2]
    assert {"train/loss", "val/loss", "val/auroc_macro", "val/ap_macro", "lr"} <= set(result.history[0])
    # The checkpoint is loadable with weights_only=True and holds what a resume needs.
    ckpt = torch.load(tmp_path / "ck" / LAST, weights_only=True)
    assert {"model", "optimizer", "scheduler", "ema", "rng", "epoch", "step", "history"} <= set(ckpt)
    assert ckpt["epoch"] == 2 and ckpt["step"] == result.steps
    assert set(ckpt["rng"]) >= {"torch", "numpy", "python"}
    assert not list((tmp_path / "ck").glob("*.tmp"))  # atomic writes leave no temporaries


def test_resize_follows_timms_data_config(tiny_cache, tiny_cfg) -> None:
    """DeiT3's pretrained data config says bicubic: train and eval resize that way, and meta records it."""
    s = _setup(tiny_cache(), tiny_cfg(epochs=1))
    assert s.meta_base["interpolation"] == "bicubic"
    assert s.train.transform.interpolation == "bicubic"


def test_gradient_accumulation_matches_large_batch(tiny_cache, tiny_cfg, tmp_path: Path) -> None:
    cache = tiny_cache()
    states = []
    for bs, accum in ((8, 1), (4, 2)):
        cfg = tiny_cfg(epochs=1, batch_size=bs, accum_steps=accum, head={"hidden_dim": 32, "dropout": 0.0},
                       ema_decay=0.0)
        s = _setup(cache, cfg)
        fit(s.model, s.train, s.val, cfg, s.loss, info=INFO, ckpt_dir=tmp_path / f"ck{bs}", identity=IDENTITY)
        states.append(s.model.state_dict())
    for k in states[0]:
        assert torch.allclose(states[0][k], states[1][k], atol=2e-5), k
    assert load_checkpoint(tmp_path / "ck8" / LAST)["step"] == load_checkpoint(tmp_path / "ck4" / LAST)["step"]


def test_resume_skips_finished_run_and_mismatch_starts_fresh(tiny_cache, tiny_cfg, tmp_path: Path) -> None:
    cache = tiny_cache()
    cfg = tiny_cfg(epochs=1)
    s = _setup(cache, cfg)
    first = fit(s.model, s.train, s.val, cfg, s.loss, info=INFO, ckpt_dir=tmp_path / "ck", identity=IDENTITY)
    again = fit(s.model, s.train, s.val, cfg, s.loss, info=INFO, ckpt_dir=tmp_path / "ck", identity=IDENTITY)
    assert again.resumed_from == 1 and again.steps == first.steps and len(again.history) == 1
    for k, v in first.best_state.items():
        assert torch.equal(v, again.best_state[k])
    other = fit(s.model, s.train, s.val, cfg, s.loss, info=INFO, ckpt_dir=tmp_path / "ck",
                identity={**IDENTITY, "data_hash": "d2"})
    assert other.resumed_from is None and any("data_hash differs" in n for n in other.notes)
    # A checkpoint of the layout before timm's scheduler/EMA (format 1) is not loaded either.
    ckpt = load_checkpoint(tmp_path / "ck" / LAST)
    save_checkpoint(tmp_path / "ck" / LAST, {**ckpt, "format": 1})
    older = fit(s.model, s.train, s.val, cfg, s.loss, info=INFO, ckpt_dir=tmp_path / "ck", identity=IDENTITY)
    assert older.resumed_from is None and any("format 1" in n for n in older.notes)


def test_early_stopping(tiny_cache, tiny_cfg, tmp_path: Path) -> None:
    cache = tiny_cache()
    # lr ~ 0 and no dropout: val metrics cannot improve after epoch 1, so patience 1 stops at epoch 2.
    cfg = tiny_cfg(epochs=5, lr=1e-12, early_stopping_patience=1, head={"hidden_dim": 32, "dropout": 0.0})
    s = _setup(cache, cfg)
    result = fit(s.model, s.train, s.val, cfg, s.loss, info=INFO, ckpt_dir=tmp_path / "ck", identity=IDENTITY)
    assert result.epochs_run == 2 and result.stopped_early and result.best_epoch == 1


def test_ema_weights_are_validated_and_kept_when_enabled(tiny_cache, tiny_cfg, tmp_path: Path) -> None:
    cache = tiny_cache()
    cfg = tiny_cfg(epochs=1, ema_decay=0.9, head={"hidden_dim": 32, "dropout": 0.0})
    s = _setup(cache, cfg)
    result = fit(s.model, s.train, s.val, cfg, s.loss, info=INFO, ckpt_dir=tmp_path / "ck", identity=IDENTITY)
    raw = {k: v.detach().clone() for k, v in s.model.state_dict().items()}
    assert not torch.equal(result.best_state["head.fc2.weight"], raw["head.fc2.weight"])  # EMA, not the raw weights
    assert torch.equal(result.best_state["backbone.blocks.0.attn.qkv.weight"], raw["backbone.blocks.0.attn.qkv.weight"])
    # The epoch's val/loss is that of the EMA weights.
    s.model.load_state_dict(result.best_state)
    ema_val, _ = evaluate(s.model, s.val, s.loss, cfg.batch_size, INFO, "val/")
    assert result.history[0]["val/loss"] == ema_val["val/loss"]
    s.model.load_state_dict(raw)
    raw_val, _ = evaluate(s.model, s.val, s.loss, cfg.batch_size, INFO, "val/")
    assert raw_val["val/loss"] != ema_val["val/loss"]
    assert load_checkpoint(tmp_path / "ck" / LAST)["ema"] is not None


def test_cached_frozen_features_train_same_head_shapes(tiny_cache, tiny_cfg, tmp_path: Path) -> None:
    cache = tiny_cache()
    cfg = tiny_cfg(epochs=1, cache_frozen_features=True)
    s = _setup(cache, cfg)
    assert s.cached_features
    tokens = s.train[0]["image"]  # (T, D) frozen-prefix output
    assert tokens.shape == (1 + (32 // 16) ** 2, 64)
    before = s.model.state_dict()["backbone.blocks.0.mlp.fc1.weight"].clone()
    result = fit(s.model, s.train, s.val, cfg, s.loss, info=INFO, ckpt_dir=tmp_path / "ck", identity=IDENTITY)
    assert np.isfinite(result.history[0]["val/loss"])
    assert torch.equal(before, s.model.state_dict()["backbone.blocks.0.mlp.fc1.weight"])


def test_frozen_feature_bank_of_augmented_views(tiny_cache, tiny_cfg) -> None:
    cache = tiny_cache()
    cfg = tiny_cfg(cache_frozen_features=True, frozen_feature_views=2)
    s = _setup(cache, cfg)
    views = []
    for epoch in range(3):
        s.train.epoch = epoch
        views.append(s.train[0]["image"])
    assert not torch.equal(views[0], views[1])  # two different augmented views
    assert torch.equal(views[0], views[2])  # epoch 2 reuses view 0
    assert s.val[0]["image"].shape == views[0].shape
