"""Reading evaluate's and finetune's outputs: one schema, and a clear error naming the file for any other."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medvit.errors import UserError
from medvit.evaluate.outputs import read_meta, read_metrics, read_outputs, read_thresholds


def _write(path: Path, obj: object) -> Path:
    path.write_text(json.dumps(obj))
    return path


def test_read_metrics_splits_the_model_from_nested_baselines(tmp_path: Path) -> None:
    path = _write(tmp_path / "metrics.json", {"test/auroc_macro": 0.9, "n_bootstrap": 200,
                                              "clip_zeroshot": {"test/auroc_macro": 0.6, "test/auroc_macro_diff": 0.3}})
    finetune, baselines = read_metrics(path)
    assert finetune == {"test/auroc_macro": 0.9, "n_bootstrap": 200.0}
    assert baselines == {"clip_zeroshot": {"test/auroc_macro": 0.6, "test/auroc_macro_diff": 0.3}}


@pytest.mark.parametrize("layout", [
    {"finetune": {"test/auroc_macro": 0.8}, "baselines": {"b": {"test/auroc_macro": 0.5}}},  # old "also accepted"
    {"test/auroc_macro": 0.8, "note": "text"},
    {"test/auroc_macro": 0.8, "b": {"test/auroc_macro": [0.5]}},
    [0.8],
])
def test_read_metrics_refuses_any_other_layout_naming_the_file(tmp_path: Path, layout: object) -> None:
    path = _write(tmp_path / "metrics.json", layout)
    with pytest.raises(UserError, match=r"metrics\.json: .*not the layout the evaluate stage writes"):
        read_metrics(path)


def test_read_metrics_without_test_metrics_names_file_and_key(tmp_path: Path) -> None:
    path = _write(tmp_path / "metrics.json", {"val/auroc_macro": 0.9})
    with pytest.raises(UserError, match=r"metrics\.json: missing key 'test/auroc_macro'"):
        read_metrics(path)
    with pytest.raises(FileNotFoundError, match="evaluate"):
        read_metrics(tmp_path / "absent.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(UserError, match=r"broken\.json: not valid JSON"):
        read_metrics(tmp_path / "broken.json")


def test_read_thresholds_in_label_order_and_missing_label_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "thresholds.json", {"method": "f1", "thresholds": {"b": 0.2, "a": 0.7}})
    assert read_thresholds(path, ["a", "b"]) == ([0.7, 0.2], "f1")
    with pytest.raises(UserError, match=r"thresholds\.json: missing key thresholds\.'c'"):
        read_thresholds(path, ["a", "b", "c"])


@pytest.mark.parametrize("layout", [
    {"a": 0.5, "b": 0.5},  # bare label -> threshold
    {"finetune": {"method": "f1", "thresholds": {"a": 0.5, "b": 0.5}}},  # nested under the model
    {"method": "f1", "thresholds": [0.5, 0.5], "label_names": ["a", "b"]},  # a list
    {"method": "f1", "thresholds": {"a": {"threshold": 0.5}, "b": 0.5}},  # per-label objects
    {"thresholds": {"a": 0.5, "b": 0.5}},  # no method
])
def test_read_thresholds_refuses_other_layouts_naming_the_file(tmp_path: Path, layout: object) -> None:
    path = _write(tmp_path / "thresholds.json", layout)
    with pytest.raises(UserError, match=r"thresholds\.json: .*not the layout the evaluate stage writes"):
        read_thresholds(path, ["a", "b"])


def test_read_meta_needs_the_weights_and_the_keys(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors: missing; run the finetune stage"):
        read_meta(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"")
    meta = {"model": "m", "img_size": 32, "in_chans": 1, "label_names": ["a"], "mean": [0.5], "std": [0.2],
            "weights": "random-init"}
    _write(tmp_path / "meta.json", meta)
    assert read_meta(tmp_path) == meta
    _write(tmp_path / "meta.json", {k: v for k, v in meta.items() if k != "label_names"})
    with pytest.raises(UserError, match=r"meta\.json: missing key 'label_names'; re-run the finetune stage"):
        read_meta(tmp_path)


def test_read_outputs_reads_what_the_evaluate_report_writes(tmp_path: Path) -> None:
    """Round trip through the writers of evaluate (report.metrics_json / thresholds_json)."""
    import numpy as np

    from medvit.config import EvaluateConfig
    from medvit.evaluate import report
    from medvit.io.atomic import write_json_atomic

    rng = np.random.default_rng(0)
    y = (rng.random((60, 3)) < 0.4).astype(float)
    scores = {"finetune": np.clip(0.5 * y + 0.6 * rng.random(y.shape), 0, 1), "clip_zeroshot": rng.random(y.shape)}
    ev = report.evaluate(["a", "b", "c"], y, y, [f"g{i // 2}" for i in range(60)], scores, scores,
                         EvaluateConfig(n_bootstrap=20))
    write_json_atomic(tmp_path / "metrics.json", report.metrics_json(ev))
    write_json_atomic(tmp_path / "thresholds.json", report.thresholds_json(ev))
    out = read_outputs(tmp_path, ["c", "a", "b"])
    assert out.finetune["test/auroc_macro"] == pytest.approx(ev.test["finetune"].summary["auroc_macro"])
    assert set(out.baselines) == {"clip_zeroshot"}
    assert out.thresholds == pytest.approx([ev.thresholds["finetune"][j] for j in (2, 0, 1)])
    assert out.threshold_method == ev.settings["threshold_method"]
