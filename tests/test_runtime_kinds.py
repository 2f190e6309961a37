"""The three kinds of function: per-row, I/O-bound per-row (concurrent, bounded by max_workers) and batch."""

from __future__ import annotations

from conftest import MakeProject
from runtime_support import cache_rows, call_count, calls, node_result, udf_module

SLEEPY_UDFS = udf_module('''\
    import time

    from dataproj import udf


    @udf(kind="io")
    def slow_echo(i: int) -> int:
        started = time.monotonic()
        time.sleep(0.1)
        log("slow_echo", i, started, time.monotonic())
        return i


    @udf(kind="io", cached=True, backend="narrow")
    def slow_cached(i: int) -> int:
        started = time.monotonic()
        time.sleep(0.05)
        log("slow_cached", i, started, time.monotonic())
        return i * 10
''')


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one instant."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = best = 0
    for _, delta in events:
        running += delta
        best = max(best, running)
    return best


def test_io_functions_run_the_rows_of_a_batch_concurrently(make_project: MakeProject) -> None:
    project = make_project({
        "udfs/sleepy.py": SLEEPY_UDFS,
        "models/echoed.sql": "{{ config(materialized='table') }}\nselect i, slow_echo(i) as v from range(32) t(i)\n",
    }, project_yml="name: demo\nbackends:\n  local: {max_workers: 16}\n")
    project.ok("run", "--select", "echoed")
    # The node's own time (not the CLI's first imports): 32 calls of 0.1 s on 16 workers are two waves.
    elapsed = node_result(project, "echoed")["execution_time"]
    assert project.rows("select count(*), count(*) filter (where v = i) from echoed") == [(32, 32)]
    logged = calls(project, "slow_echo")
    assert sorted(int(i) for i, _, _ in logged) == list(range(32))
    assert elapsed < 1.0, f"32 io calls of 0.1 s with max_workers 16 took {elapsed:.2f}s"
    span = max(float(e) for _, _, e in logged) - min(float(s) for _, s, _ in logged)
    assert span < 0.5
    assert 8 < max_overlap([(float(s), float(e)) for _, s, e in logged]) <= 16


def test_max_workers_of_the_functions_backend_bounds_concurrency(make_project: MakeProject) -> None:
    project = make_project({
        "udfs/sleepy.py": SLEEPY_UDFS,
        "models/narrow.sql": "{{ config(materialized='table') }}\nselect i, slow_cached(i) as v from range(24) t(i)\n",
    }, project_yml="name: demo\nbackends:\n  narrow: {max_workers: 3}\n  local: {max_workers: 16}\n")
    project.ok("run", "--select", "narrow")
    logged = calls(project, "slow_cached")
    assert len(logged) == 24
    assert max_overlap([(float(s), float(e)) for _, s, e in logged]) == 3
    assert project.rows("select sum(v) from narrow") == [(10 * sum(range(24)),)]


def test_a_models_max_workers_caps_its_calls_below_the_backends(make_project: MakeProject) -> None:
    """Two models share a backend of 16 workers; one caps itself at 2 calls in flight, across all its batches."""
    project = make_project({
        "udfs/sleepy.py": SLEEPY_UDFS,
        "models/capped.sql": "{{ config(materialized='table', max_workers=2) }}\n"
                             "select i, slow_echo(i) as v from range(6) t(i)\n",
    }, project_yml="name: demo\nbackends:\n  local: {max_workers: 16}\n")
    project.ok("run", "--select", "capped")
    logged = calls(project, "slow_echo")
    assert sorted(int(i) for i, _, _ in logged) == list(range(6))
    assert max_overlap([(float(s), float(e)) for _, s, e in logged]) == 2
    assert project.rows("select sum(v) from capped") == [(sum(range(6)),)]

    project.write({"models/capped.sql": "{{ config(materialized='table', max_workers=0) }}\nselect 1 as x\n"})
    result = project.cli("run", "--select", "capped")
    assert result.code != 0 and "max_workers" in result.out + result.err


ROW_UDFS = udf_module('''\
    from dataproj import udf


    @udf(cached=True)
    def initial(name: str | None) -> str:
        log("initial", name)
        return "-" if name is None else name[:1].upper()


    @udf
    def plain_initial(name: str | None) -> str:
        log("plain_initial", name)
        return "-" if name is None else name[:1].upper()
''')


def test_row_functions_map_over_every_row_and_cached_ones_call_each_input_once(make_project: MakeProject) -> None:
    project = make_project({
        "udfs/rows.py": ROW_UDFS,
        "models/initials.sql": """\
            {{ config(materialized='table') }}
            select n, initial(n) as a, plain_initial(n) as b
            from (values ('ada'), ('bob'), ('ada'), (null), ('cy'), ('bob')) t(n)
            """,
    })
    project.ok("run")
    assert project.rows("select n, a, b from initials order by n nulls last, rowid") == [
        ("ada", "A", "A"), ("ada", "A", "A"), ("bob", "B", "B"), ("bob", "B", "B"), ("cy", "C", "C"),
        (None, "-", "-")]
    # Every row reaches the plain function, NULL included.
    assert sorted(n for n, in calls(project, "plain_initial")) == sorted(["ada", "bob", "ada", "None", "cy", "bob"])
    # The cached function is called once per distinct input, even within one batch.
    assert sorted(n for n, in calls(project, "initial")) == ["None", "ada", "bob", "cy"]
    assert node_result(project, "initials")["calls"] == 4 + 6
    # A rerun: the cached function is served from the cache, the plain one is called again.
    project.ok("run")
    assert call_count(project, "initial") == 4
    assert call_count(project, "plain_initial") == 12
    assert (node_result(project, "initials")["calls"], node_result(project, "initials")["cache_hits"]) == (6, 6)


BATCH_UDFS = udf_module('''\
    from dataproj import udf


    @udf(kind="batch", batch_size=4, cached=True)
    def squares(xs: list[int], labels: list[str]) -> list[str]:
        log("squares", ",".join(map(str, xs)))
        assert isinstance(xs, list) and isinstance(labels, list)
        if 7 in xs:
            raise ValueError("seven is not welcome")
        return [f"{label}={x * x}" for x, label in zip(xs, labels)]
''')


def test_batch_functions_receive_whole_columns_in_chunks_of_batch_size(make_project: MakeProject) -> None:
    project = make_project({
        "udfs/batchy.py": BATCH_UDFS,
        "models/squared.sql": """\
            {{ config(materialized='table') }}
            select i, squares(i, 'sq') as s from range(11) t(i) where i <> 7
            """,
    })
    project.ok("run")
    assert project.rows("select i, s from squared order by i") == [(i, f"sq={i * i}") for i in range(11) if i != 7]
    chunks = [[int(x) for x in line.split(",")] for line, in calls(project, "squares")]
    assert sorted(x for chunk in chunks for x in chunk) == [i for i in range(11) if i != 7]
    assert [len(c) for c in chunks] == [4, 4, 2]
    # A rerun serves every row from the cache.
    project.ok("run")
    assert call_count(project, "squares") == 3
    assert node_result(project, "squared")["cache_hits"] == 10


def test_a_bad_row_in_a_batch_fails_only_that_row(make_project: MakeProject) -> None:
    project = make_project({
        "udfs/batchy.py": BATCH_UDFS,
        "models/squared.sql": """\
            {{ config(materialized='table', failure_budget=0.5) }}
            select i, squares(i, 'sq') as s from range(10) t(i)
            """,
    })
    project.ok("run")
    assert project.rows("select i, s from squared order by i") == [
        (i, None if i == 7 else f"sq={i * i}") for i in range(10)]
    assert node_result(project, "squared")["failed_calls"] == 1
    failed = [r for r in cache_rows(project, "squares") if not r["ok"]]
    assert [(r["in_xs"], r["error"]) for r in failed] == [(7, "ValueError: seven is not welcome")]
