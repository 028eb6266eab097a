"""Score both baselines on a cache: CLIP zero-shot and a linear probe on the same frozen embeddings.

``score_baselines`` is the compute half of the zeroshot stage (no tracking, no output
files): cache -> RGB -> image embeddings (cached on disk) -> text embeddings (once
per run) -> (N, L) scores per baseline and split.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medvit.config import LinearProbeConfig, ZeroshotDomain
from medvit.data.cache import read_stats
from medvit.data.dataset import CacheDataset
from medvit.data.manifest import Manifest
from medvit.zeroshot.backends import ClipBackend
from medvit.zeroshot.embed import EmbeddingCache, cache_key, split_embeddings
from medvit.zeroshot.preprocess import RgbMapping, band_mapping, replicate_mapping
from medvit.zeroshot.probe import fit_linear_probe
from medvit.zeroshot.prompts import PromptSet
from medvit.zeroshot.scoring import ScoringMode, label_embeddings, zero_shot_scores

log = logging.getLogger(__name__)

CLIP_ZEROSHOT = "clip_zeroshot"
LINEAR_PROBE = "linear_probe"
EVAL_SPLITS = ("val", "test")
MAX_PERCENTILE_IMAGES = 256  # train images sampled for the satellite band percentiles


@dataclass
class BaselineScores:
    """(N, L) scores per baseline and split, plus what produced them."""

    ids: dict[str, list[str]]
    targets: dict[str, np.ndarray]  # split -> (N, L)
    scores: dict[str, dict[str, np.ndarray]]  # baseline -> split -> (N, L)
    info: dict[str, dict[str, Any]]  # baseline -> provenance for meta.json
    timings: dict[str, float] = field(default_factory=dict)
    reused: dict[str, bool] = field(default_factory=dict)


def rgb_mapping(cfg: ZeroshotDomain, cache_dir: str | Path, train: CacheDataset, seed: int) -> RgbMapping:
    """The domain's cache -> RGB mapping (replicate a grey channel, or pick and stretch named bands).

    Raises:
        ValueError: a configured band is not among the cache channels.
    """
    if cfg.rgb == "replicate":
        return replicate_mapping()
    channels = read_stats(cache_dir)["channels"]
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(train), size=min(len(train), MAX_PERCENTILE_IMAGES), replace=False))
    sample = np.stack([train.image(int(i)) for i in pick]) if len(pick) else np.zeros((0, len(channels), 1, 1))
    return band_mapping(channels, cfg.rgb_bands, sample, cfg.rgb_percentiles)


def score_baselines(
    backend: ClipBackend,
    cache_dir: str | Path,
    manifest: Manifest,
    domain_cfg: ZeroshotDomain,
    prompts: PromptSet,
    *,
    scoring: ScoringMode,
    probe: LinearProbeConfig,
    batch_size: int,
    seed: int,
    embedding_root: str | Path | None,
) -> BaselineScores:
    """Score val and test with CLIP zero-shot and (``probe.enabled``) the linear probe."""
    splits = (*EVAL_SPLITS, "train") if probe.enabled else EVAL_SPLITS
    datasets = {s: CacheDataset(cache_dir, s, manifest=manifest) for s in ("train", *EVAL_SPLITS)}
    rgb = rgb_mapping(domain_cfg, cache_dir, datasets["train"], seed)
    cache = EmbeddingCache(embedding_root, cache_key(backend, rgb, manifest.digest())) if embedding_root else None

    t0 = time.perf_counter()
    emb, reused = split_embeddings(backend, {s: datasets[s] for s in splits}, rgb, batch_size, cache)
    t1 = time.perf_counter()
    texts = prompts.texts()
    text_emb = backend.encode_texts(texts).float().numpy()  # (T, D), once per run
    pos, neg = label_embeddings(prompts, texts, text_emb)
    t2 = time.perf_counter()

    result = BaselineScores(
        ids={s: datasets[s].ids for s in EVAL_SPLITS},
        targets={s: datasets[s].labels for s in EVAL_SPLITS},
        scores={CLIP_ZEROSHOT: {s: zero_shot_scores(scoring, emb[s], pos, neg, backend.logit_scale)
                                for s in EVAL_SPLITS}},
        info={CLIP_ZEROSHOT: {**backend.describe(), "scoring": scoring, "prompt_hash": prompts.digest(),
                              "n_prompts": len(texts), "rgb": rgb.spec(),
                              "labels_with_default_prompts": list(prompts.defaulted)}},
        reused=reused,
    )
    if probe.enabled:
        fitted = fit_linear_probe(emb["train"], datasets["train"].labels, C=probe.C, k_shot=probe.k_shot,
                                  seed=seed, max_iter=probe.max_iter)
        result.scores[LINEAR_PROBE] = {s: fitted.predict(emb[s]) for s in EVAL_SPLITS}
        names = manifest.label_names
        result.info[LINEAR_PROBE] = {
            **{k: v for k, v in backend.describe().items() if k != "logit_scale"}, "rgb": rgb.spec(),
            "classifier": "sklearn LogisticRegression, one per label", "C": probe.C, "k_shot": probe.k_shot,
            "n_train_per_label": dict(zip(names, fitted.n_train.tolist())),
            "constant_labels": {names[j]: float(fitted.constant[j]) for j in fitted.constant_labels},
        }
        if fitted.constant_labels:
            log.warning("linear probe: labels %s have one class in train; scored by their train prevalence",
                        [names[j] for j in fitted.constant_labels])
    result.timings = {"embed_s": t1 - t0, "text_s": t2 - t1, "score_s": time.perf_counter() - t2}
    return result
