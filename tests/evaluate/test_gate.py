"""The quality gate as a pure function of evaluate's test metrics."""

from __future__ import annotations

import json
import math

import pytest

from medvit.evaluate.gate import AUROC_KEY, apply_gate


def test_gate_passes_above_min_auroc_and_margin() -> None:
    gate = apply_gate({"test/auroc_macro": 0.9, "test/auroc_macro_ci_low": 0.85, "test/auroc_macro_ci_high": 0.94},
                      {"clip_zeroshot": {"test/auroc_macro": 0.6}, "linear_probe": {"test/auroc_macro": 0.8}},
                      min_auroc=0.8, min_margin=0.05)
    assert gate.passed
    assert gate.best_baseline == "linear_probe" and gate.best_baseline_auroc == 0.8
    assert gate.margin == pytest.approx(0.1)
    assert "0.850-0.940" in gate.summary() and gate.summary().startswith("passed: ")


def test_gate_refuses_below_min_auroc() -> None:
    gate = apply_gate({"test/auroc_macro": 0.7}, {"clip_zeroshot": {"test/auroc_macro": 0.5}}, 0.8, 0.0)
    assert not gate.passed
    assert "0.700 is below min_auroc 0.800" in gate.summary() and gate.summary().startswith("refused: ")


def test_gate_refuses_when_margin_over_best_baseline_is_too_small() -> None:
    gate = apply_gate({"test/auroc_macro": 0.85}, {"clip_zeroshot": {"test/auroc_macro": 0.6},
                                                   "linear_probe": {"test/auroc_macro": 0.84}}, 0.8, 0.02)
    assert not gate.passed
    assert "linear_probe" in gate.summary() and "+0.010, is below min_margin +0.020" in gate.summary()


def test_gate_refuses_undefined_auroc_and_missing_baselines() -> None:
    undefined = apply_gate({"test/ap_macro": 0.5}, {"clip_zeroshot": {"test/auroc_macro": 0.5}}, 0.0, -1.0)
    assert not undefined.passed and "undefined" in undefined.summary()
    assert undefined.to_dict()["auroc"] is None  # JSON-safe, no NaN
    no_baseline = apply_gate({"test/auroc_macro": 0.95}, {"clip_zeroshot": {"test/ap_macro": 0.3}}, 0.8, 0.0)
    assert not no_baseline.passed and "no baseline" in no_baseline.summary()


def test_gate_ignores_a_nan_baseline_and_is_pure() -> None:
    finetune = {AUROC_KEY: 0.9}
    baselines = {"broken": {AUROC_KEY: math.nan}, "clip_zeroshot": {AUROC_KEY: 0.7}}
    before = json.dumps([finetune, baselines])
    first = apply_gate(finetune, baselines, 0.8, 0.1)
    assert first.passed and first.best_baseline == "clip_zeroshot"
    assert json.dumps([finetune, baselines]) == before  # inputs untouched
    assert apply_gate(finetune, baselines, 0.8, 0.1) == first  # same inputs, same outcome
    json.dumps(first.to_dict(), allow_nan=False)  # the record is strict JSON


def test_gate_treats_an_interval_from_too_few_groups_as_missing_evidence() -> None:
    ft = {"test/auroc_macro": 0.95, "test/auroc_macro_ci_low": 0.994, "test/auroc_macro_ci_high": 0.995,
          "test/n_groups": 2, "min_groups": 10}
    baselines = {"clip_zeroshot": {"test/auroc_macro": 0.5}}
    gate = apply_gate(ft, baselines, 0.8, 0.0)
    assert not gate.passed and gate.ci_reliable is False
    assert "missing evidence" in gate.summary() and "2 group(s), fewer than evaluate.min_groups 10" in gate.summary()
    assert "unreliable: 2 groups" in gate.summary() and gate.to_dict()["ci_reliable"] is False
    enough = apply_gate({**ft, "test/n_groups": 10}, baselines, 0.8, 0.0)
    assert enough.passed and enough.ci_reliable is True and "missing evidence" not in enough.summary()
    unrecorded = apply_gate({"test/auroc_macro": 0.95}, baselines, 0.8, 0.0)
    assert unrecorded.ci_reliable is None and "interval reliability not checked" in unrecorded.summary()
