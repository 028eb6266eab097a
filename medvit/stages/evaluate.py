"""Compare the fine-tuned model with every baseline on the same test split.

Reads the manifest and the score tables ``models/<d>/scores/{val,test}.csv`` and
``baselines/<d>/scores/<baseline>/{val,test}.csv`` through one code path, then
writes to ``reports/<d>/``: metrics.json (DVC metrics), thresholds.json (chosen
on val), per_label.csv, comparison.md/.html, plots/*.csv (``dvc plots``) and
figures/*.png, plus the review material of ``evaluate.analysis`` (intervals.json,
subgroups.csv and its forest plot, failures/, the data description), and logs one
MLflow run linked to the finetune and zeroshot runs by the pipeline id.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from medvit.config import Params
from medvit.errors import UserError
from medvit.paths import default_path

HELP = "Compare the fine-tuned model with the baselines: metrics, CIs, plots."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache", default=None, help="ingest cache folder (default: per --domain)")
    parser.add_argument("--finetune", default=None, help="finetune output folder (default: per --domain)")
    parser.add_argument("--baselines", default=None, help="zeroshot output folder (default: per --domain)")
    parser.add_argument("--out", default=None, help="report output folder (default: per --domain)")


def _meta(path: Path, stage: str) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; run the {stage} stage (`dvc repro {stage}`)")
    return json.loads(path.read_text())


def run(args: argparse.Namespace, params: Params) -> int:
    from medvit.io.atomic import write_json_atomic
    from medvit.data.manifest import read_manifest
    from medvit.evaluate import figures, report
    from medvit.evaluate.analysis import write_analysis
    from medvit.evaluate.inputs import FINETUNE, aligned_scores, discover_models
    from medvit.evaluate.provenance import lineage
    from medvit.lineage import params_hash, pipeline_id
    from medvit.tracking.runs import stage_run

    d, cfg = args.domain, params.evaluate
    cache = Path(args.cache or default_path("cache", d))
    ft_dir = Path(args.finetune or default_path("finetune", d))
    bl_dir = Path(args.baselines or default_path("baselines", d))
    out = Path(args.out or default_path("report", d))
    manifest = read_manifest(cache)
    if len(manifest.split("test")) == 0:
        raise UserError(f"{manifest.path}: the test split is empty; check ingest.split_fractions and re-run ingest")
    models = discover_models(ft_dir, bl_dir)
    val = {m: aligned_scores(manifest, p / "val.csv", "val") for m, p in models.items()}
    test = {m: aligned_scores(manifest, p / "test.csv", "test") for m, p in models.items()}
    y_test = manifest.labels("test")
    ev = report.evaluate(manifest.label_names, manifest.labels("val"), y_test,
                         manifest.split("test")["group"].astype(str).tolist(), val, test, cfg)
    data_hash = manifest.digest()
    # Stale check, like with like: the id each upstream stage recorded vs the id its declared inputs give now.
    expected = {s: pipeline_id(params, s, d, data_hash) for s in ("finetune", "zeroshot")}
    tags, notes = lineage(
        _meta(ft_dir / "meta.json", "finetune"), _meta(bl_dir / "meta.json", "zeroshot"), data_hash, expected,
        pipeline_id(params, "evaluate", d, data_hash), params_hash(params, "evaluate", d), ev)

    out.mkdir(parents=True, exist_ok=True)
    medical = d == "medical"
    burned = medical and params.ingest.medical.allow_burned_in
    extra = write_analysis(ev, manifest, test, cache, ft_dir, out, cfg, getattr(cfg.subgroups, d),
                           params.register.min_auroc, burned_in_possible=burned)
    notes = [*notes, *extra.notes]
    metrics = {**report.metrics_json(ev), **extra.metrics}
    write_json_atomic(out / "metrics.json", metrics)
    write_json_atomic(out / "thresholds.json", report.thresholds_json(ev))
    report.label_table(ev).to_csv(out / "per_label.csv", index=False, float_format="%.6g")
    title = f"medvit {d}: fine-tuned model vs baselines"
    (out / "comparison.md").write_text(report.comparison_markdown(ev, title, notes))
    (out / "comparison.html").write_text(report.comparison_html(ev, title, notes))
    pngs = figures.write_plots(ev, y_test, test, out)
    pngs += [extra.forest, *figures.write_attention_maps(
        cache, manifest, ft_dir, test[FINETUNE], cfg.n_attention_maps, cfg.seed, out, burned_in_possible=burned)]

    with stage_run("evaluate", d, tags=tags) as run:
        run.log_params({"evaluate": cfg.dump_for(d)})
        flat = report.flat_metrics(metrics)
        keys = sorted(flat)
        for i in range(0, len(keys), 200):
            run.log_metrics({k: flat[k] for k in keys[i : i + 200]})
        # Cache pixels are de-identified but still patient images: medical overlays stay in the
        # DVC-tracked report, not on a (possibly shared) tracking server, unless upload_patient_pixels.
        pixels_ok = cfg.upload_patient_pixels or not medical
        for png in pngs:
            if pixels_ok or not png.name.startswith(figures.ATTENTION_PREFIX):
                run.log_artifact(png, "figures")
        for png in extra.failure_pngs if pixels_ok else []:
            run.log_artifact(png, "failures")
        run.log_artifacts(out / "plots", "plots")
        for name in ("comparison.md", "comparison.html", "metrics.json", "thresholds.json", "per_label.csv",
                     "intervals.json", "subgroups.csv", "demographics.csv", "label_prevalence.csv",
                     "data_description.json"):
            run.log_artifact(out / name)
        run.log_artifact(out / "failures" / "failures.csv", "failures")
    print(report.console_table(ev))
    print(f"report: {out}/comparison.md   MLflow run: {run.run_id or 'not logged (' + str(run.error) + ')'}")
    return 0
