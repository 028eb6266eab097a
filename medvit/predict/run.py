"""Batch inference: files -> decode in worker processes -> the classifier in batches -> tables, SRs, maps.

Files are decoded by ``medvit.ingest.pool.parallel_map`` (ordered, a bounded
number of files in flight, a file that kills its worker becomes an error row),
which yields results while the workers decode ahead, so decoding overlaps the
model's forward passes in this process. Every input file ends up with at least
one row: a row per frame / image / chip with its scores, or one error row with
the reason ingest would give.

Outputs under ``out``:

* ``predictions.parquet`` and ``predictions.csv``: ``id``, ``source``,
  ``frame`` (DICOM frame), ``bounds`` / ``crs`` (chips), ``score:<label>``,
  ``label:<label>`` (1 when score >= the model's threshold), ``error``,
  ``model``, ``version``, ``sr`` (the SR file, or why none was written);
* ``sr/<id>.dcm`` with ``sr``: a DICOM Comprehensive 3D SR per scored image
  (``medvit.io.sr``);
* ``overlays/<id>.png`` with ``overlays``: the attention-rollout overlay
  (``medvit.evaluate.attention``);
* ``maps/<scene>.scores.tif`` and ``maps/<scene>.positive.geojson`` for
  satellite scenes (``medvit.io.prediction_map``), ``<scene>`` the scene's path
  under ``--input`` without its suffix.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from medvit.data.preprocess import Preprocessor
from medvit.deid import Pseudonymizer
from medvit.evaluate import plots
from medvit.evaluate.attention import attention_rollout, display_image, find_vit
from medvit.ingest.pool import parallel_map
from medvit.io.atomic import atomic_path
from medvit.io.prediction_map import write_prediction_map
from medvit.io.sr import write_sr
from medvit.models.classifier import load_classifier
from medvit.predict.decode import Decoded, FileTask, PredictState, crash_result, decode_file

log = logging.getLogger(__name__)

SCORE_PREFIX = "score:"
LABEL_PREFIX = "label:"
TABLE = "predictions"


@dataclass(frozen=True)
class ModelFiles:
    """A servable model on local disk (``medvit.tracking.local_model`` resolves registry URIs to this)."""

    classifier: Path      # model.safetensors + meta.json
    thresholds: Path      # thresholds.json
    name: str
    version: str


@dataclass(frozen=True)
class Options:
    """How to run: outputs beyond the table, decode processes, model batch size."""

    sr: bool = False
    overlays: bool = False
    workers: int = 2
    batch_size: int = 16


@dataclass
class Summary:
    """Counts of one run (printed by the CLI)."""

    files: int = 0
    rows: int = 0
    errors: int = 0
    srs: int = 0
    overlays: int = 0
    maps: int = 0
    outputs: list[Path] = field(default_factory=list)


class Predictor:
    """The classifier, its preprocessing and thresholds, loaded from a model's files."""

    def __init__(self, files: ModelFiles) -> None:
        self.model, self.meta = load_classifier(files.classifier)
        if "preprocess" not in self.meta:
            raise ValueError(f"{files.classifier / 'meta.json'}: no 'preprocess' entry (a model fine-tuned before "
                             "the preprocessing was saved with it); re-run ingest, finetune and register")
        self.prep = Preprocessor.from_json(self.meta["preprocess"])
        spec = json.loads(files.thresholds.read_text())
        self.label_names: list[str] = list(self.meta["label_names"])
        if list(spec["label_names"]) != self.label_names:
            raise ValueError(f"{files.thresholds}: thresholds for {spec['label_names']}, "
                             f"the classifier predicts {self.label_names}")
        self.thresholds = np.asarray(spec["thresholds"], dtype=np.float64)  # (L,)
        self.files = files

    @torch.no_grad()
    def scores(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, torch.Tensor]:
        """(B, L) sigmoid scores of cache-scaled images, and the (B, C, S, S) model input."""
        x = self.prep.to_model_input(np.stack(images))
        return torch.sigmoid(self.model(x)).double().numpy(), x


def predict(inputs: Sequence[tuple[str, Path]], model: ModelFiles, out: Path, options: Options,
            pseudo: Pseudonymizer) -> Summary:
    """Score every input file and write the outputs (see the module docstring) into ``out``.

    Args:
        inputs: (key, path) per file; the key is the path relative to ``--input``.
        model: the model's local files.
        out: output folder.
        options: SR, overlays, workers, batch size.
        pseudo: the de-identification key's pseudonymizer.
    """
    predictor = Predictor(model)
    out.mkdir(parents=True, exist_ok=True)
    state = PredictState(predictor.prep, pseudo, options.sr and predictor.prep.domain == "medical")
    tasks = [FileTask(key, str(path)) for key, path in inputs]
    writer = _Writer(predictor, out, options, dict(inputs))
    pending: list[Decoded] = []
    for decoded in parallel_map(decode_file, tasks, options.workers, state, f"predict {predictor.prep.domain}",
                                lambda task, err: crash_result(task, pseudo), max_chunk=1,
                                ahead=2 * options.batch_size):  # the next batch decodes while one is scored
        pending.append(decoded)
        if sum(1 for d in pending for i in d.items if i.image is not None) >= options.batch_size:
            writer.flush(pending)
            pending = []
    writer.flush(pending)
    return writer.finish()


class _Writer:
    """Scores pending files in batches and writes their rows, SRs, overlays and maps."""

    def __init__(self, predictor: Predictor, out: Path, options: Options, paths: dict[str, Path]) -> None:
        self.p, self.out, self.options, self.paths = predictor, out, options, paths
        self.rows: list[dict[str, Any]] = []
        self.summary = Summary()
        self.vit = find_vit(predictor.model) if options.overlays else None

    def flush(self, files: list[Decoded]) -> None:
        items = [i for d in files for i in d.items if i.image is not None]
        scores: dict[int, np.ndarray] = {}
        for start in range(0, len(items), self.options.batch_size):
            batch = items[start:start + self.options.batch_size]
            s, x = self.p.scores([i.image for i in batch])
            scores.update((id(i), row) for i, row in zip(batch, s))
            if self.vit is not None:
                self._overlays(batch, s, attention_rollout(self.vit, x).numpy())
        for d in files:
            self._file(d, scores)

    def _file(self, d: Decoded, scores: dict[int, np.ndarray]) -> None:
        self.summary.files += 1
        names = self.p.label_names
        if d.error or not d.items:
            self._row(d, ident="", score=None, error=d.error or "no images: nothing to score")
            return
        multi = len(d.items) > 1
        chips = []
        for item in d.items:
            s = scores.get(id(item))
            sr = ""
            if s is not None and self.options.sr and self.p.prep.domain == "medical":
                sr = self._sr(d, item, s, multi)
            self._row(d, ident=item.id, score=s, error=item.error, frame=item.frame, bounds=item.bounds,
                      crs=item.crs, sr=sr)
            if s is not None and item.origin is not None:
                chips.append((item.id, item.origin, s))
        if chips:
            ids, origins, rows = zip(*chips)
            # maps/ mirrors --input: two scenes named alike in different folders keep both maps.
            write_prediction_map(self.paths[d.key], self.out / "maps" / Path(d.key).parent, list(ids), list(origins), np.stack(rows),
                                 names, self.p.thresholds, self.p.prep.size, self.p.prep.stride,
                                 tags={"model": self.p.files.name, "version": self.p.files.version})
            self.summary.maps += 1

    def _sr(self, d: Decoded, item: Any, s: np.ndarray, multi: bool) -> str:
        if d.reference is None:
            return f"not written: {d.sr_error or 'not a DICOM file'}"
        path = self.out / "sr" / f"{item.id}.dcm"
        write_sr(path, d.reference, model_name=self.p.files.name, model_version=self.p.files.version,
                 label_names=self.p.label_names, scores=list(s), thresholds=list(self.p.thresholds),
                 frame=item.frame if multi else None)
        self.summary.srs += 1
        return str(path.relative_to(self.out))

    def _row(self, d: Decoded, *, ident: str, score: np.ndarray | None, error: str, frame: int | None = None,
             bounds: str = "", crs: str = "", sr: str = "") -> None:
        names = self.p.label_names
        row: dict[str, Any] = {"id": ident, "source": d.source, "frame": frame, "bounds": bounds, "crs": crs}
        for k, n in enumerate(names):
            row[SCORE_PREFIX + n] = float(score[k]) if score is not None else np.nan
        for k, n in enumerate(names):
            row[LABEL_PREFIX + n] = int(score[k] >= self.p.thresholds[k]) if score is not None else pd.NA
        row.update(error=error or ("" if score is not None else "not scored"), model=self.p.files.name,
                   version=self.p.files.version, sr=sr)
        self.rows.append(row)
        self.summary.rows += 1
        self.summary.errors += bool(row["error"])

    def _overlays(self, batch: list[Any], scores: np.ndarray, maps: np.ndarray) -> None:
        folder = self.out / "overlays"
        folder.mkdir(parents=True, exist_ok=True)
        names = self.p.label_names
        for item, s, heat in zip(batch, scores, maps):
            top = np.argsort(-s)[:3]
            title = "top scores " + ", ".join(f"{names[j]} {s[j]:.2f}" for j in top) + " | not for clinical use"
            plots.save_overlay(display_image(item.image), heat, title, folder / f"{item.id}.png")
            self.summary.overlays += 1

    def finish(self) -> Summary:
        names = self.p.label_names
        frame = pd.DataFrame(self.rows, columns=["id", "source", "frame", "bounds", "crs",
                                                 *(SCORE_PREFIX + n for n in names),
                                                 *(LABEL_PREFIX + n for n in names),
                                                 "error", "model", "version", "sr"])
        frame = frame.astype({"frame": "Int64", **{LABEL_PREFIX + n: "Int64" for n in names}})
        for suffix in ("parquet", "csv"):
            path = self.out / f"{TABLE}.{suffix}"
            with atomic_path(path) as tmp:
                frame.to_parquet(tmp, index=False) if suffix == "parquet" else frame.to_csv(tmp, index=False)
            self.summary.outputs.append(path)
        return self.summary
