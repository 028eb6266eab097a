"""Apply the quality gate and register the model in the MLflow Model Registry.

Reads models/<d>/{model.safetensors, meta.json} and reports/<d>/{metrics.json,
thresholds.json}. When the gate passes, logs the servable pyfunc (and the ONNX
export) in a ``register`` MLflow run and creates a version of ``medvit-<domain>``
with the ``candidate`` alias, ``review_status=pending`` and the model card as its
description; an unchanged model (same weights and thresholds) registers nothing
new. Each version gets its review report (``medvit.evaluate.review``): the logged
copy ``reports/<d>/registry/review_report.html`` (its sha256 in the version tag
``review_report_sha256``; medical images only with ``evaluate.upload_patient_pixels``)
and the local copy ``reports/<d>/review/review_report.html``, which may hold them.
When the gate refuses, nothing is registered: the reason is printed, tagged
on the run and written to reports/<d>/registry/registration.json; the exit code
is 1 only with ``register.fail_on_gate: true``.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medvit.config import Params, RegisterConfig
from medvit.errors import UserError
from medvit.paths import default_path

if TYPE_CHECKING:  # imported inside run(): the CLI stays fast to start
    from medvit.evaluate.gate import Gate
    from medvit.evaluate.outputs import EvaluateOutputs

HELP = "Apply the quality gate and register the model in the MLflow Model Registry."
ONNX_TOLERANCE = 1e-4  # max |onnxruntime - torch| logit difference accepted for the export
log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--finetune", default=None, help="finetune output folder (default: per --domain)")
    parser.add_argument("--report", default=None, help="evaluate output folder (default: per --domain)")
    parser.add_argument("--cache", default=None,
                        help="ingest cache folder, for its report.json (default: per --domain)")
    parser.add_argument("--out", default=None, help="folder for the registration record (default: per --domain)")


def _export_onnx(model_dir: Path, opset: int, tmp: Path) -> tuple[Path, int, float]:
    """ONNX file, its opset and its max abs logit difference to PyTorch on a synthetic batch."""
    import torch

    from medvit.models.classifier import load_classifier
    from medvit.models.export import export_onnx, onnx_max_abs_diff, onnx_opset

    model, meta = load_classifier(model_dir)
    path = export_onnx(model, meta, tmp / "model.onnx", opset)
    size = int(meta["img_size"])
    images = torch.randn(3, int(meta["in_chans"]), size, size, generator=torch.Generator().manual_seed(0))
    diff = onnx_max_abs_diff(model, path, images)
    if not diff <= ONNX_TOLERANCE:
        raise UserError(f"the ONNX export differs from PyTorch by {diff:.2e} (> {ONNX_TOLERANCE:g}); "
                        "set register.onnx: false in params.yaml to register without it")
    return path, onnx_opset(path), diff


def _new_version(cfg: RegisterConfig, model_dir: Path, ev: EvaluateOutputs, gate: Gate, card_args: dict[str, Any],
                 run_id: str | None, client: Any, thresholds_sha: str, tmp: Path) -> Any:
    """Export ONNX (when enabled), log the servable pyfunc in the active run and register it as a new version."""
    from medvit.tracking import card, registry

    onnx_path, onnx_opset, diff = None, None, None
    if cfg.onnx:
        onnx_path, onnx_opset, diff = _export_onnx(model_dir, cfg.onnx_opset, tmp)
    meta = card_args["meta"]
    info = registry.log_servable_model(model_dir, meta["label_names"], ev.thresholds, ev.threshold_method, onnx_path,
                                       card_args["registered_model"])
    card_md = card.render_card(**card_args, onnx_opset=onnx_opset)
    tags = registry.version_tags(
        meta, finetune=ev.finetune, baselines=ev.baselines, threshold_method=ev.threshold_method,
        gate_passed=gate.passed, gate_reason=gate.summary(), weights_sha=card_args["weights_sha256"],
        thresholds_sha=thresholds_sha, git_commit=card_args["git_commit"], run_id=run_id, onnx_opset=onnx_opset,
        onnx_diff=diff)
    return registry.register_version(client, card_args["registered_model"], info, run_id, tags, card_md)


def _review_reports(params: Params, domain: str, meta: dict[str, Any], report_dir: Path, cache: Path, out: Path,
                    version: Any, client: Any, card_args: dict[str, Any], gate: Gate) -> str | None:
    """Write the local review report, and the logged one of ``version`` (logged, unless the version already
    has one: then that one is fetched back); return its sha256. Without a version (gate refused) only the
    local report is written. The local report is written on every run: DVC removes it before the stage runs."""
    from medvit.evaluate.review import ReviewContext, render_review_report
    from medvit.tracking import report
    from medvit.tracking.runs import experiment_name

    name = card_args["registered_model"]
    logged = out / report.REPORT_NAME
    out.mkdir(parents=True, exist_ok=True)
    runs, baseline_weights = {"finetune": str(meta.get("run_id") or "")}, {}
    if client is not None:
        upstream, baseline_weights = report.upstream_runs(client, runs["finetune"], experiment_name(domain))
        runs.update(upstream)
    runs["register"] = version.run_id if version else ""
    lineage = {"git_commit": card_args["git_commit"], **{k: str(meta.get(k, "unknown")) for k in
                                                        ("params_hash", "data_hash", "pipeline_id")},
               **{f"{k} run id": v for k, v in runs.items()}}
    number = str(version.version) if version else "none (the quality gate refused registration)"
    links = report.run_links(client, runs) if client is not None else {}
    ctx = ReviewContext(domain, name, number, params.register.intended_use, params.register.limitations, lineage, links,
                        card_args["weights_sha256"], gate.summary(), baseline_weights=baseline_weights)
    ingest_report = cache / "report.json"
    pixels = params.evaluate.upload_patient_pixels or domain != "medical"
    local = report_dir / "review" / report.REPORT_NAME  # may hold medical images: never logged
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_text(render_review_report(report_dir, meta, ingest_report, replace(ctx, include_pixels=True)))
    if version is None:
        return None
    if report.report_sha256(version):  # unchanged version: keeps the report it was logged (and maybe approved) with
        with tempfile.TemporaryDirectory() as tmp:
            logged.write_bytes(report.fetch_report(client, version, Path(tmp), logged).read_bytes())
        return report.report_sha256(version)
    logged.write_text(render_review_report(report_dir, meta, ingest_report, replace(ctx, include_pixels=pixels)))
    return report.log_report(client, name, version, logged)


def run(args: argparse.Namespace, params: Params) -> int:
    from medvit.evaluate.gate import apply_gate
    from medvit.evaluate.outputs import read_meta, read_outputs
    from medvit.hashing import sha256_file
    from medvit.io.atomic import write_json_atomic
    from medvit.tracking import card, registry
    from medvit.tracking.runs import git_commit, stage_run, tracking_uri

    cfg, domain = params.register, args.domain
    model_dir = Path(args.finetune or default_path("finetune", domain))
    report_dir = Path(args.report or default_path("report", domain))
    out = Path(args.out or default_path("registry", domain))
    cache = Path(args.cache or default_path("cache", domain))
    meta = read_meta(model_dir)
    ev = read_outputs(report_dir, meta["label_names"])
    gate = apply_gate(ev.finetune, ev.baselines, cfg.min_auroc, cfg.min_margin)
    name = registry.registered_model_name(domain)
    weights_sha = sha256_file(model_dir / "model.safetensors")
    thresholds_sha = registry.thresholds_sha256(meta["label_names"], ev.thresholds)
    card_args = dict(registered_model=name, domain=domain, meta=meta, finetune_metrics=ev.finetune,
                     baseline_metrics=ev.baselines, thresholds=ev.thresholds, threshold_method=ev.threshold_method,
                     gate=gate.to_dict(), weights_sha256=weights_sha, git_commit=git_commit())
    record: dict[str, Any] = {"registered_model": name, "status": "refused", "version": None, "aliases": [],
                              "gate": gate.to_dict(), "weights": meta["weights"], "weights_sha256": weights_sha,
                              "thresholds_sha256": thresholds_sha, "git_commit": card_args["git_commit"],
                              "tracking_uri": registry.safe_uri(tracking_uri())}
    card_md = None
    lineage = {k: meta.get(k, "unknown") for k in ("pipeline_id", "data_hash", "params_hash", "weights")}
    with stage_run("register", domain, lineage) as run, tempfile.TemporaryDirectory() as tmp:
        record["run_id"] = run.run_id
        run.log_params({"register": cfg.model_dump(mode="json")})
        run.log_metrics({k: v for k, v in ev.finetune.items()
                         if k.startswith("test/") and isinstance(v, (int, float)) and math.isfinite(v)})
        run.set_tags({"gate": "passed" if gate.passed else "refused", "gate_reason": gate.summary()[:5000],
                      "weights_sha256": weights_sha, "registered_model": name})
        if gate.passed:
            if not run.active:
                raise UserError(f"cannot register: MLflow is unreachable ({run.error}). Check MLFLOW_TRACKING_URI.")
            client = registry.client()
            version = registry.find_version(client, name, weights_sha, thresholds_sha)
            record["status"] = "unchanged" if version else "registered"
            if version is None:
                version = _new_version(cfg, model_dir, ev, gate, card_args, run.run_id, client, thresholds_sha,
                                       Path(tmp))
            card_md = version.description
            record["review_report_sha256"] = _review_reports(params, domain, meta, report_dir, cache, out, version,
                                                             client, card_args, gate)
            record.update(version=str(version.version), aliases=list(version.aliases),
                          review_status=version.tags.get("review_status"), model_uri=f"models:/{name}/{version.version}")
            run.set_tags({"registered_version": version.version, "registration": record["status"]})
        else:
            _review_reports(params, domain, meta, report_dir, cache, out, None, None, card_args, gate)
        out.mkdir(parents=True, exist_ok=True)
        (out / "model_card.md").write_text(card_md or card.render_card(**card_args, onnx_opset=None))
        write_json_atomic(out / "registration.json", record)
        run.log_artifacts(out, "registry")
    if not gate.passed:
        print(f"medvit register: quality gate REFUSED {name}, nothing registered: {gate.summary()}", file=sys.stderr)
        return 1 if cfg.fail_on_gate else 0
    verb = "registered" if record["status"] == "registered" else "unchanged, already registered as"
    log.info("%s %s version %s (aliases: %s)", verb, name, record["version"], ", ".join(record["aliases"]) or "none")
    return 0
