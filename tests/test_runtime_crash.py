"""Crash safety: a run killed with SIGKILL loses no finished call, and the rerun pays only for the rest."""

from __future__ import annotations

import signal
import time
from collections import Counter

import pytest
from conftest import MakeProject, ProjectDir, run_module
from runtime_support import cache_rows, call_count, calls, udf_module

ROWS = 200
MAX_WORKERS = 4

CRASH_UDFS = udf_module('''\
    import time

    from dataproj import udf


    @udf(cached=True, kind="io")
    def slow_io(i: int) -> str:
        time.sleep(0.02)
        log("slow_io", i)
        return f"v{i}"


    @udf(cached=True)
    def slow_row(i: int) -> str:
        time.sleep(0.01)
        log("slow_row", i)
        return f"v{i}"
''')


def crash_project(make_project: MakeProject, function: str) -> ProjectDir:
    return make_project({
        "udfs/crash.py": CRASH_UDFS,
        "models/paid.sql": f"{{{{ config(materialized='table') }}}}\n"
                           f"select i, {function}(i) as v from range({ROWS}) t(i)\n",
    }, project_yml=f"name: demo\nbackends:\n  local: {{max_workers: {MAX_WORKERS}}}\n")


def kill_halfway(project: ProjectDir, function: str) -> int:
    """Start `dataproj run` in a child process and SIGKILL it once about half the calls are logged."""
    child = run_module(["run", "--project-dir", str(project.root)], cwd=project.root)
    try:
        deadline = time.monotonic() + 60
        while call_count(project, function) < ROWS // 2:
            if child.poll() is not None:
                out, err = child.communicate()
                pytest.fail(f"the run ended before it could be killed (exit {child.returncode}):\n{out}\n{err}")
            assert time.monotonic() < deadline, "the run made no progress"
            time.sleep(0.002)
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == -signal.SIGKILL
    return call_count(project, function)


def replay_journal(project: ProjectDir) -> None:
    """Open and close the cache as the next command would: the killed run's journal is copied into DuckDB."""
    from dataproj.runtime.cache import CallCache

    cache = CallCache(project.path("warehouse/cache/calls.duckdb"))
    try:
        cache.stats()
    finally:
        cache.close()


def ledger_count(project: ProjectDir) -> int:
    import duckdb

    with duckdb.connect(str(project.path("warehouse/cache/calls.duckdb")), read_only=True) as con:
        return con.execute("select count(*) from dataproj_calls").fetchone()[0]


def test_a_killed_run_loses_no_finished_call_and_the_rerun_pays_only_for_the_rest(make_project: MakeProject) -> None:
    project = crash_project(make_project, "slow_io")
    logged_before = kill_halfway(project, "slow_io")
    assert ROWS // 2 <= logged_before < ROWS
    replay_journal(project)
    stored_before = {r["in_i"] for r in cache_rows(project, "slow_io")}
    # Every finished call was stored as it completed: at most the calls in flight at the kill are missing.
    assert logged_before - MAX_WORKERS <= len(stored_before) <= logged_before
    ledger_before = ledger_count(project)

    project.ok("run")
    logged = calls(project, "slow_io")
    rerun = [int(i) for i, in logged[logged_before:]]
    assert len(rerun) == ROWS - len(stored_before)
    assert set(rerun) == set(range(ROWS)) - stored_before
    # Each row was paid once, except calls in flight at the kill that had not been stored yet.
    assert len(logged) <= ROWS + MAX_WORKERS
    paid_twice = {int(i) for i, n in Counter(i for i, in logged).items() if n > 1}
    assert not paid_twice & stored_before
    assert project.rows("select count(*), count(*) filter (where v = 'v' || i) from paid") == [(ROWS, ROWS)]
    assert ledger_count(project) - ledger_before == len(rerun)

    project.ok("run")
    assert call_count(project, "slow_io") == len(logged)


def test_a_killed_run_of_a_row_function_loses_no_finished_call(make_project: MakeProject) -> None:
    project = crash_project(make_project, "slow_row")
    logged_before = kill_halfway(project, "slow_row")
    replay_journal(project)
    stored_before = {r["in_i"] for r in cache_rows(project, "slow_row")}
    assert len(stored_before) >= logged_before - 1
    project.ok("run")
    assert call_count(project, "slow_row") - logged_before == ROWS - len(stored_before)
