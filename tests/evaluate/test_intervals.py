"""Intervals from fewer than evaluate.min_groups groups are marked unreliable in every rendering."""

from __future__ import annotations

import numpy as np
import pytest

from medvit.config import EvaluateConfig
from medvit.evaluate import report
from medvit.evaluate.gate import apply_gate
from medvit.evaluate.intervals import Reliability, interval_status

NAMES = ("a", "b")


def _evaluation(n_groups: int) -> report.Evaluation:
    rng = np.random.default_rng(0)
    n = 60
    y = (rng.random((n, 2)) < 0.5).astype(float)
    scores = {"finetune": np.clip(0.5 * y + 0.5 * rng.random(y.shape), 0, 1), "clip_zeroshot": rng.random(y.shape)}
    groups = [f"g{i % n_groups}" for i in range(n)]
    cfg = EvaluateConfig(n_bootstrap=50, min_groups=10)
    return report.evaluate(NAMES, y, y, groups, scores, scores, cfg)


@pytest.mark.parametrize("n_groups", [3, 12])
def test_metrics_comparison_and_gate_mark_too_few_groups(n_groups: int) -> None:
    ev = _evaluation(n_groups)
    few = n_groups < 10
    metrics = report.metrics_json(ev)
    assert metrics["test/n_groups"] == n_groups and metrics["min_groups"] == 10
    assert metrics["test/ci_reliable"] == (0 if few else 1)
    md = report.comparison_markdown(ev, "t")
    assert ("Unreliable intervals: the test split has 3 group(s)" in md) == few
    assert (f"95% CI, unreliable: {n_groups} groups]" in md) == few
    assert ("UNRELIABLE CIs" in report.console_table(ev)) == few
    ft = {k: v for k, v in metrics.items() if not isinstance(v, dict)}
    gate = apply_gate(ft, {"clip_zeroshot": metrics["clip_zeroshot"]}, 0.0, -1.0)
    assert gate.passed is not few and gate.ci_reliable is not few


def test_reliability_record_and_status() -> None:
    r = Reliability(2, 10)
    assert not r.reliable and r.to_dict()["n_groups"] == 2 and "fewer than evaluate.min_groups (10)" in r.note()
    assert Reliability(10, 10).note() == "" and Reliability(10, 10).reliable
    assert interval_status(9, 10) == "too few groups for an interval (9 groups)"
    assert interval_status(10, 10, 3) == "too few groups for an interval (rest of test: 3 groups)"
    assert interval_status(10, 10, 10) == "ok"


def test_model_card_and_registry_tags_name_the_group_count() -> None:
    from medvit.tracking import card, registry

    for n_groups, few in ((3, True), (12, False)):
        metrics = report.metrics_json(_evaluation(n_groups))
        ft = {k: v for k, v in metrics.items() if not isinstance(v, dict)}
        baselines = {k: v for k, v in metrics.items() if isinstance(v, dict)}
        tags = registry.metric_tags(ft, baselines)
        want = "unreliable: 3 test groups < min_groups 10" if few else "reliable: 12 test groups >= min_groups 10"
        assert tags["ci_reliability"] == want
        gate = apply_gate(ft, baselines, 0.0, -1.0)
        md = card.render_card(registered_model="medvit-medical", domain="medical",
                              meta={"model": "m", "label_names": list(NAMES), "weights": "hub:x"},
                              finetune_metrics=ft, baseline_metrics=baselines, thresholds=[0.5, 0.5],
                              threshold_method="youden", gate=gate.to_dict(), weights_sha256="0" * 64,
                              git_commit="abc", onnx_opset=None)
        assert ("Unreliable intervals: the test split has 3 group(s)" in md) == few
        assert ("missing evidence" in md) == few
