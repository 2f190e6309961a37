"""Startup benchmark: how fast the CLI answers, what `dataproj ls` imports, and that it imports nothing heavy.

  * median wall time of `dataproj --help` (goal < 0.3 s);
  * median wall time of `dataproj ls` on the bundled project (repo root project.yml) or, without one,
    on a fresh `dataproj init` scaffold (goal < 1 s);
  * the top offenders of `python -X importtime` for `dataproj ls`;
  * which heavy modules (torch, open_clip, openai, google.genai, ...) `dataproj ls` leaves in sys.modules.

Usage: python bench/startup_bench.py [--runs 7] [--top 15] [--project-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
WORK = BENCH_DIR / ".work"
HELP_GOAL = 0.3
LS_GOAL = 1.0
HEAVY = ["torch", "open_clip", "openai", "google.genai", "transformers", "PIL", "numpy", "pandas", "polars",
         "pyarrow", "sqlglot", "duckdb", "rich", "pydantic", "jinja2", "yaml"]
MUST_NOT = {"torch", "open_clip", "openai", "google.genai"}

MODULES_SNIPPET = """
import contextlib, io, json, sys
from dataproj.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    code = main(['ls', '--project-dir', sys.argv[1]])
print(json.dumps({'code': code, 'count': len(sys.modules), 'modules': sorted(sys.modules)}))
"""


def dataproj_cmd() -> list[str]:
    script = Path(sys.executable).parent / "dataproj"
    return [str(script)] if script.exists() else [sys.executable, "-m", "dataproj"]


def pick_project(given: Path | None) -> tuple[Path, str]:
    """The project `ls` runs on: --project-dir, the bundled one at the repo root, or a fresh scaffold."""
    if given is not None:
        return given.resolve(), "given"
    if (REPO / "project.yml").exists():
        return REPO, "bundled project at the repo root"
    scaffold = WORK / "startup_scaffold"
    if scaffold.exists():
        shutil.rmtree(scaffold)
    subprocess.run([*dataproj_cmd(), "init", str(scaffold)], check=True, capture_output=True)
    return scaffold, "`dataproj init` scaffold"


def wall(cmd: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return elapsed


def median_wall(cmd: list[str], cwd: Path, runs: int) -> tuple[float, list[float]]:
    wall(cmd, cwd)  # warm-up: page cache and __pycache__
    times = [wall(cmd, cwd) for _ in range(runs)]
    return statistics.median(times), times


def importtime(project: Path) -> list[tuple[int, int, str]]:
    """(self us, cumulative us, module) for every import `dataproj ls` does."""
    code = "import sys; from dataproj.cli import main; sys.exit(main(['ls', '--project-dir', sys.argv[1]]))"
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", code, str(project)],
                          capture_output=True, text=True)
    rows = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative, name = line.removeprefix("import time:").split("|")
        rows.append((int(self_us), int(cumulative), name[1:].rstrip()))  # nested imports keep their indent
    return rows


def print_importtime(rows: list[tuple[int, int, str]], top: int) -> None:
    total = sum(r[0] for r in rows)
    print(f"\nimport time of `dataproj ls`: {len(rows)} modules, {total / 1e6:.3f} s in all (self times summed)")
    packages: dict[str, int] = {}
    for self_us, _, name in rows:
        package = name.strip().split(".")[0]
        packages[package] = packages.get(package, 0) + self_us
    print(f"top {top} packages (self time of all their modules):")
    for package, self_us in sorted(packages.items(), key=lambda item: -item[1])[:top]:
        print(f"  {self_us / 1e3:8.1f} ms  {package}")
    print(f"top {top} modules by cumulative time (indent = nesting):")
    for _, cumulative, name in sorted(rows, key=lambda r: -r[1])[:top]:
        print(f"  {cumulative / 1e3:8.1f} ms  {name}")
    print(f"top {top} modules by self time:")
    for self_us, _, name in sorted(rows, key=lambda r: -r[0])[:top]:
        print(f"  {self_us / 1e3:8.1f} ms  {name.strip()}")


def imported_modules(project: Path) -> dict[str, object]:
    proc = subprocess.run([sys.executable, "-c", MODULES_SNIPPET, str(project)], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"module check failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def print_heavy(info: dict[str, object]) -> bool:
    modules = set(info["modules"])  # type: ignore[arg-type]
    present = [name for name in HEAVY if name in modules]
    bad = sorted(MUST_NOT & modules)
    print(f"\n`dataproj ls` (exit {info['code']}) leaves {info['count']} modules in sys.modules")
    print(f"  of the watched packages, imported: {', '.join(present) or 'none'}")
    print(f"  not imported: {', '.join(n for n in HEAVY if n not in modules) or 'none'}")
    print(f"  heavy (must not be imported): {', '.join(bad) if bad else 'none imported -> ok'}")
    return not bad


def verdict(value: float, goal: float) -> str:
    return "ok" if value < goal else "MISS"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per command (median reported)")
    parser.add_argument("--top", type=int, default=15, help="how many import-time offenders to list")
    parser.add_argument("--project-dir", type=Path, help="project for `dataproj ls` (default: see above)")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    project, kind = pick_project(args.project_dir)
    cmd = dataproj_cmd()
    print(f"{datetime.now():%Y-%m-%d %H:%M}, {platform.machine()} {os.cpu_count()} cores, "
          f"Python {platform.python_version()}; ls on the {kind}: {project}")
    help_s, help_runs = median_wall([*cmd, "--help"], project, args.runs)
    ls_s, ls_runs = median_wall([*cmd, "ls"], project, args.runs)
    print(f"\n{'command':<18}{'median s':>9}   runs")
    print(f"{'dataproj --help':<18}{help_s:9.3f}   {' '.join(f'{t:.3f}' for t in help_runs)}   "
          f"goal < {HELP_GOAL} s: {verdict(help_s, HELP_GOAL)}")
    print(f"{'dataproj ls':<18}{ls_s:9.3f}   {' '.join(f'{t:.3f}' for t in ls_runs)}   "
          f"goal < {LS_GOAL} s: {verdict(ls_s, LS_GOAL)}")
    print_importtime(importtime(project), args.top)
    clean = print_heavy(imported_modules(project))
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
