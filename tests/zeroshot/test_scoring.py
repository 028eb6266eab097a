"""Prompt ensembling and zero-shot scoring against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medvit.zeroshot.prompts import LabelPrompts, PromptSet
from medvit.zeroshot.scoring import chexzero_scores, cosine_scores, ensemble, label_embeddings, zero_shot_scores


def test_ensemble_averages_normalised_embeddings_then_renormalises() -> None:
    # (3, 2) prompt embeddings of different norms; group {0, 1} and {2}
    t = np.array([[3.0, 0.0], [0.0, 0.5], [0.0, -2.0]])
    e = ensemble(t, [[0, 1], [2]])
    # by hand: unit vectors (1,0) and (0,1) -> mean (0.5,0.5) -> (1/sqrt2, 1/sqrt2); (0,-1) alone
    s = 1 / math.sqrt(2)
    np.testing.assert_allclose(e, [[s, s], [0.0, -1.0]], atol=1e-12)


def test_chexzero_is_a_two_way_softmax_scaled_by_logit_scale() -> None:
    img = np.array([[2.0, 0.0], [0.6, 0.8]])  # norms 2 and 1
    pos = np.array([[1.0, 0.0]])
    neg = np.array([[0.0, 1.0]])
    s = chexzero_scores(img, pos, neg, logit_scale=10.0)
    # image 0: cos_pos 1, cos_neg 0 -> e^10 / (e^10 + e^0); image 1: cos 0.6 vs 0.8 -> e^6 / (e^6 + e^8)
    want = [[math.exp(10) / (math.exp(10) + 1)], [math.exp(6) / (math.exp(6) + math.exp(8))]]
    np.testing.assert_allclose(s, want, rtol=1e-12)
    big = chexzero_scores(img, pos, neg, logit_scale=1e4)  # no overflow at large scales
    assert np.isfinite(big).all() and big[0, 0] == pytest.approx(1.0)


def test_cosine_maps_similarity_to_unit_interval() -> None:
    img = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 3.0]])
    pos = np.array([[1.0, 0.0], [0.6, 0.8]])
    s = cosine_scores(img, pos)
    np.testing.assert_allclose(s, [[1.0, 0.8], [0.0, 0.2], [0.5, 0.9]], atol=1e-12)


def test_label_embeddings_and_scores_from_a_prompt_set() -> None:
    ps = PromptSet("medical", (
        LabelPrompts("a", "a", ("A1", "A2"), ("noA",)),
        LabelPrompts("b", "b", ("B1",), ("noB", "noB2")),
    ), ())
    texts = ps.texts()
    assert texts == ["A1", "A2", "noA", "B1", "noB", "noB2"]
    emb = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 2], [4, 0, 0], [0, 4, 0]], dtype=float)
    pos, neg = label_embeddings(ps, texts, emb)
    s = 1 / math.sqrt(2)
    np.testing.assert_allclose(pos, [[s, s, 0], [0, 0, 1]], atol=1e-12)
    np.testing.assert_allclose(neg, [[0, 0, 1], [s, s, 0]], atol=1e-12)
    img = np.array([[1.0, 1.0, 0.0]])
    # label a: cos_pos 1, cos_neg 0 ; label b: cos_pos 0, cos_neg 1 ; scale 2
    p = zero_shot_scores("chexzero", img, pos, neg, 2.0)
    np.testing.assert_allclose(p, [[1 / (1 + math.exp(-2)), 1 / (1 + math.exp(2))]], rtol=1e-12)
    np.testing.assert_allclose(zero_shot_scores("cosine", img, pos, neg, 2.0), [[1.0, 0.5]], atol=1e-12)
