"""Zero-shot multi-label scores from image and prompt embeddings (pure numpy).

* ``ensemble``: a label's prompts -> mean of their L2-normalised text embeddings, renormalised
  (the prompt ensembling of Radford et al. 2021, sec. 3.1.4).
* ``chexzero_scores``: per label, a softmax over [positive, negative] similarities scaled by
  the model's logit scale, returning P(positive) (Tiu et al. 2022, CheXzero). Each label is
  an independent two-way choice, so labels do not compete as in a softmax over classes.
* ``cosine_scores``: plain cosine similarity to the positive ensemble mapped to [0, 1] by
  ``(cos + 1) / 2``; it ranks images per label (AUROC) but is not calibrated.
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np

from medvit.zeroshot.embed import l2_normalize
from medvit.zeroshot.prompts import PromptSet

ScoringMode = Literal["chexzero", "cosine"]


def ensemble(text_emb: np.ndarray, groups: Sequence[Sequence[int]]) -> np.ndarray:
    """(T, D) prompt embeddings and index groups -> (G, D) unit-norm ensemble embeddings."""
    unit = l2_normalize(np.asarray(text_emb, dtype=np.float64))
    return l2_normalize(np.stack([unit[list(g)].mean(axis=0) for g in groups]))


def label_embeddings(prompts: PromptSet, texts: Sequence[str], text_emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(L, D) positive and (L, D) negative ensemble embeddings, from embeddings of ``texts``."""
    index = {t: i for i, t in enumerate(texts)}
    pos = ensemble(text_emb, [[index[t] for t in p.positive] for p in prompts.labels])
    neg = ensemble(text_emb, [[index[t] for t in p.negative] for p in prompts.labels])
    return pos, neg


def chexzero_scores(image_emb: np.ndarray, pos: np.ndarray, neg: np.ndarray, logit_scale: float) -> np.ndarray:
    """(N, L) P(positive) = softmax([s * cos_pos, s * cos_neg])[0] per label."""
    img = l2_normalize(np.asarray(image_emb, dtype=np.float64))
    logits = np.stack([logit_scale * img @ pos.T, logit_scale * img @ neg.T], axis=-1)  # (N, L, 2)
    logits -= logits.max(axis=-1, keepdims=True)  # stable softmax
    e = np.exp(logits)
    return e[..., 0] / e.sum(axis=-1)


def cosine_scores(image_emb: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """(N, L) (cos(image, positive ensemble) + 1) / 2, in [0, 1]."""
    img = l2_normalize(np.asarray(image_emb, dtype=np.float64))
    return np.clip((img @ pos.T + 1.0) / 2.0, 0.0, 1.0)


def zero_shot_scores(mode: ScoringMode, image_emb: np.ndarray, pos: np.ndarray, neg: np.ndarray,
                     logit_scale: float) -> np.ndarray:
    """(N, L) scores in [0, 1] by ``mode``."""
    if mode == "chexzero":
        return chexzero_scores(image_emb, pos, neg, logit_scale)
    if mode == "cosine":
        return cosine_scores(image_emb, pos)
    raise ValueError(f"unknown scoring mode {mode!r}; expected chexzero or cosine")
