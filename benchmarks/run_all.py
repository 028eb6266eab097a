"""Run every benchmark script and print one table of figures and their targets.

Usage::

    python benchmarks/run_all.py                 # full sizes (what `make bench` runs); ~4 min idle, ~11 min busy
    python benchmarks/run_all.py --quick         # smaller sizes, a smoke test of the whole chain (~2-3 min)
    python benchmarks/run_all.py --only evaluate ingest --json figures.json

Each script runs in its own process (``sys.executable benchmarks/<name>.py``);
its stdout is streamed through and every ``FIGURE<TAB>{json}`` line it prints
(see ``_figures.py``) becomes a row of the final table. The table is Markdown,
so it can be pasted into benchmarks/README.md as it is. Targets come from the
issues and are meant for the full sizes on the 2-core CPU; with ``--quick`` the
pass/fail column is only indicative.

Exit status: 1 if a script failed or printed no figures (or, with ``--strict``,
if a target is missed), else 0.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _figures import PREFIX  # after the sys.path line: benchmarks/ is not a package

SCRIPTS = ("evaluate", "ingest", "train_step", "finetune_stage", "zeroshot", "predict", "serve")
# Smaller sizes per script for --quick; every option exists in that script's argparse.
QUICK_ARGS: dict[str, list[str]] = {
    "evaluate": ["--n-samples", "2000", "--n-resamples", "100", "--naive-resamples", "2"],
    "ingest": ["--n", "24", "--size", "128", "--factor", "3", "--repeats", "1", "--ben-n", "200", "--png-n", "16"],
    "train_step": ["--models", "deit3_small_patch16_384", "--img-size", "64", "--batch", "2", "--steps", "1"],
    "zeroshot": ["--n-images", "20", "--batch-size", "4", "--repeats", "1"],
    "finetune_stage": ["--train", "32", "--val", "16", "--test", "16", "--epochs", "1", "--steps", "2"],
    "predict": ["--quick"],
    "serve": ["--tiny", "--calls", "10", "--rounds", "3", "--seconds", "3", "--load", "120"],
}
# Options every run passes: serve.py gets a tiny model registered in a temporary store, so the table
# never depends on `dvc repro` having registered one (`python benchmarks/serve.py` alone uses
# models:/medvit-medical@candidate on MLFLOW_TRACKING_URI).
FULL_ARGS: dict[str, list[str]] = {"serve": ["--tiny"]}
HEADER = ("benchmark", "figure", "value", "target", "result")


def parse_figures(lines: Iterable[str]) -> list[dict]:
    """The figure records of the ``FIGURE<TAB>{json}`` lines among ``lines``; other lines are ignored."""
    out = []
    for line in lines:
        if line.startswith(PREFIX):
            record = json.loads(line[len(PREFIX):])
            missing = {"benchmark", "figure", "value"} - record.keys()
            if missing:
                raise ValueError(f"figure line without {sorted(missing)}: {line.strip()}")
            out.append(record)
    return out


def format_value(value: float | None, unit: str = "") -> str:
    """3 significant-ish digits without scientific notation, then the unit (``"x"`` sticks to the number)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    a = abs(value)
    text = f"{value:.0f}" if a >= 100 else f"{value:.1f}" if a >= 10 else f"{value:.2f}" if a >= 0.01 else f"{value:.2g}"
    if not unit:
        return text
    return f"{text}{unit}" if unit == "x" else f"{text} {unit}"


def result_word(record: dict) -> str:
    if record.get("target") is None:
        return "-"
    return "PASS" if record.get("ok") else "FAIL"


def render_table(figures: list[dict]) -> str:
    """An aligned Markdown table: benchmark | figure | value | target | result."""
    rows = []
    for r in figures:
        unit = r.get("unit") or ""
        target = r.get("target")
        target_text = "-" if target is None else (f"{target}{unit}" if unit == "x" else f"{target} {unit}".rstrip())
        rows.append((r["benchmark"], r["figure"], format_value(r["value"], unit), target_text, result_word(r)))
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(HEADER)]
    right = {2, 3}  # numbers right-aligned

    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.rjust(w) if i in right else c.ljust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths))) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if i in right else "-" * (w + 2) for i, w in enumerate(widths)) + "|"
    return "\n".join([line(HEADER), sep, *(line(row) for row in rows)])


def machine() -> dict[str, object]:
    """CPU model, cores, RAM, torch version and the load average now (call it before the runs)."""
    cpu = platform.processor() or platform.machine()
    try:
        for text in Path("/proc/cpuinfo").read_text().splitlines():
            if text.startswith("model name"):
                cpu = text.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import psutil

        ram_gib = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        ram_gib = None
    try:
        import torch

        torch_version = torch.__version__
    except ImportError:
        torch_version = None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    return {"cpu": cpu, "cores": cores, "ram_gib": ram_gib, "torch": torch_version, "python": platform.python_version(),
            "load_avg_1_5_15": load, "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def run_script(name: str, extra: list[str]) -> tuple[int, list[str], float]:
    """Run ``benchmarks/<name>.py``; stream its stdout (figure lines hidden); return rc, stdout lines, seconds."""
    cmd = [sys.executable, str(HERE / f"{name}.py"), *extra]
    print(f"\n=== {name}: {' '.join(cmd[1:])}", flush=True)
    t0 = time.perf_counter()
    # stderr (progress bars) goes straight to ours; stdout is kept for the figure lines.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=HERE.parent, bufsize=1)
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if not line.startswith(PREFIX):
            print(line, end="", flush=True)
    rc = proc.wait()
    seconds = time.perf_counter() - t0
    print(f"=== {name}: exit {rc} after {seconds:.0f} s", flush=True)
    return rc, lines, seconds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes for a fast smoke test (targets indicative)")
    ap.add_argument("--only", nargs="+", choices=SCRIPTS, default=list(SCRIPTS), help="run only these scripts")
    ap.add_argument("--json", type=Path, default=None, help="also write machine, run times and figures here")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = ap.parse_args(argv)

    info = machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores, {info['ram_gib']} GiB RAM; torch {info['torch']}, "
          f"Python {info['python']}; load average before the runs {info['load_avg_1_5_15']}; {info['date_utc']}"
          + ("; QUICK sizes" if args.quick else ""), flush=True)
    figures: list[dict] = []
    problems: list[str] = []
    seconds: dict[str, float] = {}
    for name in args.only:
        rc, lines, seconds[name] = run_script(name, QUICK_ARGS[name] if args.quick else FULL_ARGS.get(name, []))
        found = parse_figures(lines)
        figures.extend(found)
        if rc != 0:
            problems.append(f"{name} exited with status {rc}")
        elif not found:
            problems.append(f"{name} printed no figures")

    print("\n" + render_table(figures))
    with_target = [f for f in figures if f.get("target") is not None]
    failed = [f for f in with_target if not f.get("ok")]
    print(f"\n{len(with_target) - len(failed)}/{len(with_target)} targets met"
          + (" (QUICK sizes: targets are for the full sizes, so this is only indicative)" if args.quick else "")
          + "; script wall times: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()))
    for p in problems:
        print(f"ERROR: {p}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "quick": args.quick, "seconds": seconds,
                                         "figures": figures, "problems": problems}, indent=2) + "\n")
    return 1 if problems or (args.strict and failed) else 0


if __name__ == "__main__":
    sys.exit(main())
