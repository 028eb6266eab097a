"""The one code path by which evaluate reads score tables: read, check against the manifest, align.

Every model (the fine-tuned one and each baseline) goes through ``aligned_scores``,
so all of them are scored on exactly the manifest's rows of a split, in manifest
order, with the manifest's label order.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from medvit.data.manifest import Manifest
from medvit.data.scores import read_scores
from medvit.errors import UserError

FINETUNE = "finetune"


def _examples(items: set[str], n: int = 3) -> str:
    shown = ", ".join(sorted(items)[:n])
    return f"{len(items)} (e.g. {shown})" if len(items) > n else f"{len(items)} ({shown})"


def aligned_scores(manifest: Manifest, path: str | Path, split: str) -> np.ndarray:
    """(N, L) scores of ``split`` in manifest row order and label order.

    Raises:
        FileNotFoundError: the table is missing.
        UserError: naming ``path``, when its label columns are not the manifest's
            labels, or its ids are not exactly the split's ids (missing, extra or
            duplicated).
    """
    path = Path(path)
    try:
        table = read_scores(path)
    except ValueError as err:
        raise UserError(str(err)) from None
    want = manifest.label_names
    if set(table.label_names) != set(want) or len(table.label_names) != len(want):
        missing, extra = set(want) - set(table.label_names), set(table.label_names) - set(want)
        raise UserError(
            f"{path}: label columns do not match {manifest.path.parent / 'labels.json'}: "
            f"missing {sorted(missing)}, unexpected {sorted(extra)}. "
            "Re-run the stage that wrote this table against the current cache."
        )
    ids = manifest.split(split)["id"].astype(str).tolist()
    row_of = {i: k for k, i in enumerate(table.ids)}
    problems = []
    if len(row_of) != len(table.ids):
        dup = {i for i, c in Counter(table.ids).items() if c > 1}
        problems.append(f"duplicated ids: {_examples(dup)}")
    missing_ids, extra_ids = set(ids) - set(row_of), set(row_of) - set(ids)
    if missing_ids:
        problems.append(f"{split} ids missing from the table: {_examples(missing_ids)}")
    if extra_ids:
        problems.append(f"ids not in the manifest's {split} split: {_examples(extra_ids)}")
    if problems:
        raise UserError(
            f"{path}: ids do not match {manifest.path} ({'; '.join(problems)}). "
            "The table was made from a different cache or split; re-run the stage that wrote it."
        )
    col = [table.label_names.index(n) for n in want]
    return table.scores[np.array([row_of[i] for i in ids])][:, col]


def discover_models(finetune_dir: str | Path, baselines_dir: str | Path) -> dict[str, Path]:
    """Score folders by model name: ``finetune`` first, then every baseline folder, sorted.

    Raises:
        FileNotFoundError: naming the folder when the fine-tuned scores or the baselines are missing.
    """
    models = {FINETUNE: Path(finetune_dir) / "scores"}
    if not models[FINETUNE].is_dir():
        raise FileNotFoundError(f"{models[FINETUNE]}: no fine-tuned score tables; run `dvc repro finetune`")
    root = Path(baselines_dir) / "scores"
    found = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not found:
        raise FileNotFoundError(f"{root}: no baseline score folders (scores/<baseline>/{{val,test}}.csv); "
                                "run `dvc repro zeroshot`")
    for p in found:
        if p.name == FINETUNE:
            raise UserError(f"{p}: a baseline may not be called '{FINETUNE}'")
        models[p.name] = p
    return models
