"""Unknown (NaN) targets in evaluate: thresholds, calibration, bootstrap, curves, report, card and tags."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from medvit.config import EvaluateConfig
from medvit.evaluate import report
from medvit.evaluate.bootstrap import group_weights, model_stats
from medvit.evaluate.calibration import ece, ece_per_label, reliability_bins
from medvit.evaluate.gate import apply_gate
from medvit.evaluate.plots import pr_frame, roc_frame
from medvit.evaluate.thresholds import choose_threshold, choose_thresholds
from medvit.tracking import card, registry

NAMES = ["a", "b", "c"]


def _case(seed: int = 0, n: int = 90, fraction: float = 0.15):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, 3)) < 0.4).astype(float)
    s = np.clip(0.45 * y + 0.6 * rng.random(y.shape), 0, 1)
    hide = rng.random(y.shape) < fraction
    return np.where(hide, np.nan, y), s, hide, rng


def _scrambled(s: np.ndarray, hide: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The same scores with every masked entry replaced by a random one."""
    return np.where(hide, rng.random(s.shape), s)


@pytest.mark.parametrize("method", ["youden", "f1", "sensitivity"])
def test_thresholds_are_chosen_on_known_val_rows(method: str) -> None:
    y, s, hide, rng = _case(1)
    got, fallback = choose_thresholds(y, s, NAMES, method, 0.8)
    assert fallback == []
    for j in range(3):
        k = ~hide[:, j]
        assert got[j] == choose_threshold(y[k, j], s[k, j], method, 0.8)
    np.testing.assert_array_equal(choose_thresholds(y, _scrambled(s, hide, rng), NAMES, method, 0.8)[0], got)
    # a label whose known val rows have one class falls back
    y[:, 2] = np.where(hide[:, 2], np.nan, 0.0)
    assert choose_thresholds(y, s, NAMES, method)[1] == ["c"]


def test_calibration_bins_hold_known_entries_only() -> None:
    y, s, hide, rng = _case(2)
    known = ~hide
    assert ece(y, s) == pytest.approx(ece(y[known], s[known]))
    assert reliability_bins(y, s, 10)["count"].sum() == known.sum()
    np.testing.assert_allclose(ece_per_label(y, s), [ece(y[known[:, j], j], s[known[:, j], j]) for j in range(3)])
    assert ece(y, _scrambled(s, hide, rng)) == ece(y, s)
    assert np.isnan(ece(np.full(4, np.nan), np.full(4, 0.5)))  # nothing known: undefined, not 0


def test_bootstrap_replicates_mask_unknown_targets() -> None:
    y, s, hide, rng = _case(3)
    groups = [f"g{i // 3}" for i in range(len(y))]
    w = group_weights(groups, 50, seed=0)
    thr = np.full(3, 0.5)
    st = model_stats(y, s, thr, w, 0.9)
    for j in range(3):
        k = ~hide[:, j]
        assert st.label["auroc"][j] == pytest.approx(roc_auc_score(y[k, j], s[k, j]))
        assert st.label["n_known"][j] == k.sum()
        assert st.label["prevalence"][j] == pytest.approx(y[k, j].mean())
        for b in (0, 17, 49):
            assert st.label_samples["auroc"][b, j] == pytest.approx(
                roc_auc_score(y[k, j], s[k, j], sample_weight=w[b, k]))
    assert np.isfinite(st.summary_samples["auroc_macro"]).all()
    other = model_stats(y, _scrambled(s, hide, rng), thr, w, 0.9)
    for a, b in ((st.label, other.label), (st.label_samples, other.label_samples),
                 (st.summary_samples, other.summary_samples)):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    assert other.summary == st.summary


def test_curves_use_known_rows() -> None:
    y, s, hide, _ = _case(4)
    roc = roc_frame(y, {"m": s}, NAMES)
    k = ~hide[:, 0]
    fpr, tpr, _ = roc_curve(y[k, 0], s[k, 0])
    got = roc[roc["label"] == "a"]
    np.testing.assert_allclose(got["fpr"], fpr, atol=1e-6)
    np.testing.assert_allclose(got["tpr"], tpr, atol=1e-6)
    pr = pr_frame(y, {"m": s}, NAMES)
    assert pr["precision"].notna().all() and set(pr["label"]) == set(NAMES)


def _evaluation(n_bootstrap: int = 30):  # noqa: ANN202
    y, s, hide, rng = _case(5)
    y[:, 2] = np.where(np.arange(len(y)) % 4 == 0, 1.0, np.nan)  # label c: only positives are known
    groups = [f"g{i // 2}" for i in range(len(y))]
    scores = {"finetune": s, "clip_zeroshot": rng.random(s.shape)}
    ev = report.evaluate(NAMES, y, y, groups, scores, scores, EvaluateConfig(n_bootstrap=n_bootstrap))
    return ev, y, s


def test_report_shows_known_counts_and_skips_one_class_labels() -> None:
    ev, y, s = _evaluation()
    n_known = np.isfinite(y).sum(axis=0)
    metrics = report.metrics_json(ev)
    assert [metrics[f"test/{n}/n_known"] for n in NAMES] == n_known.tolist()
    assert metrics["test/n_unknown"] == int(np.isnan(y).sum()) and metrics["test/n_samples"] == len(y)
    assert ev.skipped_test == ["c"] and metrics["test/n_labels_skipped"] == 1 and "test/c/auroc" not in metrics
    k = np.isfinite(y[:, 0])
    assert k.sum() < len(y) and metrics["test/a/auroc"] == pytest.approx(roc_auc_score(y[k, 0], s[k, 0]))
    table = report.label_table(ev)
    assert table[table["model"] == "finetune"]["n_known"].tolist() == n_known.tolist()
    thr = report.thresholds_json(ev)
    assert thr["n_known_val"] == dict(zip(NAMES, n_known.tolist())) and thr["fallback_labels"] == ["c"]
    md = report.comparison_markdown(ev, "t")
    assert "| label | known (test) | prevalence (test) |" in md
    assert f"| a | {n_known[0]}/{len(y)} |" in md
    assert "skipped: one class among known test rows" in md
    assert f"{int(np.isnan(y).sum())} unknown (ignored uncertain/blank) test label(s) are masked" in md
    assert "single class among the known test rows, left out of every macro average: c" in md


def test_card_and_version_tags_show_the_unknown_count() -> None:
    ev, y, _ = _evaluation()
    metrics = report.metrics_json(ev)
    ft = {k: v for k, v in metrics.items() if not isinstance(v, dict)}
    baselines = {k: v for k, v in metrics.items() if isinstance(v, dict)}
    gate = apply_gate(ft, baselines, 0.5, -1.0)
    meta = {"model": "m", "label_names": NAMES, "weights": "hub:x"}
    md = card.render_card(registered_model="medvit-medical", domain="medical", meta=meta, finetune_metrics=ft,
                          baseline_metrics=baselines, thresholds=[0.5] * 3, threshold_method="youden",
                          gate=gate.to_dict(), weights_sha256="0" * 64, git_commit="abc", onnx_opset=None)
    n_known = np.isfinite(y).sum(axis=0)
    assert "| label | threshold | known test labels |" in md
    assert f"| a | 0.5000 | {n_known[0]} |" in md
    assert f"- {int(np.isnan(y).sum())} test label(s) were unknown" in md
    tags = registry.metric_tags(ft, baselines)
    assert tags["test/n_unknown"] == str(int(np.isnan(y).sum()))
    # without unknowns the card says nothing about them
    ft_known = {**ft, "test/n_unknown": 0}
    md2 = card.render_card(registered_model="medvit-medical", domain="medical", meta=meta,
                           finetune_metrics=ft_known, baseline_metrics=baselines, thresholds=[0.5] * 3,
                           threshold_method="youden", gate=gate.to_dict(), weights_sha256="0" * 64,
                           git_commit="abc", onnx_opset=None)
    assert "were unknown" not in md2
