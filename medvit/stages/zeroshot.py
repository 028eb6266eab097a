"""Score CLIP zero-shot and linear-probe baselines on the same splits as finetune.

Writes, under --out (default baselines/<domain>)::

    scores/clip_zeroshot/{val,test}.csv   the shared score-table format (medvit.data.scores)
    scores/linear_probe/{val,test}.csv    (when zeroshot.linear_probe.enabled)
    meta.json      {"baselines": {name: provenance incl. "weights"}, "pipeline_id", "run_id", ...}
    metrics.json   {name: {"val/auroc_macro", ...}, "weights": provenance}

and one MLflow run ``zeroshot-<domain>-<commit>`` tagged with the pipeline id, the
weights provenance and the prompt hash. Image embeddings are cached under
$MEDVIT_CACHE_DIR or <repo>/.cache/medvit, so a re-run with new prompts only
re-encodes the text.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import shutil
import tempfile
from pathlib import Path

from medvit.config import Params

HELP = "Score CLIP zero-shot and linear-probe baselines on the same splits."
log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache", default=None, help="ingest cache folder (default: per --domain)")
    parser.add_argument("--out", default=None, help="output folder for baseline score tables (default: per --domain)")


def prompts_file(path: str) -> Path:
    """``zeroshot.prompts`` relative to the working directory, else to the package root (installed wheels)."""
    p = Path(path)
    packaged = Path(__file__).resolve().parents[2] / p
    return packaged if not p.is_absolute() and not p.is_file() and packaged.is_file() else p


def run(args: argparse.Namespace, params: Params) -> int:
    from medvit.io.atomic import write_json_atomic
    from medvit.data.manifest import read_manifest
    from medvit.data.scores import write_scores
    from medvit.metrics import summary
    from medvit.paths import default_path
    from medvit.lineage import params_hash, pipeline_id
    from medvit.tracking.runs import repo_root, stage_run
    from medvit.zeroshot.backends import load_backend
    from medvit.zeroshot.baselines import LINEAR_PROBE, score_baselines
    from medvit.zeroshot.prompts import load_prompts

    zs, domain = params.zeroshot, args.domain
    cfg = getattr(zs, domain)
    cache = Path(args.cache or default_path("cache", domain))
    out = Path(args.out or default_path("baselines", domain))
    manifest = read_manifest(cache)
    prompts = load_prompts(prompts_file(zs.prompts), domain, manifest.label_names)
    backend = load_backend(cfg.backend, cfg.model, cfg.weights, allow_random_init=zs.allow_random_init, seed=zs.seed)
    embedding_root = os.environ.get("MEDVIT_CACHE_DIR") or repo_root() / ".cache" / "medvit"
    result = score_baselines(backend, cache, manifest, cfg, prompts, scoring=zs.scoring, probe=zs.linear_probe,
                             batch_size=zs.batch_size, seed=zs.seed, embedding_root=embedding_root)

    data_hash = manifest.digest()
    tags = {"data_hash": data_hash, "params_hash": params_hash(params, "zeroshot", domain),
            "pipeline_id": pipeline_id(params, "zeroshot", domain, data_hash),
            "weights": backend.weights, "prompt_hash": prompts.digest(), "backend": backend.backend,
            "model": backend.model_id, "scoring": zs.scoring}
    metrics = {name: {k: v for s in result.ids for k, v in summary(result.targets[s], by_split[s], f"{s}/").items()}
               for name, by_split in result.scores.items()}
    with stage_run("zeroshot", domain, tags=tags) as mlrun:
        if not zs.linear_probe.enabled:
            shutil.rmtree(out / "scores" / LINEAR_PROBE, ignore_errors=True)  # no stale probe scores
        for name, by_split in result.scores.items():
            for split, scores in by_split.items():
                write_scores(out / "scores" / name / f"{split}.csv", result.ids[split], scores, manifest.label_names)
        clean = {n: {k: (None if math.isnan(v) else v) for k, v in m.items()} for n, m in metrics.items()}
        write_json_atomic(out / "metrics.json", {**clean, "weights": backend.weights})
        write_json_atomic(out / "meta.json", {"baselines": result.info, "label_names": list(manifest.label_names),
                                              "pipeline_id": tags["pipeline_id"], "run_id": mlrun.run_id,
                                              "data_hash": data_hash, "params_hash": tags["params_hash"],
                                              "prompt_hash": tags["prompt_hash"], "weights": backend.weights})
        mlrun.log_params({"zeroshot": zs.dump_for(domain), "model": backend.describe()})
        mlrun.log_metrics({f"{n}/{k}": v for n, m in metrics.items() for k, v in m.items() if not math.isnan(v)})
        mlrun.log_metrics({f"time/{k}": v for k, v in result.timings.items()})
        mlrun.set_tags({"embeddings_reused": all(result.reused.values())})
        for name in ("meta.json", "metrics.json"):
            mlrun.log_artifact(out / name)
        with tempfile.TemporaryDirectory() as tmp:  # the resolved prompt set behind prompt_hash
            write_json_atomic(Path(tmp) / "prompts.json", prompts.to_dict())
            mlrun.log_artifact(Path(tmp) / "prompts.json")
    for name, m in metrics.items():
        log.info("%s (%s): test/auroc_macro=%.3f val/auroc_macro=%.3f", name, backend.weights,
                 m.get("test/auroc_macro", math.nan), m.get("val/auroc_macro", math.nan))
    return 0
