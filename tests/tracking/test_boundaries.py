"""Module boundaries: mlflow only inside medvit/tracking, and no private name imported across modules."""

from __future__ import annotations

import ast
from pathlib import Path

import medvit

PACKAGE = Path(medvit.__file__).parent


def _imports(path: Path) -> list[tuple[int, str, str | None]]:
    """(line, module, imported name or None) of every import in ``path``."""
    out: list[tuple[int, str, str | None]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, None) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out += [(node.lineno, node.module, a.name) for a in node.names]
    return out


def test_mlflow_is_imported_only_in_tracking() -> None:
    offenders = [f"{p.relative_to(PACKAGE.parent)}:{line}"
                 for p in sorted(PACKAGE.rglob("*.py")) if p.parent.name != "tracking"
                 for line, module, _ in _imports(p) if module.split(".")[0] == "mlflow"]
    assert offenders == []


def test_no_private_name_is_imported_across_modules() -> None:
    offenders = [f"{p.relative_to(PACKAGE.parent)}:{line} {module}.{name}"
                 for p in sorted(PACKAGE.rglob("*.py"))
                 for line, module, name in _imports(p)
                 if module.startswith("medvit") and name and name.startswith("_") and not name.startswith("__")]
    assert offenders == []
