"""Evaluate every model on the same split and resamples, and render the results.

``evaluate`` chooses thresholds on val, scores test with group-bootstrap CIs
(one weight matrix shared by all models, so the fine-tuned vs baseline
differences are paired), and adds calibration. The renderers turn the result
into ``metrics.json`` (names ``<split>/<metric>[_ci_low|_ci_high]``, per label
``test/<label>/<metric>``, each baseline nested under its name), ``thresholds.json``,
``per_label.csv`` (every model, with CIs) and the comparison table as Markdown,
HTML and console text.

Unknown (NaN) targets are masked in every metric (``medvit.metrics``): a label is
scored on its known rows, and the reports show that known count per label
(``test/<label>/n_known``, ``per_label.csv`` column ``n_known``, the comparison
table, ``thresholds.json``'s ``n_known_val``). A label without both classes among
its known rows is reported and left out of the macro averages.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from medvit.config import EvaluateConfig
from medvit.evaluate.bootstrap import (LABEL_METRICS, ModelStats, group_weights, model_stats, paired_difference,
                                      percentile_ci)
from medvit.evaluate.calibration import ece, ece_per_label
from medvit.evaluate.inputs import FINETUNE
from medvit.evaluate.intervals import Reliability
from medvit.evaluate.thresholds import choose_thresholds
from medvit.metrics import (METRICS, bootstrapped, label_counts, metric_key, summary, summary_names,
                            valid_labels)

# Names from the one list in ``medvit.metrics``.
SUMMARY_METRICS: tuple[str, ...] = tuple(summary_names(bootstrapped()))  # with bootstrap CIs
POINT_METRICS: tuple[str, ...] = tuple(m.name for m in METRICS if not m.bootstrap)  # calibration: no CIs
PAIRED_METRICS: tuple[str, ...] = tuple(f"{m.name}_macro" for m in METRICS if m.paired)


@dataclass
class Evaluation:
    """Everything the reports need; ``models`` lists ``finetune`` first, then the baselines."""

    label_names: tuple[str, ...]
    models: list[str]
    thresholds: dict[str, np.ndarray]
    threshold_fallback: dict[str, list[str]]
    val: dict[str, dict[str, float]]
    test: dict[str, ModelStats]
    ece_label: dict[str, np.ndarray]
    ece_micro: dict[str, float]
    paired: dict[str, dict[str, dict[str, float]]]
    skipped_val: list[str]
    skipped_test: list[str]
    n_test: int
    n_test_groups: int
    n_known_val: np.ndarray  # (L,) known (not NaN) val targets per label
    n_known_test: np.ndarray  # (L,) known test targets per label
    n_resamples: int
    ci_level: float
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def n_unknown_test(self) -> int:
        """Unknown (masked) test targets over all labels."""
        return int(self.n_test * len(self.label_names) - self.n_known_test.sum())

    @property
    def valid_mask(self) -> np.ndarray:
        """(L,) labels with both classes in test (the ones in macro averages)."""
        return np.array([n not in self.skipped_test for n in self.label_names], dtype=bool)

    @property
    def reliability(self) -> Reliability:
        """Whether the test CIs rest on at least ``evaluate.min_groups`` groups."""
        return Reliability(self.n_test_groups, int(self.settings.get("min_groups", 10)))

    def ci(self, model: str, metric: str) -> tuple[float, float]:
        """Percentile CI of a test summary metric."""
        return percentile_ci(self.test[model].summary_samples[metric], self.ci_level)

    def label_ci(self, model: str, metric: str, j: int) -> tuple[float, float]:
        """Percentile CI of a per-label test metric."""
        return percentile_ci(self.test[model].label_samples[metric][:, j], self.ci_level)

    def point_label(self, model: str) -> dict[str, np.ndarray]:
        """(L,) per-label values of the ``POINT_METRICS`` (no bootstrap)."""
        return {"ece": self.ece_label[model]}

    def point_summary(self, model: str) -> dict[str, float]:
        """Macro/micro summaries of the ``POINT_METRICS``; the macro mean skips single-class labels."""
        ok = self.valid_mask
        out = {f"{k}_macro": float(np.mean(v[ok])) if ok.any() else float("nan")
               for k, v in self.point_label(model).items()}
        out["ece_micro"] = self.ece_micro[model]
        return out

    def value(self, model: str, name: str) -> tuple[float, float | None, float | None]:
        """A test summary (e.g. ``auroc_macro``) with its CI (None, None without bootstrap)."""
        if name in SUMMARY_METRICS:
            return (self.test[model].summary[name], *self.ci(model, name))
        return self.point_summary(model)[name], None, None


def evaluate(
    label_names: Sequence[str],
    y_val: np.ndarray,
    y_test: np.ndarray,
    test_groups: Sequence[str],
    val_scores: Mapping[str, np.ndarray],
    test_scores: Mapping[str, np.ndarray],
    cfg: EvaluateConfig,
) -> Evaluation:
    """Score every model on val (thresholds, summary) and test (metrics, CIs, calibration).

    Args:
        label_names: the manifest's label order.
        y_val, y_test: (N_split, L) targets, NaN where unknown (masked everywhere).
        test_groups: (N_test,) group of each test sample; the bootstrap resamples these.
        val_scores, test_scores: model -> (N_split, L) scores aligned with the targets.
        cfg: the ``evaluate`` params.
    """
    models = list(test_scores)
    weights = group_weights(test_groups, cfg.n_bootstrap, cfg.seed)  # (B, N_test), shared by all models
    thresholds, fallback, val, test, ece_l, ece_m = {}, {}, {}, {}, {}, {}
    for m in models:
        thresholds[m], fallback[m] = choose_thresholds(
            y_val, val_scores[m], label_names, cfg.threshold_method, cfg.target_sensitivity)
        val[m] = summary(y_val, val_scores[m], prefix="")
        test[m] = model_stats(y_test, test_scores[m], thresholds[m], weights, cfg.fixed_specificity)
        ece_l[m] = ece_per_label(y_test, test_scores[m], cfg.ece_bins)
        ece_m[m] = ece(y_test, test_scores[m], cfg.ece_bins)
    paired = {
        b: {k: paired_difference(test[FINETUNE], test[b], k, cfg.ci_level) for k in PAIRED_METRICS}
        for b in models if b != FINETUNE
    }
    return Evaluation(
        label_names=tuple(label_names), models=models, thresholds=thresholds, threshold_fallback=fallback,
        val=val, test=test, ece_label=ece_l, ece_micro=ece_m, paired=paired,
        skipped_val=[n for n, ok in zip(label_names, valid_labels(y_val)) if not ok],
        skipped_test=[n for n, ok in zip(label_names, valid_labels(y_test)) if not ok],
        n_test=len(y_test), n_test_groups=len(set(map(str, test_groups))),
        n_known_val=label_counts(y_val)["n_known"], n_known_test=label_counts(y_test)["n_known"],
        n_resamples=int(weights.shape[0]), ci_level=cfg.ci_level,
        settings=cfg.model_dump(mode="json", exclude={"subgroups"}),  # per-domain columns: not read here
    )


def _finite(d: Mapping[str, Any]) -> dict[str, Any]:
    """Drop NaN/inf values (strict JSON and MLflow reject them; a missing key reads as 'undefined')."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out[k] = _finite(v)
        elif v is not None and math.isfinite(float(v)):
            out[k] = float(v)
    return out


def _model_summary(ev: Evaluation, m: str) -> dict[str, float]:
    st = ev.test[m]
    out = {f"val/{k}": v for k, v in ev.val[m].items()}
    for k in SUMMARY_METRICS:
        lo, hi = ev.ci(m, k)
        out.update({f"test/{k}": st.summary[k], f"test/{k}_ci_low": lo, f"test/{k}_ci_high": hi})
    out.update({f"test/{k}": v for k, v in ev.point_summary(m).items()})
    return out


def metrics_json(ev: Evaluation) -> dict[str, Any]:
    """The DVC metrics file: fine-tuned model at the top level, each baseline under its name."""
    out: dict[str, Any] = _model_summary(ev, FINETUNE)
    st = ev.test[FINETUNE]
    for j, name in enumerate(ev.label_names):
        key = f"test/{metric_key(name)}"
        for k in LABEL_METRICS:
            lo, hi = ev.label_ci(FINETUNE, k, j)
            out.update({f"{key}/{k}": st.label[k][j], f"{key}/{k}_ci_low": lo, f"{key}/{k}_ci_high": hi})
        out[f"{key}/prevalence"] = st.label["prevalence"][j]
        out[f"{key}/n_known"] = int(ev.n_known_test[j])
        out.update({f"{key}/{k}": v[j] for k, v in ev.point_label(FINETUNE).items()})
    out.update({
        "n_labels_skipped": len(ev.skipped_test), "test/n_labels_skipped": len(ev.skipped_test),
        "test/n_samples": ev.n_test, "test/n_groups": ev.n_test_groups, "test/n_unknown": ev.n_unknown_test,
        "n_bootstrap": ev.n_resamples, "min_groups": ev.reliability.min_groups,
        "test/ci_reliable": int(ev.reliability.reliable),
    })
    for b in ev.models[1:]:
        d = _model_summary(ev, b)
        for k, diff in ev.paired[b].items():
            d.update({f"test/{k}_{name}": v for name, v in diff.items()})
        out[b] = d
    return _finite(out)


def flat_metrics(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """``metrics_json`` flattened for MLflow: baseline keys become ``<baseline>/<key>``."""
    out: dict[str, float] = {}
    for k, v in metrics.items():
        if isinstance(v, Mapping):
            out.update(flat_metrics(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = float(v)
    return out


def thresholds_json(ev: Evaluation) -> dict[str, Any]:
    """Per-label operating thresholds chosen on val (``score >= threshold`` is positive)."""
    def per(m: str) -> dict[str, float]:
        return {n: float(t) for n, t in zip(ev.label_names, ev.thresholds[m])}

    s = ev.settings
    return {
        "method": s["threshold_method"], "target_sensitivity": s["target_sensitivity"],
        "fixed_specificity": s["fixed_specificity"], "chosen_on": "val", "rule": "score >= threshold",
        "label_names": list(ev.label_names), "thresholds": per(FINETUNE),
        "fallback_labels": ev.threshold_fallback[FINETUNE],
        "labels_skipped_val": ev.skipped_val, "labels_skipped_test": ev.skipped_test,
        "n_known_val": {n: int(c) for n, c in zip(ev.label_names, ev.n_known_val)},
        "baselines": {b: {"thresholds": per(b), "fallback_labels": ev.threshold_fallback[b]} for b in ev.models[1:]},
    }


def label_table(ev: Evaluation) -> pd.DataFrame:
    """Per-label test metrics and thresholds of every model (long format): ``per_label.csv``."""
    rows = []
    for m in ev.models:
        st = ev.test[m]
        for j, n in enumerate(ev.label_names):
            row = {"model": m, "label": n, **{k: float(v[j]) for k, v in st.label.items()},
                   **{k: float(v[j]) for k, v in ev.point_label(m).items()}, "threshold": float(ev.thresholds[m][j])}
            for k in LABEL_METRICS:
                row[f"{k}_ci_low"], row[f"{k}_ci_high"] = ev.label_ci(m, k, j)
            rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- tables
def _fmt(v: float, lo: float | None = None, hi: float | None = None, signed: bool = False) -> str:
    if v is None or not math.isfinite(v):
        return "n/a"
    s = f"{v:+.3f}" if signed else f"{v:.3f}"
    if lo is not None and hi is not None and math.isfinite(lo) and math.isfinite(hi):
        s += f" [{lo:+.3f}, {hi:+.3f}]" if signed else f" [{lo:.3f}, {hi:.3f}]"
    return s


def summary_rows(ev: Evaluation) -> tuple[list[str], list[list[str]]]:
    """Headers and one row per model: the ``Metric.table`` summaries with CIs and the paired difference."""
    pct = f"{ev.ci_level:.0%}"
    spec = ev.settings["fixed_specificity"]
    columns = [(f"{m.name}_{agg}", m.title.format(spec=spec) + (f" {agg}" if m.micro else "")
                + (f" [{pct} CI]" if m.bootstrap else "")) for m in METRICS for agg in m.table]
    headers = ["model", *(title for _, title in columns), f"ΔAUROC fine-tuned − model [{pct} CI]", "p"]
    if not ev.reliability.reliable:  # every CI header names the group count behind it
        headers = [h.replace(" CI]", f" CI, unreliable: {ev.n_test_groups} groups]") for h in headers]
    rows = []
    for m in ev.models:
        cell = [m] + [_fmt(*ev.value(m, k)) for k, _ in columns]
        if m == FINETUNE:
            cell += ["—", "—"]
        else:
            d = ev.paired[m]["auroc_macro"]
            p = d["diff_p"]
            p_text = f"< {1 / ev.n_resamples:.2g}" if p == 0 and ev.n_resamples else _fmt(p)
            cell += [_fmt(d["diff"], d["diff_ci_low"], d["diff_ci_high"], signed=True), p_text]
        rows.append(cell)
    return headers, rows


def label_rows(ev: Evaluation) -> tuple[list[str], list[list[str]]]:
    """Headers and one row per label: known count, prevalence, each model's AUROC [CI], fine-tuned operating point.

    The known count is the test rows whose target is known (not an ignored uncertain/blank entry);
    every metric of the label uses those rows only.
    """
    headers = ["label", "known (test)", "prevalence (test)"] + [f"AUROC {m}" for m in ev.models] + [
        f"threshold ({ev.settings['threshold_method']})", "F1", "sens", "spec"]
    rows = []
    ft = ev.test[FINETUNE]
    for j, name in enumerate(ev.label_names):
        row = [name, f"{int(ev.n_known_test[j])}/{ev.n_test}", _fmt(ft.label["prevalence"][j])]
        if name in ev.skipped_test:
            why = "one class in test" if ev.n_known_test[j] == ev.n_test else "one class among known test rows"
            row += [f"skipped: {why}"] * len(ev.models)
        else:
            row += [_fmt(ev.test[m].label["auroc"][j], *ev.label_ci(m, "auroc", j)) for m in ev.models]
        fallback = " (fallback)" if name in ev.threshold_fallback[FINETUNE] else ""
        row.append(_fmt(ev.thresholds[FINETUNE][j]) + fallback)
        row += [_fmt(ft.label[k][j]) for k in ("f1", "sensitivity", "specificity")]
        rows.append(row)
    return headers, rows


def _notes(ev: Evaluation, notes: Sequence[str]) -> list[str]:
    s = ev.settings
    ci = (f"CIs: {ev.n_resamples} seeded bootstrap resamples of groups (patients/scenes), percentile "
          "intervals; ΔAUROC is paired (same resamples) with a two-sided bootstrap p-value."
          if ev.n_resamples else "No confidence intervals (evaluate.n_bootstrap: 0).")
    out = [
        f"Test split: {ev.n_test} images from {ev.n_test_groups} groups. {ci}",
        *([ev.reliability.note()] if ev.n_resamples and not ev.reliability.reliable else []),
        f"Thresholds chosen on val ({s['threshold_method']}"
        + (f", target sensitivity {s['target_sensitivity']:g}" if s["threshold_method"] == "sensitivity" else "")
        + f") and applied unchanged to test. ECE: {s['ece_bins']} equal-width bins, all labels pooled.",
    ]
    if ev.n_unknown_test:
        out.append(f"{ev.n_unknown_test} unknown (ignored uncertain/blank) test label(s) are masked: each label "
                   "is scored on its known rows only (column 'known'), in every metric, threshold and resample.")
    if ev.skipped_test:
        out.append(f"{len(ev.skipped_test)} label(s) with a single class among the known test rows, left out of "
                   f"every macro average: {', '.join(ev.skipped_test)}.")
    return out + list(notes)


def comparison_markdown(ev: Evaluation, title: str, notes: Sequence[str] = ()) -> str:
    """The comparison report as Markdown."""
    def table(headers: list[str], rows: list[list[str]]) -> list[str]:
        esc = [[c.replace("|", "\\|") for c in r] for r in [headers, *rows]]
        lines = ["| " + " | ".join(r) + " |" for r in esc]
        return [lines[0], "|" + "---|" * len(headers), *lines[1:]]

    lines = [f"# {title}", ""] + [f"- {n}" for n in _notes(ev, notes)] + ["", "## Test metrics", ""]
    lines += table(*summary_rows(ev)) + ["", "## Per label", ""] + table(*label_rows(ev)) + [""]
    return "\n".join(lines)


def comparison_html(ev: Evaluation, title: str, notes: Sequence[str] = ()) -> str:
    """The comparison report as a standalone HTML page."""
    def table(headers: list[str], rows: list[list[str]]) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #bbb;padding:4px 8px;text-align:right}td:first-child,th:first-child"
             "{text-align:left}th{background:#eee}")
    items = "".join(f"<li>{html.escape(n)}</li>" for n in _notes(ev, notes))
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1><ul>{items}</ul>"
            f"<h2>Test metrics</h2>{table(*summary_rows(ev))}<h2>Per label</h2>{table(*label_rows(ev))}"
            "</body></html>\n")


def console_table(ev: Evaluation) -> str:
    """A short fixed-width comparison for stdout."""
    pct = f"{ev.ci_level:.0%}"
    head = f"{'model':<18} {'AUROC macro [' + pct + ' CI]':<28} {'AP macro':<8} {'ΔAUROC ft−model [CI]':<30}"
    lines = [head, "-" * len(head)]
    for m in ev.models:
        st = ev.test[m]
        if m == FINETUNE:
            d = "—"
        else:
            p = ev.paired[m]["auroc_macro"]
            d = _fmt(p["diff"], p["diff_ci_low"], p["diff_ci_high"], signed=True)
        lines.append(f"{m:<18} {_fmt(st.summary['auroc_macro'], *ev.ci(m, 'auroc_macro')):<28} "
                     f"{_fmt(st.summary['ap_macro']):<8} {d:<30}")
    if ev.skipped_test:
        lines.append(f"labels left out of macro averages (one class in test): {', '.join(ev.skipped_test)}")
    if ev.n_resamples and not ev.reliability.reliable:
        lines.append(f"UNRELIABLE CIs: {ev.reliability.note()}")
    return "\n".join(lines)
