"""Imports go one way: io -> data -> models -> train | zeroshot -> evaluate, tracking only from stages.

Each top-level unit of medvit/ (a package or a module) has a layer; a unit may import only units
in lower layers. A new import against the direction fails here with the file and line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import medvit

PACKAGE = Path(medvit.__file__).parent

# Shared leaves first; every unit imports only from a strictly lower layer.
LAYER = {
    "errors": 0, "section": 0, "hashing": 0, "weights": 0, "paths": 0, "metrics": 0, "deid": 0,
    "config": 1, "io": 1,
    "data": 2, "lineage": 2,
    "models": 3, "ingest": 3, "sample": 3,
    "train": 4, "zeroshot": 4,
    "evaluate": 5,
    "tracking": 6, "predict": 6,
    "stages": 7,
    "cli": 8,
}


def _unit(path: Path) -> str:
    return path.relative_to(PACKAGE).with_suffix("").parts[0]


def _medvit_imports(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        out += [(node.lineno, n.split(".")[1]) for n in names if n.startswith("medvit.")]
    return out


def _files() -> list[Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py")) if p.parent != PACKAGE or p.name != "__init__.py"]


def test_every_unit_has_a_layer() -> None:
    assert sorted({_unit(p) for p in _files()} - set(LAYER)) == []


def test_imports_point_down_the_layers() -> None:
    offenders = [f"{p.relative_to(PACKAGE.parent)}:{line} imports medvit.{target}"
                 for p in _files() for line, target in _medvit_imports(p)
                 if target != _unit(p) and LAYER[target] >= LAYER[_unit(p)]]
    assert offenders == []


def test_tracking_is_imported_only_by_stages() -> None:
    offenders = [f"{p.relative_to(PACKAGE.parent)}:{line}" for p in _files()
                 for line, target in _medvit_imports(p)
                 if target == "tracking" and _unit(p) not in {"tracking", "stages"}]
    assert offenders == []
