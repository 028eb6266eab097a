"""``ingest(domain, raw, labels, out, cfg)``: the whole ingest stage, for any registered source."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from medvit.config import IngestConfig
from medvit.data.cache import read_stats
from medvit.data.preprocess import Preprocessor, write_preprocessor
from medvit.ingest.finish import finish
from medvit.ingest.pool import parallel_map, tune_malloc
from medvit.ingest.publish import publish, temp_folder
from medvit.ingest.registry import make_source
from medvit.ingest.source import Collected, Source


def ingest(domain: str, raw: Path, labels: Path, out: Path, cfg: IngestConfig) -> dict[str, Any]:
    """Run the ingest stage into ``out``; return report.json's content.

    Raises:
        UserError: label-file problems, too many rejects, nothing ingested.
        FileNotFoundError: ``raw`` or ``labels`` missing.
    """
    raw, labels, out = Path(os.path.abspath(raw)), Path(labels), Path(out)
    if not raw.is_dir():
        raise FileNotFoundError(f"{raw}: raw input folder not found; run the sample stage or pass --raw DIR")
    tune_malloc()
    tmp = temp_folder(out)
    try:
        source = make_source(domain, raw, labels, tmp, cfg)
        try:
            report = build(source, tmp, cfg)
            # The decode params and the nodata fill, for finetune's meta.json and the served model.
            write_preprocessor(tmp, Preprocessor.from_params(cfg, domain, read_stats(tmp)))
        finally:
            source.close()
        publish(tmp, out)
        return report
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def build(source: Source, tmp: Path, cfg: IngestConfig) -> dict[str, Any]:
    """List, label, plan, decode in the pool and collect, then finish into ``tmp``; return the report."""
    files = source.list_inputs()
    label_names = source.read_labels()
    col = Collected(n_input=len(files))
    plan = source.plan(col)
    for result in parallel_map(plan.decode, plan.tasks, plan.workers, plan.state, source.desc, plan.isolate,
                               max_chunk=plan.max_chunk, split=plan.split, files=plan.files):
        source.collect(result, col)
    cache = source.cache_info(col)
    return finish(tmp, col, label_names, cfg, cache, plan.workers, source.fill_nodata)
