"""Weighted ranking and threshold metrics against scikit-learn and hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score, roc_auc_score, roc_curve

from medvit.metrics import (
    label_ranking_metrics,
    micro_ranking_metrics,
    per_label,
    ranking_metrics,
    sensitivity_at_specificity,
    summary,
    threshold_metrics,
    valid_labels,
)


def _sens_at_spec_sklearn(y: np.ndarray, s: np.ndarray, w: np.ndarray, spec: float) -> float:
    fpr, tpr, _ = roc_curve(y, s, sample_weight=w, drop_intermediate=False)
    return float(tpr[fpr <= 1 - spec + 1e-12].max())


@pytest.mark.parametrize("ties", [False, True])
def test_weighted_ranking_metrics_match_sklearn_sample_weight(ties: bool) -> None:
    rng = np.random.default_rng(1)
    y = (rng.random(400) < 0.3).astype(float)
    s = rng.random(400) + 0.4 * y
    if ties:
        s = np.round(s, 1)  # many tied scores across classes
    w = rng.integers(0, 4, size=(6, 400)).astype(float)
    r = ranking_metrics(y, s, w, fixed_specificity=0.8)
    for b in range(6):
        assert r["auroc"][b] == pytest.approx(roc_auc_score(y, s, sample_weight=w[b]), abs=1e-12)
        assert r["ap"][b] == pytest.approx(average_precision_score(y, s, sample_weight=w[b]), abs=1e-12)
        assert r["sens_at_spec"][b] == pytest.approx(_sens_at_spec_sklearn(y, s, w[b], 0.8), abs=1e-12)


def test_integer_weights_equal_duplicated_rows() -> None:
    rng = np.random.default_rng(2)
    y = (rng.random(50) < 0.5).astype(float)
    s = rng.random(50)
    w = rng.integers(0, 3, size=50)
    r = ranking_metrics(y, s, w[None].astype(float))
    yy, ss = np.repeat(y, w), np.repeat(s, w)
    assert r["auroc"][0] == pytest.approx(roc_auc_score(yy, ss))
    assert r["ap"][0] == pytest.approx(average_precision_score(yy, ss))


def test_ranking_metrics_by_hand() -> None:
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8])
    r = ranking_metrics(y, s, np.ones((1, 4)), fixed_specificity=0.5)
    assert r["auroc"][0] == pytest.approx(3 / 4)  # 0.35 loses to 0.4; the other 3 pairs are won
    assert r["ap"][0] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)  # precision 1 at recall .5, 2/3 at recall 1
    assert r["sens_at_spec"][0] == pytest.approx(1.0)  # threshold 0.35: one false positive of two
    strict = ranking_metrics(y, s, np.ones((1, 4)), fixed_specificity=0.9)
    assert strict["sens_at_spec"][0] == pytest.approx(0.5)  # no false positive allowed: only 0.8
    tied = ranking_metrics(np.array([0, 1]), np.array([0.5, 0.5]), np.ones((1, 2)))
    assert tied["auroc"][0] == pytest.approx(0.5)


def test_ranking_metrics_nan_when_a_resample_has_one_class() -> None:
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.4])
    w = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=float)
    r = ranking_metrics(y, s, w)
    assert r["auroc"][0] == 1.0 and np.isnan(r["auroc"][1]) and np.isnan(r["ap"][1])


def test_threshold_metrics_by_hand_and_vs_sklearn() -> None:
    y = np.array([[1], [1], [0], [0], [0]])
    s = np.array([[0.9], [0.4], [0.6], [0.2], [0.1]])
    r = threshold_metrics(y, s, np.array([0.5]))
    # TP=1 (0.9), FN=1 (0.4), FP=1 (0.6), TN=2
    assert r["sensitivity"][0, 0] == pytest.approx(0.5)
    assert r["specificity"][0, 0] == pytest.approx(2 / 3)
    assert r["ppv"][0, 0] == pytest.approx(0.5)
    assert r["f1"][0, 0] == pytest.approx(0.5)
    rng = np.random.default_rng(3)
    y = (rng.random((200, 3)) < 0.4).astype(float)
    s = rng.random((200, 3))
    thr = np.array([0.3, 0.5, 0.7])
    w = rng.integers(0, 3, size=(2, 200)).astype(float)
    r = threshold_metrics(y, s, thr, w)
    for b in range(2):
        for j in range(3):
            pred = s[:, j] >= thr[j]
            assert r["f1"][b, j] == pytest.approx(f1_score(y[:, j], pred, sample_weight=w[b]))
            assert r["sensitivity"][b, j] == pytest.approx(recall_score(y[:, j], pred, sample_weight=w[b]))
            assert r["ppv"][b, j] == pytest.approx(precision_score(y[:, j], pred, sample_weight=w[b]))
            assert r["specificity"][b, j] == pytest.approx(recall_score(1 - y[:, j], ~pred, sample_weight=w[b]))


def test_sensitivity_at_specificity_per_label() -> None:
    y = np.array([[0, 1], [0, 0], [1, 1], [1, 0]])
    s = np.array([[0.1, 0.9], [0.4, 0.1], [0.35, 0.8], [0.8, 0.3]])
    out = sensitivity_at_specificity(y, s, 0.5)
    assert out == pytest.approx([1.0, 1.0])


def test_single_class_label_is_reported_and_left_out_of_macro() -> None:
    rng = np.random.default_rng(4)
    y = (rng.random((60, 3)) < 0.5).astype(float)
    y[:, 1] = 0  # label 1 has no positives in this split
    s = rng.random((60, 3))
    pl = per_label(y, s)
    assert np.isnan(pl["auroc"][1]) and np.isnan(pl["ap"][1])
    out = summary(y, s, prefix="test/")
    assert out["test/n_labels_skipped"] == 1
    expected = np.mean([roc_auc_score(y[:, 0], s[:, 0]), roc_auc_score(y[:, 2], s[:, 2])])
    assert out["test/auroc_macro"] == pytest.approx(expected)
    assert out["test/auroc_micro"] == pytest.approx(roc_auc_score(y.ravel(), s.ravel()))
    assert all(np.isfinite(v) for v in out.values())


# ----------------------------------------------------------------------------- the one list of metric names
_CONSUMERS = '''
import json, sys
import numpy as np
import medvit.metrics as mm
extra = sys.argv[1]
if extra:  # a new metric: one entry in the list; threshold_metrics already computes ppv
    mm.METRICS = mm.METRICS + (mm.Metric(extra, "PPV @ thr", headline=True),)
from medvit.config import EvaluateConfig
from medvit.evaluate import report
from medvit.evaluate.gate import apply_gate
from medvit.tracking import card, registry

rng = np.random.default_rng(0)
y = (rng.random((80, 3)) < 0.4).astype(float)
scores = {"finetune": np.clip(0.5 * y + 0.6 * rng.random(y.shape), 0, 1), "clip_zeroshot": rng.random(y.shape)}
ev = report.evaluate(["a", "b", "c"], y, y, [f"g{i // 2}" for i in range(80)], scores, scores,
                     EvaluateConfig(n_bootstrap=20))
metrics = report.metrics_json(ev)
ft = {k: v for k, v in metrics.items() if not isinstance(v, dict)}
baselines = {k: v for k, v in metrics.items() if isinstance(v, dict)}
gate = apply_gate(ft, baselines, 0.5, -1.0)
meta = {"model": "m", "label_names": ["a", "b", "c"], "weights": "hub:x"}
tags = registry.version_tags(meta, finetune=ft, baselines=baselines, threshold_method="youden", gate_passed=True,
                             gate_reason=gate.summary(), weights_sha="0" * 64, thresholds_sha="1" * 64,
                             git_commit="abc", run_id="r", onnx_opset=None, onnx_diff=None)
md = card.render_card(registered_model="medvit-medical", domain="medical", meta=meta, finetune_metrics=ft,
                      baseline_metrics=baselines, thresholds=[0.5] * 3, threshold_method="youden",
                      gate=gate.to_dict(), weights_sha256="0" * 64, git_commit="abc", onnx_opset=None)
print(json.dumps({"list": [[m.name, m.micro, m.bootstrap, m.paired, m.headline] for m in mm.METRICS],
                  "metrics": metrics, "columns": list(report.label_table(ev).columns), "tags": tags,
                  "table": report.summary_rows(ev)[0], "card": md}))
'''


def _consumers(extra: str = "") -> dict:
    """Run the report, the gate, the registry tags and the card in a fresh interpreter (optionally with a
    metric added to ``METRICS`` before any consumer is imported) and return what they produced."""
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _CONSUMERS, extra], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.mark.parametrize("extra", ["", "ppv"])
def test_every_listed_metric_reaches_report_bootstrap_tags_and_card(extra: str) -> None:
    got = _consumers(extra)
    metrics, tags, card = got["metrics"], got["tags"], got["card"]
    assert ("ppv" in [m[0] for m in got["list"]]) == bool(extra)
    card_header = next(line for line in card.splitlines() if line.startswith("| model |"))
    card_columns = [c.strip() for c in card_header.strip("|").split("|")]
    for name, micro, boot, paired, headline in got["list"]:
        summaries = [f"{name}_macro"] + ([f"{name}_micro"] if micro else [])
        for s in summaries:
            assert f"test/{s}" in metrics and f"test/{s}" in tags  # metrics.json and the version tags
            if boot:  # bootstrap CIs
                assert f"test/{s}_ci_low" in metrics and f"test/{s}_ci_high" in tags
            if headline:  # model card table and baseline tags
                assert s in card_columns
                assert f"baseline/clip_zeroshot/test/{name}_macro" in tags
        assert f"test/a/{name}" in metrics and name in got["columns"]  # per label: metrics.json and per_label.csv
        if boot:
            assert f"{name}_ci_low" in got["columns"] and f"test/a/{name}_ci_low" in metrics
        if paired:
            assert f"test/{name}_macro_diff" in metrics["clip_zeroshot"]
            assert f"{name}_macro vs clip_zeroshot" in card
    if extra:
        assert "PPV @ thr [95% CI]" in got["table"]


# ----------------------------------------------------------------------------- unknown (NaN) targets are masked
def _masked_case(seed: int = 5, n: int = 80, labels: int = 3, fraction: float = 0.15):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, labels)) < 0.4).astype(float)
    s = np.clip(0.4 * y + 0.7 * rng.random(y.shape), 0, 1)
    hide = rng.random(y.shape) < fraction
    return np.where(hide, np.nan, y), s, hide, rng


def test_unknown_targets_are_left_out_of_per_label_and_micro_metrics() -> None:
    y, s, hide, rng = _masked_case()
    pl, out = per_label(y, s), summary(y, s)
    for j in range(y.shape[1]):
        k = ~hide[:, j]
        assert pl["auroc"][j] == pytest.approx(roc_auc_score(y[k, j], s[k, j]))
        assert pl["ap"][j] == pytest.approx(average_precision_score(y[k, j], s[k, j]))
        assert pl["prevalence"][j] == pytest.approx(y[k, j].mean()) and pl["n_known"][j] == k.sum()
    known = ~hide.ravel()
    assert out["auroc_micro"] == pytest.approx(roc_auc_score(y.ravel()[known], s.ravel()[known]))
    assert out["ap_micro"] == pytest.approx(average_precision_score(y.ravel()[known], s.ravel()[known]))
    # the score of a masked entry changes nothing
    s2 = np.where(hide, rng.random(s.shape), s)
    assert summary(y, s2) == out
    for k, v in per_label(y, s2).items():
        np.testing.assert_array_equal(v, pl[k])


def test_a_label_with_one_class_among_known_rows_is_skipped() -> None:
    y, s, _, _ = _masked_case(6)
    y[:, 1] = np.where(np.arange(len(y)) % 3 == 0, 1.0, np.nan)  # known rows are all positive
    assert list(valid_labels(y)) == [True, False, True]
    assert summary(y, s)["n_labels_skipped"] == 1 and np.isnan(per_label(y, s)["auroc"][1])
    assert valid_labels(np.nan_to_num(y))[1]  # had unknown meant negative, it would have counted


def test_weighted_label_and_micro_ranking_metrics_mask_unknown_rows() -> None:
    y, s, hide, rng = _masked_case(7)
    w = rng.integers(0, 4, size=(5, len(y))).astype(float)
    per = label_ranking_metrics(y, s, w, 0.8)
    micro = micro_ranking_metrics(y, s, w, 0.8)
    for b in range(5):
        for j in range(y.shape[1]):
            k = ~hide[:, j]
            assert per["auroc"][b, j] == pytest.approx(roc_auc_score(y[k, j], s[k, j], sample_weight=w[b, k]))
            assert per["ap"][b, j] == pytest.approx(
                average_precision_score(y[k, j], s[k, j], sample_weight=w[b, k]))
            assert per["sens_at_spec"][b, j] == pytest.approx(_sens_at_spec_sklearn(y[k, j], s[k, j], w[b, k], 0.8))
        known = ~hide.ravel()
        flat_w = np.repeat(w[b], y.shape[1])[known]
        assert micro["auroc"][b] == pytest.approx(
            roc_auc_score(y.ravel()[known], s.ravel()[known], sample_weight=flat_w))
    scrambled = np.where(hide, rng.random(s.shape), s)
    for k, v in label_ranking_metrics(y, scrambled, w, 0.8).items():
        np.testing.assert_array_equal(v, per[k])
    for j, v in enumerate(sensitivity_at_specificity(y, s, 0.8)):
        k = ~hide[:, j]
        assert v == pytest.approx(_sens_at_spec_sklearn(y[k, j], s[k, j], np.ones(k.sum()), 0.8))


def test_threshold_metrics_count_unknown_entries_as_nothing() -> None:
    y, s, hide, rng = _masked_case(8)
    thr = np.array([0.4, 0.5, 0.6])
    w = rng.integers(0, 3, size=(4, len(y))).astype(float)
    got = threshold_metrics(y, s, thr, w)
    for j in range(y.shape[1]):
        k = ~hide[:, j]
        sub = threshold_metrics(y[k, j][:, None], s[k, j][:, None], thr[j : j + 1], w[:, k])
        for name in got:
            np.testing.assert_allclose(got[name][:, j], sub[name][:, 0])
        pred = s[k, j] >= thr[j]
        assert got["sensitivity"][0, j] == pytest.approx(
            recall_score(y[k, j], pred, sample_weight=w[0, k]))
    scrambled = threshold_metrics(y, np.where(hide, rng.random(s.shape), s), thr, w)
    for name in got:
        np.testing.assert_array_equal(scrambled[name], got[name])
