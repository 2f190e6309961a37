"""Engine benchmark: dataproj vs dbt-core + dbt-duckdb vs plain DuckDB on N chained SQL models.

Generates a chain model_0000 -> model_0001 -> ... (each a table selecting from the previous one),
then times, in this one run (the machine is shared and noisy, so only ratios of numbers taken
seconds apart mean much; every round runs each step once, in an order that puts the compared steps
next to each other, and a ratio is the median of its per-round ratios):

  * `dataproj ls` / `dataproj compile` cold (no warehouse/, so no Jinja bytecode cache) and `ls` warm;
  * `dataproj run --threads 1` and with the project's default threads, each on a fresh warehouse;
  * `dbt parse` / `dbt compile` / `dbt ls` with partial parsing off, `dbt ls` warm, `dbt run`
    (dbt lives in its own venv, bench/.work/dbt-venv; `--setup-dbt` installs it);
  * the floor: dataproj's compiled SELECTs run as `create table ... as` in one in-process DuckDB
    connection to a fresh file.

Usage: python bench/engine_bench.py [--models 1000] [--rows 10000] [--rounds 3] [--setup-dbt] [--no-dbt]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_WORK = BENCH_DIR / ".work"
DBT_SPEC = ["dbt-core~=1.11.0", "dbt-duckdb"]
COMPILE_GOAL = 10.0  # dbt / dataproj, at least
RUN_GOAL = 1.3  # dataproj / floor, at most

FIRST_MODEL = """select
    range as id,
    range % 7 as k,
    'item-' || range as label,
    range * 1.5 as amount,
    0 as step
from range({rows})
"""

CHAIN_MODEL = """-- step {i}: re-key, grow the amount, keep every row
select
    id,
    (k + id) % 7 as k,
    label,
    round(amount * 1.001 + k, 4) as amount,
    step + 1 as step
from {{{{ ref('{parent}') }}}}
where id >= 0 and amount >= 0
"""


# ---- project generation ------------------------------------------------------------------------

def model_name(i: int) -> str:
    return f"model_{i:04d}"


def model_sql(i: int, rows: int) -> str:
    if i == 0:
        return FIRST_MODEL.format(rows=rows)
    return CHAIN_MODEL.format(i=i, parent=model_name(i - 1))


def write_models(models_dir: Path, n: int, rows: int) -> None:
    models_dir.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (models_dir / f"{model_name(i)}.sql").write_text(model_sql(i, rows), encoding="utf-8")


def generate(work: Path, n: int, rows: int) -> tuple[Path, Path]:
    """Write the dataproj project and the equivalent dbt project; returns their folders."""
    dp, dbt = work / "dataproj_chain", work / "dbt_chain"
    for folder in (dp, dbt):
        if folder.exists():
            shutil.rmtree(folder)
    (dp).mkdir(parents=True)
    (dp / "project.yml").write_text(
        "name: chain\nwarehouse: warehouse/dataproj.duckdb\nthreads: 4\nmodels:\n  +materialized: table\n",
        encoding="utf-8")
    write_models(dp / "models" / "chain", n, rows)
    dbt.mkdir(parents=True)
    (dbt / "dbt_project.yml").write_text(
        "name: chain\nversion: '1.0'\nconfig-version: 2\nprofile: chain\nmodel-paths: [models]\n"
        "models:\n  chain:\n    +materialized: table\n", encoding="utf-8")
    (dbt / "profiles.yml").write_text(
        f"chain:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: '{dbt / 'dbt.duckdb'}'\n"
        "      threads: 4\n", encoding="utf-8")
    write_models(dbt / "models" / "chain", n, rows)
    return dp, dbt


# ---- timing helpers ----------------------------------------------------------------------------

def remove(*paths: Path) -> None:
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def run_timed(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    """Wall time of one subprocess; a failure stops the benchmark with its output."""
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return elapsed


@dataclass
class Step:
    """One timed thing: `prepare` (untimed) then `action`, which returns seconds."""

    key: str
    label: str
    action: Callable[[], float]
    prepare: Callable[[], None] | None = None
    times: list[float] = field(default_factory=list)

    def once(self) -> float:
        if self.prepare is not None:
            self.prepare()
        elapsed = self.action()
        self.times.append(elapsed)
        print(f"  {self.label:<36} {elapsed:8.2f} s", flush=True)
        return elapsed

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def dataproj_cmd() -> list[str]:
    script = Path(sys.executable).parent / "dataproj"
    return [str(script)] if script.exists() else [sys.executable, "-m", "dataproj"]


def dbt_bin(work: Path) -> Path:
    return work / "dbt-venv" / "bin" / "dbt"


def setup_dbt(work: Path) -> None:
    venv = work / "dbt-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *DBT_SPEC], check=True)


# ---- the steps ---------------------------------------------------------------------------------

def dataproj_steps(dp: Path) -> list[Step]:
    cmd = dataproj_cmd()
    subprocess.run([*cmd, "--version"], capture_output=True)  # warm-up: page cache and __pycache__

    def fresh() -> None:
        remove(dp / "warehouse")  # the database, target/ and with it the Jinja bytecode cache

    def dataproj(*args: str) -> Callable[[], float]:
        return lambda: run_timed([*cmd, *args], dp)

    return [
        Step("dp_ls_cold", "dataproj ls (cold)", dataproj("ls"), fresh),
        Step("dp_compile_cold", "dataproj compile (cold)", dataproj("compile"), fresh),
        Step("dp_ls_warm", "dataproj ls (warm)", dataproj("ls")),
        Step("dp_run_t1", "dataproj run --threads 1", dataproj("run", "--threads", "1"), fresh),
        Step("dp_run", "dataproj run (project threads: 4)", dataproj("run"), fresh),
    ]


def dbt_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(DBT_SEND_ANONYMOUS_USAGE_STATS="false", DBT_VERSION_CHECK="false", DO_NOT_TRACK="1",
               DBT_USE_COLORS="false")
    env.pop("VIRTUAL_ENV", None)
    return env


def dbt_steps(dbt: Path, work: Path) -> list[Step]:
    env = dbt_env()
    base = [str(dbt_bin(work))]
    where = ["--project-dir", str(dbt), "--profiles-dir", str(dbt)]
    subprocess.run([*base, "--version"], capture_output=True, env=env)  # warm-up

    def fresh() -> None:
        remove(dbt / "target", dbt / "logs", dbt / "dbt.duckdb", dbt / "dbt.duckdb.wal")

    def dbt_cmd(sub: str, *extra: str, partial: bool = False) -> Callable[[], float]:
        flag = "--partial-parse" if partial else "--no-partial-parse"
        return lambda: run_timed([*base, sub, flag, *where, *extra], dbt, env)

    def parsed() -> None:
        fresh()
        dbt_cmd("parse", partial=True)()  # leaves target/partial_parse.msgpack for the warm ls

    return [
        Step("dbt_parse", "dbt parse (no partial parse)", dbt_cmd("parse"), fresh),
        Step("dbt_ls_cold", "dbt ls (no partial parse)", dbt_cmd("ls"), fresh),
        Step("dbt_compile_cold", "dbt compile (no partial parse)", dbt_cmd("compile"), fresh),
        Step("dbt_ls_warm", "dbt ls (partial parse, warm)", dbt_cmd("ls", partial=True), parsed),
        Step("dbt_run_t1", "dbt run --threads 1", dbt_cmd("run", "--threads", "1"), fresh),
        Step("dbt_run", "dbt run (profile threads: 4)", dbt_cmd("run"), fresh),
    ]


def floor_statements(dp: Path, n: int) -> list[tuple[str, str]]:
    """(name, compiled SELECT) in dependency order, from dataproj's target/compiled."""
    compiled = dp / "warehouse" / "target" / "compiled" / "models" / "chain"
    return [(model_name(i), (compiled / f"{model_name(i)}.sql").read_text(encoding="utf-8")) for i in range(n)]


def swap_statements(name: str, sql: str) -> list[str]:
    """dataproj's way of building a table: create under a staging name, rename in a transaction."""
    return [f'create or replace table main."{name}__dp_new" as\n{sql}', "begin transaction",
            f'alter table main."{name}__dp_new" rename to "{name}"', "commit"]


def run_floor(db: Path, statements: list[tuple[str, str]], swap: bool = False) -> float:
    import duckdb

    remove(db, db.with_name(db.name + ".wal"))
    started = time.perf_counter()
    con = duckdb.connect(str(db))
    for name, sql in statements:
        for statement in swap_statements(name, sql) if swap else [f'create table main."{name}" as\n{sql}']:
            con.execute(statement)
    con.close()
    return time.perf_counter() - started


def floor_steps(dp: Path, work: Path, n: int) -> list[Step]:
    """The floor reads the SQL dataproj compiled in the same round (not timed)."""
    statements: list[tuple[str, str]] = []

    def load() -> None:
        statements[:] = floor_statements(dp, n)

    return [
        Step("floor", "floor: duckdb create table as", lambda: run_floor(work / "floor.duckdb", statements), load),
        Step("floor_swap", "floor: staged create + rename swap",
             lambda: run_floor(work / "floor_swap.duckdb", statements, swap=True)),
    ]


ORDER = ["dp_ls_cold", "dbt_parse", "dbt_ls_cold", "dp_compile_cold", "dbt_compile_cold", "dp_ls_warm",
         "dbt_ls_warm", "dp_run_t1", "floor", "floor_swap", "dp_run", "dbt_run_t1", "dbt_run"]


def run_rounds(steps: dict[str, Step], rounds: int) -> None:
    for number in range(1, rounds + 1):
        print(f"round {number}/{rounds}:", flush=True)
        for key in ORDER:
            if key in steps:
                steps[key].once()


def check_results(dp: Path, work: Path, n: int) -> None:
    """The last model has the same rows in dataproj's warehouse and in the floor database."""
    import duckdb

    last = model_name(n - 1)
    sums = []
    for db in (dp / "warehouse" / "dataproj.duckdb", work / "floor.duckdb"):
        with duckdb.connect(str(db), read_only=True) as con:
            sums.append(con.execute(f'select count(*), sum(amount), max(step) from main."{last}"').fetchone())
    status = "ok" if sums[0] == sums[1] else "MISMATCH"
    print(f"check {last}: dataproj {sums[0]} floor {sums[1]} -> {status}")


# ---- report ------------------------------------------------------------------------------------

@dataclass
class Row:
    """A table row: `dp` is compared with `dbt` (dbt/dp, goal >= 10x unless a run) and `floor` (dp/floor)."""

    step: str
    dp: str
    dbt: str | None = None
    floor: str | None = None
    goal: bool = True


ROWS = [
    Row("parse: dataproj ls / dbt parse (cold)", "dp_ls_cold", "dbt_parse"),
    Row("ls (cold)", "dp_ls_cold", "dbt_ls_cold"),
    Row("compile (cold)", "dp_compile_cold", "dbt_compile_cold"),
    Row("ls (warm)", "dp_ls_warm", "dbt_ls_warm"),
    Row("run --threads 1", "dp_run_t1", "dbt_run_t1", "floor"),
    Row("run (4 threads)", "dp_run", "dbt_run", "floor"),
    Row("(diagnostic) floor with staged swap", "floor_swap", None, "floor", goal=False),
]


def ratio(steps: dict[str, Step], top: str, bottom: str) -> float:
    """Median of the per-round ratios top/bottom."""
    pairs = zip(steps[top].times, steps[bottom].times, strict=True)
    return statistics.median(a / b for a, b in pairs)


def ratios_text(row: Row, steps: dict[str, Step]) -> str:
    parts = []
    if row.dbt in steps:
        value = ratio(steps, row.dbt, row.dp)
        parts.append(f"dbt/dp {value:5.1f}x")
        if "run" not in row.step:
            parts.append("ok" if value >= COMPILE_GOAL else f"MISS (goal >= {COMPILE_GOAL:.0f}x)")
    if row.floor is not None:
        value = ratio(steps, row.dp, row.floor)
        parts.append(f"dp/floor {value:4.2f}x")
        if row.goal:
            parts.append("ok" if value <= RUN_GOAL else f"MISS (goal <= {RUN_GOAL}x)")
    return "  ".join(parts)


def cell(steps: dict[str, Step], key: str | None, width: int) -> str:
    return f"{steps[key].median:{width}.2f}" if key in steps else f"{'-':>{width}}"


def print_report(steps: dict[str, Step], args: argparse.Namespace) -> None:
    print(f"\n{args.models} chained table models x {args.rows} rows, median of {args.rounds} round(s), "
          f"{datetime.now():%Y-%m-%d %H:%M}, {platform.machine()} {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    print(f"{'step':<38}{'dataproj s':>11}{'dbt s':>9}{'floor s':>9}   ratios (median of per-round ratios) / goals")
    for row in ROWS:
        print(f"{row.step:<38}{cell(steps, row.dp, 11)}{cell(steps, row.dbt, 9)}{cell(steps, row.floor, 9)}"
              f"   {ratios_text(row, steps)}")


# ---- main --------------------------------------------------------------------------------------

def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=1000, help="length of the model chain (default 1000)")
    parser.add_argument("--rows", type=int, default=10000, help="rows in every model (default 10000)")
    parser.add_argument("--rounds", type=int, default=1, help="time every step this many times (default 1)")
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK, help="scratch folder (default bench/.work)")
    parser.add_argument("--setup-dbt", action="store_true", help="install dbt into WORK/dbt-venv first")
    parser.add_argument("--no-dbt", action="store_true", help="skip the dbt column")
    return parser.parse_args()


def wants_dbt(args: argparse.Namespace, work: Path) -> bool:
    if args.setup_dbt:
        setup_dbt(work)
    if args.no_dbt:
        return False
    if dbt_bin(work).exists():
        return True
    print(f"dbt is not installed in {work / 'dbt-venv'}; skipping the dbt column. Install it with\n"
          f"  python bench/engine_bench.py --setup-dbt   (or: python -m venv {work / 'dbt-venv'} && "
          f"{work / 'dbt-venv/bin/pip'} install {' '.join(repr(s) for s in DBT_SPEC)})")
    return False


def main() -> int:
    args = parse_args()
    work: Path = args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    use_dbt = wants_dbt(args, work)
    dp_dir, dbt_dir = generate(work, args.models, args.rows)
    print(f"generated {args.models} models in {dp_dir} and {dbt_dir}")
    steps = dataproj_steps(dp_dir) + floor_steps(dp_dir, work, args.models)
    if use_dbt:
        steps += dbt_steps(dbt_dir, work)
    by_key = {step.key: step for step in steps}
    run_rounds(by_key, args.rounds)
    check_results(dp_dir, work, args.models)
    print_report(by_key, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
