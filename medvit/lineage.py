"""Lineage ids from dvc.yaml: exactly the params and data a stage declares.

DVC re-runs a stage when a param it declares or a dependency's hash changes, and
only then. The ids a stage records follow the same rule, read from dvc.yaml
(matrix and foreach items resolved as DVC does) and dvc.lock: ``params_hash`` hashes the
values of the stage's declared params; ``pipeline_id`` adds the dvc.lock hashes
of the upstream outputs it depends on, which stand for the upstream stages'
params and data (as in DVC, an upstream re-run with identical outputs changes
nothing downstream). So a params change DVC does not re-run a stage for never
changes the id that stage recorded, and evaluate tells a stale model (the id
finetune recorded differs from the id finetune's declared inputs give now) from
an unrelated change.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Iterable

import yaml

from medvit.config import ConfigError, Params
from medvit.hashing import sha256_json

DVC_FILE = "dvc.yaml"
_ITEM = re.compile(r"\$\{\s*(?:item\.(\w+)|(key))\s*\}")  # ${item.x} (matrix, foreach) and ${key} (foreach)


@dataclass(frozen=True)
class StageDecl:
    """One resolved stage of dvc.yaml, e.g. ``finetune@medical``."""

    name: str
    params: tuple[str, ...]
    deps: tuple[str, ...]
    outs: tuple[str, ...]


def dvc_file() -> Path:
    """dvc.yaml of the working directory (DVC runs stages from there), else the one beside the package."""
    here = Path(DVC_FILE)
    if here.is_file():
        return here.resolve()
    packaged = Path(__file__).resolve().parents[1] / DVC_FILE
    if packaged.is_file():
        return packaged
    raise ConfigError(f"{DVC_FILE} not found in {Path.cwd()}: run the stage from the repo root")


def _paths(entries: Iterable[Any]) -> list[str]:
    """Paths of a deps/outs/metrics/plots list (entries are strings or ``{path: options}``)."""
    out = []
    for e in entries or ():
        out.extend([str(k) for k in e] if isinstance(e, dict) else [str(e)])
    return out


def _sub(text: str, item: dict[str, Any]) -> str:
    return _ITEM.sub(lambda m: str(item[m.group(1) or "key"]), text)


def _resolved(path: Path, name: str, body: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(resolved name, stage body, substitution item) per stage DVC makes of one dvc.yaml entry:
    ``matrix`` (``name@v1@v2``), ``foreach`` over a mapping (``name@key``, with ``do`` as the body) or a plain stage."""
    if "foreach" in body:
        each = body["foreach"]
        if not isinstance(each, dict):
            raise ConfigError(f"{path}: stage {name}: foreach over a list is not supported here; use a mapping")
        return [(f"{name}@{key}", body.get("do") or {}, {"key": key, **(value or {})}) for key, value in each.items()]
    matrix = body.get("matrix")
    items = [dict(zip(matrix, combo)) for combo in itertools.product(*matrix.values())] if matrix else [{}]
    return [("@".join([name, *(str(v) for v in item.values())]), body, item) for item in items]


@cache
def _read(path: Path, mtime_ns: int) -> dict[str, StageDecl]:
    doc = yaml.safe_load(path.read_text()) or {}
    stages: dict[str, StageDecl] = {}
    for name, stage in (doc.get("stages") or {}).items():
        for full, body, item in _resolved(path, name, stage):
            params = []
            for p in body.get("params") or ():
                if isinstance(p, dict):  # {file: [keys]}: only the default params file is read by the stages
                    raise ConfigError(f"{path}: stage {name} declares params from {list(p)}; use params.yaml keys")
                params.append(_sub(str(p), item))
            outs = [_sub(o, item) for key in ("outs", "metrics", "plots") for o in _paths(body.get(key))]
            stages[full] = StageDecl(full, tuple(params), tuple(_sub(d, item) for d in _paths(body.get("deps"))),
                                     tuple(outs))
    return stages


def read_stages(path: str | Path | None = None) -> dict[str, StageDecl]:
    """Every resolved stage of dvc.yaml by name (``stage@domain`` for matrix stages)."""
    p = Path(path) if path is not None else dvc_file()
    return _read(p.resolve(), p.stat().st_mtime_ns)


def _within(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def _lock_hashes(dvc_yaml: Path) -> dict[str, str]:
    """Output path -> hash recorded in the dvc.lock beside ``dvc_yaml`` (empty without one)."""
    lock = dvc_yaml.with_suffix(".lock")
    if not lock.is_file():
        return {}
    doc = yaml.safe_load(lock.read_text()) or {}
    return {str(o["path"]): str(o.get("md5") or o.get("hash") or "") for body in (doc.get("stages") or {}).values()
            for o in body.get("outs") or ()}


def upstream_data(stage: str, domain: str, path: str | Path | None = None) -> dict[str, str]:
    """Hashes (from dvc.lock) of the upstream outputs ``stage@domain`` depends on, by dependency path.

    DVC writes a stage's dvc.lock entry as soon as it finishes, so while ``stage``
    runs these are the outputs it reads. They stand for everything upstream (its
    params and data) exactly as DVC sees it: an upstream change that leaves the
    outputs identical changes nothing here, and DVC does not re-run ``stage``.
    """
    dvc_yaml = Path(path) if path is not None else dvc_file()
    stages = read_stages(dvc_yaml)
    name = f"{stage}@{domain}"
    if name not in stages:
        raise ConfigError(f"{dvc_yaml}: no stage {name}")
    outs = {o for n, decl in stages.items() if n != name for o in decl.outs}
    hashes = _lock_hashes(dvc_yaml)
    return {d: hashes.get(o, "") for d in stages[name].deps for o in outs if _within(d, o)}


def declared_params(stage: str, domain: str, path: str | Path | None = None) -> tuple[str, ...]:
    """The params keys dvc.yaml declares for ``stage@domain``."""
    stages = read_stages(path)
    name = f"{stage}@{domain}"
    if name not in stages:
        raise ConfigError(f"{path or dvc_file()}: no stage {name}")
    return stages[name].params


def params_hash(params: Params, stage: str, domain: str) -> str:
    """Short sha256 of the values of the params ``stage@domain`` declares."""
    values = {}
    for key in declared_params(stage, domain):
        try:
            values[key] = params.value(key)
        except KeyError:
            raise ConfigError(f"{dvc_file()} declares param {key} for {stage}@{domain}, "
                              "but params.yaml has no such key; add it") from None
    return _sha({"params": values})


def pipeline_id(params: Params, stage: str, domain: str, data_hash: str) -> str:
    """Id of the inputs of ``stage@domain``: its declared params, its upstream outputs and ``data_hash``.

    Derived, not random, so separate processes (and a later re-run of evaluate
    alone) agree on it. ``data_hash`` (the manifest digest) keeps the id
    data-specific when the stage runs outside ``dvc repro`` and dvc.lock lags.
    """
    return _sha({"params": params_hash(params, stage, domain), "data": data_hash,
                 "upstream": upstream_data(stage, domain)})


def _sha(obj: Any) -> str:
    return sha256_json(obj, 12)
