"""Unknown (NaN) targets through training: masked losses, MixUp, loaders, validation, and a real fine-tune."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from medvit.data.cache import read_stats
from medvit.data.manifest import label_column, read_manifest
from medvit.train.distributed import DistInfo
from medvit.train.loop import evaluate, fit
from medvit.train.loss import AsymmetricLoss, BCELoss, build_loss, pos_weight_from
from medvit.train.mixup import mix_batch
from medvit.train.setup import build_training

INFO = DistInfo()
IDENTITY = {"params_hash": "p1", "data_hash": "d1", "world_size": 1}
LOSSES = {
    "bce": lambda pw: BCELoss(pw),
    "asymmetric": lambda pw: AsymmetricLoss(gamma_neg=2.0, gamma_pos=1.0, clip=0.05, pos_weight=pw),
}


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(6, 4, generator=g) * 2
    y = (torch.rand(6, 4, generator=g) > 0.5).float()
    known = torch.rand(6, 4, generator=g) > 0.3
    return logits, y, known


def _loss_and_grad(loss_fn: torch.nn.Module, logits: torch.Tensor, targets: torch.Tensor,
                   known: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    x = logits.clone().requires_grad_(True)
    loss = loss_fn(x, targets, known) if known is not None else loss_fn(x, targets)
    loss.backward()
    return loss.detach(), x.grad


@pytest.mark.parametrize("kind", sorted(LOSSES))
def test_a_masked_entry_changes_nothing_whatever_its_value(kind: str) -> None:
    logits, y, known = _batch()
    loss_fn = LOSSES[kind](torch.tensor([1.0, 2.0, 3.0, 0.5]))
    results = []
    for fill in (0.0, 1.0, float("nan")):
        results.append(_loss_and_grad(loss_fn, logits, torch.where(known, y, torch.tensor(fill)), known))
    # NaN alone (no explicit mask) is the same mask
    results.append(_loss_and_grad(loss_fn, logits, torch.where(known, y, torch.tensor(float("nan")))))
    for loss, grad in results[1:]:
        assert torch.equal(loss, results[0][0]) and torch.equal(grad, results[0][1])
    loss, grad = results[-1]
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    assert (grad[~known] == 0).all()
    if kind == "bce":  # (ASL gives easy negatives no gradient at all)
        assert (grad[known] != 0).all()
    # and the logits of masked entries do not matter either
    moved = torch.where(known, logits, torch.tensor(50.0))
    assert torch.allclose(_loss_and_grad(loss_fn, moved, torch.where(known, y, torch.tensor(float("nan"))))[0], loss)


def test_masked_bce_is_the_mean_over_known_entries() -> None:
    logits, y, known = _batch(1)
    pw = torch.tensor([1.0, 2.0, 5.0, 0.5])
    targets = torch.where(known, y, torch.tensor(float("nan")))
    got = build_loss("bce", pw)(logits, targets)
    per = -(pw * y * F.logsigmoid(logits) + (1 - y) * F.logsigmoid(-logits))
    assert torch.allclose(got, per[known].mean(), atol=1e-6)
    assert not torch.allclose(got, per.mean())  # not the mean over all entries
    # without unknowns: the plain mean, as before
    assert torch.allclose(build_loss("bce", pw)(logits, y), per.mean(), atol=1e-6)


def test_masked_asymmetric_loss_is_the_mean_over_known_entries() -> None:
    logits, y, known = _batch(2)
    targets = torch.where(known, y, torch.tensor(float("nan")))
    plain = AsymmetricLoss(gamma_neg=0.0, gamma_pos=0.0, clip=0.0)
    assert torch.allclose(plain(logits, targets),
                          F.binary_cross_entropy_with_logits(logits[known], y[known]), atol=1e-5)


@pytest.mark.parametrize("kind", sorted(LOSSES))
def test_a_batch_without_known_entries_gives_zero_loss_and_zero_gradient(kind: str) -> None:
    logits, _, _ = _batch(3)
    loss, grad = _loss_and_grad(LOSSES[kind](None), logits, torch.full_like(logits, float("nan")))
    assert loss.item() == 0.0 and torch.equal(grad, torch.zeros_like(grad))


def test_pos_weight_counts_known_entries_only() -> None:
    nan = np.nan
    y = np.array([[1, 0, nan], [0, nan, 1], [0, 0, nan], [nan, 1, 1], [0, nan, 0]], np.float32)
    # label 0: 1 pos, 3 known neg -> 3; label 1: 1 pos / 2 neg -> 2; label 2: 2 pos / 1 neg -> 0.5
    assert torch.allclose(pos_weight_from(y), torch.tensor([3.0, 2.0, 0.5]))
    # an unknown entry is neither: filling it with 0 changes the weight
    assert not torch.allclose(pos_weight_from(np.nan_to_num(y, nan=0.0)), pos_weight_from(y))
    assert pos_weight_from(np.full((3, 1), nan), max_weight=50.0).item() == 1.0  # nothing known: neutral weight


@pytest.mark.parametrize("alphas", [(0.4, 0.0), (0.0, 1.0)])
def test_mixup_keeps_a_target_unknown_when_either_source_is(alphas: tuple[float, float]) -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(6, 1, 8, 8, generator=g)
    y = (torch.rand(6, 3, generator=g) > 0.5).float()
    y[1, 0] = y[4, 2] = float("nan")
    _, mixed = mix_batch(images, y, alphas[0], alphas[1], g)
    expect_unknown = torch.isnan(y) | torch.isnan(y.flip(0))
    assert torch.equal(torch.isnan(mixed), expect_unknown)
    assert ((mixed[~expect_unknown] >= 0) & (mixed[~expect_unknown] <= 1)).all()
    x = torch.randn(6, 3, requires_grad=True)
    build_loss("bce", None)(x, mixed).backward()
    assert torch.isfinite(x.grad).all() and (x.grad[expect_unknown] == 0).all()


# ----------------------------------------------------------------------------- on a real cache
def _hide_labels(cache: Path, fraction: float, seed: int = 0) -> np.ndarray:
    """Blank ``fraction`` of the manifest's label cells (unknown), as ingest writes an ignored entry."""
    m = read_manifest(cache)
    cols = [label_column(n) for n in m.label_names]
    frame = m.frame.copy()
    frame[cols] = frame[cols].astype("float64")
    hide = np.random.default_rng(seed).random((len(frame), len(cols))) < fraction
    frame[cols] = frame[cols].mask(hide)
    frame.to_csv(m.path, index=False)  # NaN is written as an empty cell
    assert pd.read_csv(m.path)[cols].isna().to_numpy().sum() == hide.sum()
    return hide


def _setup(cache: Path, cfg):  # noqa: ANN001, ANN202
    return build_training(cfg, "medical", cache, read_manifest(cache), read_stats(cache), INFO)


def test_loaders_carry_unknown_targets_through(tiny_cache, tiny_cfg) -> None:
    cache = tiny_cache()
    hide = _hide_labels(cache, 0.15)
    m = read_manifest(cache)
    s = _setup(cache, tiny_cfg(epochs=1))
    train_rows = (m.frame["split"] == "train").to_numpy()
    batch = next(iter(torch.utils.data.DataLoader(s.train, batch_size=len(s.train), shuffle=False)))
    assert batch["labels"].dtype == torch.float32
    assert torch.equal(torch.isnan(batch["labels"]), torch.from_numpy(hide[train_rows]))
    known = ~torch.isnan(batch["labels"])
    assert torch.equal(batch["labels"][known], torch.from_numpy(m.labels("train"))[known])
    # the pos_weight the loss was built with counts known train entries only
    assert torch.allclose(s.loss.pos_weight.cpu(), pos_weight_from(m.labels("train")))


def test_validation_masks_unknown_targets(tiny_cache, tiny_cfg, tmp_path: Path) -> None:
    cache = tiny_cache()
    _hide_labels(cache, 0.2, seed=1)
    cfg = tiny_cfg(epochs=1)
    s = _setup(cache, cfg)
    fit(s.model, s.train, s.val, cfg, s.loss, info=INFO, ckpt_dir=tmp_path / "ck", identity=IDENTITY)
    metrics, scores = evaluate(s.model, s.val, s.loss, 8, INFO, "val/")
    y = read_manifest(cache).labels("val")
    assert np.isnan(y).any() and np.isfinite(metrics["val/loss"])
    expected = np.mean([roc_auc_score(y[k, j], scores[k, j]) for j in range(y.shape[1])
                        for k in [np.isfinite(y[:, j])] if len(set(y[k, j])) == 2])
    assert metrics["val/auroc_macro"] == pytest.approx(expected)


def test_masked_training_learns_on_the_sample(tiny_cache, tiny_cfg, tmp_path: Path) -> None:
    """~10 % unknown labels: training on the known ones still learns the quadrant signal."""
    cache = tiny_cache(n_groups=40)
    hide = _hide_labels(cache, 0.10, seed=2)
    assert 0.05 < hide.mean() < 0.15
    cfg = tiny_cfg(epochs=6, freeze_blocks=0, lr=0.003, head={"hidden_dim": 32, "dropout": 0.0})
    s = _setup(cache, cfg)
    before = evaluate(s.model, s.val, s.loss, 8, INFO, "val/")[0]["val/auroc_macro"]
    result = fit(s.model, s.train, s.val, cfg, s.loss, info=INFO, ckpt_dir=tmp_path / "ck", identity=IDENTITY)
    assert all(np.isfinite(h["train/loss"]) and np.isfinite(h["val/loss"]) for h in result.history)
    assert all(torch.isfinite(v).all() for v in result.best_state.values())
    assert result.best_metric > 0.8 and result.best_metric > before + 0.1, (before, result.history)
