"""benchmarks/run_all.py: figure lines -> records -> one table (synthetic output; no benchmark is run)."""

from __future__ import annotations

import importlib.util
import math
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


run_all = _load("run_all")
figures = sys.modules["_figures"]  # the module run_all itself imports, so PREFIX is shared


def test_emitted_lines_parse_back_among_other_output(capsys: pytest.CaptureFixture[str]) -> None:
    print("some progress text\nsummary: 1.9x faster")
    figures.emit("ingest", "speed-up all 2 cores / 1 worker", 1.93, "x", ">= 1.7")
    figures.emit("ingest", "peak RSS x10 / x1", 1.31, "x", "<= 1.2")
    figures.emit("train_step", "fp32 GEMM peak", 101.5, "GFLOP/s")
    figures.emit("evaluate", "group bootstrap", float("nan"), "s", "<= 10")
    print("trailing line")
    records = run_all.parse_figures(capsys.readouterr().out.splitlines(keepends=True))

    assert [r["figure"] for r in records] == ["speed-up all 2 cores / 1 worker", "peak RSS x10 / x1",
                                              "fp32 GEMM peak", "group bootstrap"]
    assert records[0]["value"] == pytest.approx(1.93) and records[0]["ok"] is True
    assert records[1]["ok"] is False  # 1.31 > 1.2 for a "<=" target
    assert records[2]["target"] is None and records[2]["ok"] is None
    assert records[3]["value"] is None and records[3]["ok"] is False  # NaN never meets a target


@pytest.mark.parametrize(("value", "target", "ok"), [(1.7, ">= 1.7", True), (1.69, ">= 1.7", False),
                                                     (10.0, "<= 10", True), (10.01, "<= 10", False),
                                                     (math.nan, "<= 10", False)])
def test_meets_is_inclusive_and_directional(value: float, target: str, ok: bool) -> None:
    assert figures.meets(value, target) is ok


def test_bad_target_and_incomplete_line_are_errors() -> None:
    with pytest.raises(ValueError, match="must look like"):
        figures.meets(1.0, "> 1")
    with pytest.raises(ValueError, match="value"):
        run_all.parse_figures([figures.PREFIX + '{"benchmark": "x", "figure": "y"}\n'])


def test_table_is_aligned_markdown_with_results() -> None:
    records = [
        {"benchmark": "evaluate", "figure": "group bootstrap (1000 resamples x 10000 x 14)", "value": 3.456,
         "unit": "s", "target": "<= 10", "ok": True},
        {"benchmark": "train_step", "figure": "MFU full", "value": 0.123, "unit": "", "target": ">= 0.65",
         "ok": False},
        {"benchmark": "zeroshot", "figure": "embedding img/s, ours", "value": 12.345, "unit": "img/s",
         "target": None, "ok": None},
        {"benchmark": "ingest", "figure": "speed-up", "value": 1.8, "unit": "x", "target": ">= 1.7", "ok": True},
        {"benchmark": "ingest", "figure": "broken", "value": None, "unit": "x", "target": ">= 1.7", "ok": False},
    ]
    lines = run_all.render_table(records).splitlines()

    assert len(lines) == 2 + len(records)
    assert len({len(line) for line in lines}) == 1  # every row as wide as the header: aligned
    assert [c.strip() for c in lines[0].strip("|").split("|")] == list(run_all.HEADER)
    assert re.fullmatch(r"\|(-+:?\|)+", lines[1])  # Markdown separator row
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    assert cells[0] == ["evaluate", "group bootstrap (1000 resamples x 10000 x 14)", "3.46 s", "<= 10 s", "PASS"]
    assert cells[1][2:] == ["0.12", ">= 0.65", "FAIL"]
    assert cells[2][2:] == ["12.3 img/s", "-", "-"]
    assert cells[3][2:] == ["1.80x", ">= 1.7x", "PASS"]
    assert cells[4][2:] == ["n/a", ">= 1.7x", "FAIL"]


def test_format_value_keeps_three_significant_digits() -> None:
    assert run_all.format_value(1234.6, "files/s") == "1235 files/s"
    assert run_all.format_value(45.67, "s") == "45.7 s"
    assert run_all.format_value(0.004321, "") == "0.0043"


def test_quick_options_exist_in_each_script() -> None:
    assert set(run_all.QUICK_ARGS) == set(run_all.SCRIPTS)
    assert set(run_all.FULL_ARGS) <= set(run_all.SCRIPTS)
    for name, args in [*run_all.QUICK_ARGS.items(), *run_all.FULL_ARGS.items()]:
        source = (BENCH / f"{name}.py").read_text()
        assert "_figures.emit(" in source, name
        for option in (a for a in args if a.startswith("--")):
            assert f'"{option}"' in source, f"{name}.py has no {option} option"
