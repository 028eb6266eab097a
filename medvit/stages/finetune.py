"""Fine-tune a partially frozen timm ViT (DeiT3) with a multi-label head on the ingest cache.

Writes <out>/model.safetensors (best epoch by val/auroc_macro), meta.json,
scores/{val,test}.csv, metrics.json, history.csv and checkpoint/ (resumable:
re-running after a kill continues from the last epoch when params and data match).
Runs unchanged under `torchrun --nproc-per-node N` (DDP; rank 0 writes and logs).
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from pathlib import Path

from medvit.config import Params
from medvit.paths import default_path

HELP = "Fine-tune the partially frozen DeiT3 with a multi-label head."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache", default=None, help="ingest cache folder (default: per --domain)")
    parser.add_argument("--out", default=None, help="output folder for weights, checkpoint and scores (default: per --domain)")


def run(args: argparse.Namespace, params: Params) -> int:
    from medvit.data.cache import read_stats
    from medvit.data.manifest import read_manifest
    from medvit.lineage import params_hash as declared_hash
    from medvit.lineage import pipeline_id
    from medvit.tracking.runs import StageRun, stage_run
    from medvit.train import distributed as D
    from medvit.train.loop import evaluate, fit
    from medvit.train.report import write_outputs, write_run_artifacts
    from medvit.train.setup import build_training

    cfg, domain = params.finetune.for_domain(args.domain), args.domain
    cache = Path(args.cache or default_path("cache", domain))
    out = Path(args.out or default_path("finetune", domain))
    manifest, stats = read_manifest(cache), read_stats(cache)
    info = D.setup()
    try:
        setup = build_training(cfg, domain, cache, manifest, stats, info)
        data_hash, params_hash = manifest.digest(), declared_hash(params, "finetune", domain)
        pid = pipeline_id(params, "finetune", domain, data_hash)
        config = cfg.dump_for(domain)
        identity = {"params_hash": params_hash, "data_hash": data_hash, "world_size": info.world_size,
                    "params": config, **setup.meta_base}
        tags = {"data_hash": data_hash, "params_hash": params_hash, "pipeline_id": pid, "weights": setup.provenance}
        tracking = (stage_run("finetune", domain, tags, system_metrics=True) if info.is_main
                    else contextlib.nullcontext(StageRun(None, None)))
        with tracking as mlrun:
            mlrun.log_params(config)
            result = fit(setup.model, setup.train, setup.val, cfg, setup.loss, info=info, ckpt_dir=out / "checkpoint",
                         identity=identity, on_epoch=lambda epoch, m: mlrun.log_metrics(m, step=epoch))
            setup.model.load_state_dict(result.best_state)
            final, scores = {"train/loss": result.history[-1]["train/loss"]}, {}
            for split, ds in (("val", setup.val), ("test", setup.test)):
                if ds is not None:  # collective under DDP: every rank evaluates its share
                    m, scores[split] = evaluate(setup.model, ds, setup.loss, cfg.batch_size, info, f"{split}/")
                    final.update(m)
            if info.is_main:
                meta = {**setup.meta_base, "weights": setup.provenance, "pipeline_id": pid, "run_id": mlrun.run_id,
                        "data_hash": data_hash, "params_hash": params_hash}
                summary = {**final, "weights": setup.provenance, "epochs_run": result.epochs_run,
                           "best_epoch": result.best_epoch, "stopped_early": result.stopped_early,
                           "resumed_from_epoch": result.resumed_from, "optimizer_steps": result.steps,
                           "train_seconds": round(result.train_seconds, 3), "world_size": info.world_size,
                           "train_images_per_second": round(result.images_seen / max(result.train_seconds, 1e-9), 3),
                           "frozen_feature_cache": setup.cached_features, "run_id": mlrun.run_id,
                           "tracking_error": mlrun.error, "notes": result.notes}
                write_outputs(out, setup.model, meta, scores, setup.ids, result.history, summary)
                mlrun.set_tags({"resumed_from_epoch": str(result.resumed_from),
                                "frozen_feature_cache": setup.cached_features})
                mlrun.log_metrics({k: v for k, v in final.items() if k.startswith("test/")}, step=result.epochs_run)
                with tempfile.TemporaryDirectory() as tmp:
                    mlrun.log_artifacts(write_run_artifacts(Path(tmp), result.history, manifest.label_names, config,
                                                            f"finetune {domain}"))
                for name in ("history.csv", "meta.json", "metrics.json"):
                    mlrun.log_artifact(out / name)
        if info.is_main and mlrun.error:
            print(f"medvit finetune: WARNING: MLflow tracking failed: {mlrun.error} (outputs in {out} are complete)")
        D.barrier()
    finally:
        D.teardown()
    return 0
