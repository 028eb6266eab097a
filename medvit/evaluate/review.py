"""The review report: one self-contained HTML page per registered model version (issue #14).

Built by the register stage from what evaluate, finetune and ingest wrote (the
files listed in this package's docstring, ``models/<d>/meta.json`` and the
cache's ``report.json``) plus the version's lineage. Every section is always
present: a section whose input file is missing says "not available" and names
the file and the stage that writes it, so a reviewer never mistakes an absent
analysis for a clean one.

Self-contained: figures are inlined as ``data:image/png;base64`` URIs, the style
is inline, and nothing is fetched. Every value passes through Jinja2's
autoescape (labels, subgroup values and notes come from user files). No PHI:
ids and groups are ingest's keyed pseudonyms; medical failure-case images appear
only when ``include_pixels`` is true (the local report, or
``evaluate.upload_patient_pixels``), the same rule as evaluate's logged artifacts.
"""

from __future__ import annotations

import base64
import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import jinja2

from medvit.evaluate.review_template import TEMPLATE
from medvit.metrics import METRICS, summary_names
from medvit.weights import is_random_init

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TITLES = {m.name: m.title.replace("{spec:g}", "fixed spec") for m in METRICS}  # evaluate.fixed_specificity
TEXT_COLUMNS = ("model", "label", "split", "attribute", "value")  # shown as written (a value "1" stays "1")
COUNT_COLUMNS = ("n", "n_known", "positives", "count", "groups", "rank")  # integers; other numbers are fractions


@dataclass(frozen=True)
class ReviewContext:
    """What the register stage knows about the version beside the files."""

    domain: str
    registered_model: str
    version: str
    intended_use: str
    limitations: str
    lineage: Mapping[str, str]  # git_commit, params_hash, data_hash, pipeline_id, run ids
    run_links: Mapping[str, str] = field(default_factory=dict)  # stage -> URL of its MLflow run
    weights_sha256: str = ""
    gate: str = ""
    include_pixels: bool = False  # may medical images appear (failure-case gallery)
    baseline_weights: Mapping[str, str] = field(default_factory=dict)  # baseline -> weights (evaluate's tags)


def _missing(path: Path, stage: str = "evaluate") -> str:
    where = f"{path.parent.name}/{path.name}"  # no absolute local paths in a logged report
    return f"not available: {where} not found (written by the {stage} stage; re-run `dvc repro {stage}`)"


def _read_json(path: Path) -> Any | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _read_csv(path: Path) -> list[dict[str, str]] | None:
    try:
        with path.open(newline="") as f:
            return list(csv.DictReader(f))
    except OSError:
        return None


def _fmt(v: Any, digits: int = 3, fraction: bool = False) -> str:
    if isinstance(v, str):  # a CSV cell: an integer stays one ("40"), a fraction gets digits
        try:
            v = int(v) if v.strip().lstrip("-").isdigit() and not fraction else float(v)
        except ValueError:
            return v
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _ci(values: Mapping[str, Any], key: str) -> str:
    lo, hi = values.get(f"{key}_ci_low"), values.get(f"{key}_ci_high")
    if lo in (None, "") or hi in (None, ""):
        return ""
    return f"[{_fmt(lo, fraction=True)}, {_fmt(hi, fraction=True)}]"


def png_data_uri(path: Path) -> str | None:
    """``data:image/png;base64,...`` of a PNG file, or None when it is missing or not a PNG."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if not data.startswith(PNG_MAGIC):
        return None
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _figure(path: Path, caption: str) -> dict[str, Any]:
    uri = png_data_uri(path)
    return {"caption": caption, "uri": uri, "missing": None if uri else _missing(path)}


def weights_licence(weights: str) -> str:
    """The licence of a weights reference: timm's pretrained config for a hub id, else what is known."""
    if is_random_init(weights):
        return "none (random initialisation: no pretrained weights)"
    name = weights.removeprefix("hf-hub:").removeprefix("timm/")
    try:
        import timm

        cfg = timm.models.get_pretrained_cfg(name)
    except Exception:  # timm raises several kinds for a name it does not know
        cfg = None
    if cfg is not None and getattr(cfg, "license", None):
        return f"{cfg.license} (timm pretrained config of {name})"
    return f"unknown: {weights} is not a timm hub id; record the licence of this file with the model"


def _intervals(report_dir: Path, metrics: Mapping[str, Any]) -> dict[str, Any]:
    data = _read_json(report_dir / "intervals.json")
    if isinstance(data, Mapping) and "reliable" in data:
        return {"known": True, "reliable": bool(data["reliable"]), "note": str(data.get("note", ""))}
    if "test/ci_reliable" in metrics:
        reliable = bool(metrics["test/ci_reliable"])
        note = (f"{'Reliable' if reliable else 'Unreliable'} intervals: test CIs from "
                f"{_fmt(metrics.get('test/n_groups'))} "
                f"groups (evaluate.min_groups = {_fmt(metrics.get('min_groups'))})")
        return {"known": True, "reliable": reliable, "note": note}
    return {"known": False, "reliable": True, "note": _missing(report_dir / "intervals.json")}


def _metrics_rows(finetune: Mapping[str, Any]) -> list[list[str]]:
    rows = []
    for s in summary_names():
        key = f"test/{s}"
        if key in finetune:
            name, avg = s.rsplit("_", 1)
            rows.append([f"{TITLES.get(name, name)} ({avg})", _fmt(finetune[key]), _ci(finetune, key)])
    for k in ("n_samples", "n_groups", "n_unknown", "n_labels_skipped"):
        if f"test/{k}" in finetune:
            rows.append([k.replace("_", " "), _fmt(int(finetune[f"test/{k}"])), ""])
    return rows


def _baseline_rows(baselines: Mapping[str, Mapping[str, Any]]) -> list[list[str]]:
    rows = []
    for name, m in baselines.items():
        for s in ("auroc_macro", "ap_macro"):
            key = f"test/{s}"
            if key in m:
                rows.append([name, s, _fmt(m[key]), _ci(m, key), _fmt(m.get(f"{key}_diff")), _ci(m, f"{key}_diff")])
    return rows


def _table(rows: list[dict[str, str]] | None, path: Path, columns: list[str]) -> dict[str, Any]:
    if rows is None:
        return {"missing": _missing(path), "columns": [], "rows": []}
    cols = [c for c in columns if rows and c in rows[0]] or (list(rows[0]) if rows else columns)
    return {"missing": None, "columns": cols,
            "rows": [[r.get(c, "") if c in TEXT_COLUMNS else _fmt(r.get(c, ""), fraction=c not in COUNT_COLUMNS)
                      for c in cols] for r in rows]}


def _subgroups(report_dir: Path) -> dict[str, Any]:
    path = report_dir / "subgroups.csv"
    rows = _read_csv(path)
    if rows is None:
        return {"missing": _missing(path), "columns": [], "rows": [], "flags": 0}
    columns = ["model", "attribute", "value", "n", "groups", "prevalence", "AUROC", "AUROC CI", "AP",
               "sens", "spec", "AUROC diff vs rest", "diff CI", "interval", "flag"]
    out = []
    for r in rows:
        flagged = str(r.get("flagged", "0")).strip() in ("1", "True", "true")
        out.append({"cells": [r.get("model", ""), r.get("attribute", ""), r.get("value", ""), _fmt(r.get("n", "")),
                              _fmt(r.get("groups", "")), *(_fmt(r.get(k, ""), fraction=True) for k in
                                                             ("prevalence", "auroc")),
                              _ci(r, "auroc"), *(_fmt(r.get(k, ""), fraction=True) for k in
                                                 ("ap", "sensitivity", "specificity", "auroc_diff")),
                              _ci(r, "auroc_diff"),
                              r.get("interval", ""), r.get("flag_reason", "") if flagged else ""],
                    "flagged": flagged, "unreliable": r.get("interval", "ok") not in ("ok", "")})
    return {"missing": None, "columns": columns, "rows": out, "flags": sum(r["flagged"] for r in out)}


def _failures(report_dir: Path, ctx: ReviewContext) -> dict[str, Any]:
    folder = report_dir / "failures"
    rows = _read_csv(folder / "failures.csv")
    if rows is None:
        return {"missing": _missing(folder / "failures.csv"), "cases": [], "withheld": None}
    pixels = ctx.domain != "medical" or ctx.include_pixels
    withheld = None if pixels else ("medical images withheld from this copy (evaluate.upload_patient_pixels is "
                                    f"false); the overlays are in {folder} on the machine that ran evaluate")
    cases = []
    for r in rows:
        image = (r.get("image") or "").strip()
        uri = png_data_uri(folder / image) if image and pixels else None
        note = "" if uri else ("withheld" if image and not pixels else "no overlay drawn" if not image
                              else f"not available: {image} not found or not a PNG")
        cases.append({"label": r.get("label", ""), "kind": r.get("kind", "").replace("_", " "),
                      "rank": r.get("rank", ""), "id": r.get("id", ""), "group": r.get("group", ""),
                      "score": _fmt(r.get("score", "")), "threshold": _fmt(r.get("threshold", "")),
                      "uri": uri, "note": note})
    return {"missing": None, "cases": cases, "withheld": withheld}


def _data_sources(ingest_report: Path | None) -> dict[str, Any]:
    if ingest_report is None:
        return {"missing": "not available: no ingest report.json given to the register stage", "rows": [],
                "deid": None, "deid_missing": None}
    data = _read_json(ingest_report)
    if not isinstance(data, Mapping):
        return {"missing": _missing(ingest_report, "ingest"), "rows": [], "deid": None, "deid_missing": None}
    rows = [[k.replace("_", " "), _fmt(data[k])] for k in ("n_input", "n_ingested", "n_rejected", "n_filtered",
                                                             "n_samples", "reject_fraction") if k in data]
    for k in ("splits", "groups", "rejects_by_reason", "filtered_by_reason", "decoders"):
        if isinstance(data.get(k), Mapping) and data[k]:
            rows.append([k.replace("_", " "), ", ".join(f"{a}: {_fmt(b)}" for a, b in data[k].items())])
    deid = data.get("deid")
    deid_rows = [[k.replace("_", " "), _fmt(v)] for k, v in deid.items()] if isinstance(deid, Mapping) else None
    deid_missing = None if deid_rows else ("not available: the ingest report has no de-identification block "
                                           "(sources without patient identifiers, e.g. satellite scenes)")
    return {"missing": None, "rows": rows, "deid": deid_rows, "deid_missing": deid_missing}


def render_review_report(report_dir: Path, model_meta: Mapping[str, Any], ingest_report: Path | None,
                         ctx: ReviewContext) -> str:
    """The review report of one version as a self-contained HTML string.

    Args:
        report_dir: ``reports/<d>`` (evaluate's outputs).
        model_meta: ``models/<d>/meta.json``.
        ingest_report: the cache's ``report.json`` (None when unknown).
        ctx: the version, params text and lineage.
    """
    raw = _read_json(report_dir / "metrics.json")
    metrics = raw if isinstance(raw, Mapping) else {}
    finetune = {k: v for k, v in metrics.items() if not isinstance(v, Mapping)}
    baselines = {k: v for k, v in metrics.items() if isinstance(v, Mapping)}
    per_label = _read_csv(report_dir / "per_label.csv")
    weights = str(model_meta.get("weights", "unknown"))
    figures = report_dir / "figures"
    ece = next((finetune[k] for k in ("test/ece_micro", "test/ece_macro") if k in finetune), None)
    values = {
        "ctx": ctx,
        "title": f"Review report: {ctx.registered_model} version {ctx.version}",
        "intervals": _intervals(report_dir, finetune),
        "metrics": {"missing": None if metrics else _missing(report_dir / "metrics.json"),
                    "rows": _metrics_rows(finetune)},
        "per_label": _table(per_label, report_dir / "per_label.csv",
                            ["model", "label", "n_known", "prevalence", "auroc", "ap", "sensitivity", "specificity"]),
        "baselines": {"missing": None if baselines else ("not available: metrics.json holds no baseline "
                                                        "(run the zeroshot and evaluate stages)"),
                      "rows": _baseline_rows(baselines)},
        "data": _data_sources(ingest_report),
        "demographics": _table(_read_csv(report_dir / "demographics.csv"), report_dir / "demographics.csv",
                               ["split", "attribute", "value", "count", "fraction"]),
        "prevalence": _table(_read_csv(report_dir / "label_prevalence.csv"), report_dir / "label_prevalence.csv",
                             ["split", "label", "n", "n_known", "positives", "prevalence"]),
        "subgroups": _subgroups(report_dir),
        "forest": _figure(figures / "subgroups_forest.png", "AUROC per subgroup with CIs (forest plot)"),
        "calibration": {"ece": _fmt(ece) if ece is not None else "not available: no test ECE in metrics.json",
                        "figure": _figure(figures / "reliability.png", "Reliability diagram (test)")},
        "curves": [_figure(figures / "roc.png", "ROC (test)"), _figure(figures / "pr.png", "Precision-recall (test)")],
        "failures": _failures(report_dir, ctx),
        "weights": {"reference": weights, "random_init": is_random_init(weights), "licence": weights_licence(weights),
                    "sha256": ctx.weights_sha256 or "unknown", "model": str(model_meta.get("model", "unknown")),
                    "baselines": [[b, w, weights_licence(w)] for b, w in ctx.baseline_weights.items()]},
    }
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env.from_string(TEMPLATE).render(**values)
