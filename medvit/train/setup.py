"""Assemble what the loop needs from params and the cache: model, datasets, transforms, loss."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from timm.data import resolve_model_data_config
from torch import nn
from torch.utils.data import Dataset

from medvit.config import FinetuneConfig
from medvit.data.dataset import CacheDataset
from medvit.data.manifest import Manifest
from medvit.data.preprocess import read_preprocessor
from medvit.data.transforms import eval_transform, norm_stats, train_transform
from medvit.errors import UserError
from medvit.models.backbone import create_backbone
from medvit.models.classifier import Classifier
from medvit.models.head import MultiLabelHead
from medvit.train.data import EpochDataset, TokenDataset, frozen_tokens
from medvit.train.distributed import DistInfo
from medvit.train.loop import seed_everything
from medvit.train.loss import build_loss, pos_weight_from

log = logging.getLogger(__name__)


@dataclass
class TrainingSetup:
    """Everything ``fit`` and the stage need."""

    model: Classifier
    train: Dataset
    val: Dataset | None
    test: Dataset | None
    loss: nn.Module
    provenance: str
    meta_base: dict[str, Any]
    ids: dict[str, list[str]]
    cached_features: bool


def build_training(cfg: FinetuneConfig, domain: str, cache: Path, manifest: Manifest, stats: dict[str, Any],
                   info: DistInfo) -> TrainingSetup:
    """Build model, datasets and loss for ``cfg`` on one domain's cache.

    Raises:
        UserError: the train split is empty, or weights are missing (see ``create_backbone``).
    """
    seed_everything(cfg.seed, cfg.deterministic)
    in_chans = len(stats["mean"])
    backbone, provenance = create_backbone(
        cfg.model, in_chans=in_chans, img_size=cfg.img_size, weights=cfg.weights,
        allow_random_init=cfg.allow_random_init, model_kwargs=dict(cfg.model_kwargs),
    )
    img_size = int(backbone.patch_embed.img_size[0])
    # timm's resolved data config: the pretrained mean/std (used with normalize: pretrained) and the
    # interpolation the weights were trained with (bicubic for DeiT3), used for every resize to img_size.
    data_cfg = resolve_model_data_config(backbone)
    mean, std = norm_stats(cfg.normalize, in_chans, stats, data_cfg)
    interpolation = str(data_cfg.get("interpolation", "bilinear"))
    head = MultiLabelHead(backbone.num_features, manifest.num_labels, cfg.head.hidden_dim, cfg.head.dropout)
    model = Classifier(backbone, head, cfg.freeze_blocks)

    splits = {s: CacheDataset(cache, s, manifest=manifest) for s in ("train", "val", "test")}
    if not len(splits["train"]):
        raise UserError(f"{manifest.path}: the train split is empty; check ingest.split_fractions")
    ev = eval_transform(img_size, mean, std, interpolation)
    cached = bool(cfg.cache_frozen_features and model.frozen)
    if cfg.cache_frozen_features and not model.frozen:
        warnings.warn("finetune.cache_frozen_features needs freeze_blocks > 0; ignored", stacklevel=2)
    datasets: dict[str, Dataset | None] = {}
    train_tf = train_transform(domain, cfg.augment, img_size, mean, std, interpolation)
    if cached:
        # The prefix runs once per image (or per view of the bank); MixUp/CutMix act on images, so they are off.
        views = cfg.frozen_feature_views
        log.info("cache_frozen_features: frozen-prefix tokens computed once (%s)",
                 f"{views} augmented views" if views else "no augmentation")
        if cfg.mixup_alpha > 0 or cfg.cutmix_alpha > 0:
            warnings.warn("cache_frozen_features: MixUp/CutMix are disabled (they act on images)", stacklevel=2)
        model.to(info.device).eval()
        for s, base in splits.items():
            if not len(base):
                datasets[s] = None
                continue
            if s == "train" and views:
                banks = []
                for v in range(views):
                    ds = EpochDataset(base, train_tf, cfg.seed)
                    ds.epoch = v  # view v draws the augmentation of "epoch" v
                    banks.append(frozen_tokens(model, ds, cfg.batch_size, info.device,
                                               f"frozen features {s} view {v + 1}/{views}", info.is_main))
                tokens = torch.stack(banks)  # (V, N, T, D)
            else:
                tokens = frozen_tokens(model, EpochDataset(base, ev, cfg.seed), cfg.batch_size, info.device,
                                       f"frozen features {s}", info.is_main)
            datasets[s] = TokenDataset(tokens, base.labels, base.ids)
        model.cpu()
    else:
        datasets["train"] = EpochDataset(splits["train"], train_tf, cfg.seed)
        for s in ("val", "test"):
            datasets[s] = EpochDataset(splits[s], ev, cfg.seed) if len(splits[s]) else None
    pos_weight = pos_weight_from(manifest.labels("train")) if cfg.loss.pos_weight else None
    loss = build_loss(cfg.loss.kind, pos_weight, cfg.loss.gamma_neg, cfg.loss.gamma_pos).to(info.device)
    meta_base = {
        "model": cfg.model, "model_kwargs": dict(cfg.model_kwargs), "img_size": img_size, "in_chans": in_chans,
        "label_names": list(manifest.label_names), "head": {"hidden_dim": cfg.head.hidden_dim,
                                                            "dropout": cfg.head.dropout},
        "mean": mean, "std": std, "interpolation": interpolation,
        "freeze_blocks": cfg.freeze_blocks, "normalize": cfg.normalize,
    }
    prep = read_preprocessor(cache)
    if prep is not None:  # raw file -> model input, for the served model (medvit.data.preprocess)
        meta_base["preprocess"] = prep.with_model(img_size, mean, std, interpolation).to_json()
    return TrainingSetup(
        model=model, train=datasets["train"], val=datasets["val"], test=datasets["test"],  # type: ignore[arg-type]
        loss=loss, provenance=provenance, meta_base=meta_base,
        ids={s: list(b.ids) for s, b in splits.items()}, cached_features=cached,
    )
