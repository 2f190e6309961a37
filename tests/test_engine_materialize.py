"""7. Materialisations (view, table, incremental, ephemeral), atomic swaps, concurrency and failure handling."""

from __future__ import annotations

import json
import signal
import time

from conftest import MakeProject, run_module


def test_view_and_table_materialisations_and_switching_between_them(make_project: MakeProject) -> None:
    project = make_project({
        "models/as_view.sql": "select range as n from range(3)\n",
        "models/as_table.sql": "{{ config(materialized='table') }}\nselect n * 2 as n from {{ ref('as_view') }}\n",
    })
    project.ok("run")
    assert project.relations() == {"as_table": "BASE TABLE", "as_view": "VIEW"}
    assert project.rows("select n from as_table order by n") == [(0,), (2,), (4,)]
    assert {r["name"]: r["rows"] for r in project.run_results()["results"]} == {"as_view": None, "as_table": 3}

    project.write({
        "models/as_view.sql": "{{ config(materialized='table') }}\nselect range as n from range(2)\n",
        "models/as_table.sql": "select n * 2 as n from {{ ref('as_view') }}\n",
    })
    project.ok("run")
    # Only the final relations remain; nothing staged under a temporary name is left behind.
    assert project.relations() == {"as_table": "VIEW", "as_view": "BASE TABLE"}
    assert project.rows("select n from as_table order by n") == [(0,), (2,)]


INCREMENTAL_APPEND = """\
{{ config(materialized='incremental') }}
select id, value from {{ ref('events') }}
{% if is_incremental() %}
where id > (select max(id) from {{ this }})
{% endif %}
"""

INCREMENTAL_UPSERT = """\
{{ config(materialized='incremental', unique_key='id') }}
select id, value from {{ ref('events') }}
"""


def test_incremental_append_adds_only_new_rows(make_project: MakeProject) -> None:
    project = make_project({
        "seeds/events.csv": "id,value\n1,a\n2,b\n3,c\n",
        "models/events_log.sql": INCREMENTAL_APPEND,
    })
    project.ok("build")
    assert project.rows("select count(*) from events_log") == [(3,)]
    project.write({"seeds/events.csv": "id,value\n1,a\n2,CHANGED\n3,c\n4,d\n5,e\n"})
    project.ok("build")
    assert project.rows("select id, value from events_log order by id") == [
        (1, "a"), (2, "b"), (3, "c"), (4, "d"), (5, "e")]
    assert project.statuses()["events_log"] == "success"
    assert {r["name"]: r["rows"] for r in project.run_results()["results"]}["events_log"] == 2


def test_incremental_delete_insert_by_unique_key(make_project: MakeProject) -> None:
    project = make_project({
        "seeds/events.csv": "id,value\n1,a\n2,b\n3,c\n",
        "models/events_latest.sql": INCREMENTAL_UPSERT,
    })
    project.ok("build")
    project.write({"seeds/events.csv": "id,value\n2,B2\n4,d\n"})
    project.ok("build")
    assert project.rows("select id, value from events_latest order by id") == [
        (1, "a"), (2, "B2"), (3, "c"), (4, "d")]


def test_incremental_with_a_composite_key_and_new_columns_needs_full_refresh(make_project: MakeProject) -> None:
    project = make_project({
        "seeds/scores.csv": "day,player,points\n1,a,3\n1,b,4\n",
        "models/board.sql": ("{{ config(materialized='incremental', unique_key=['day', 'player']) }}\n"
                             "select day, player, points from {{ ref('scores') }}\n"),
    })
    project.ok("build")
    project.write({"seeds/scores.csv": "day,player,points\n1,b,5\n2,a,1\n"})
    project.ok("build")
    assert project.rows("select * from board order by day, player") == [(1, "a", 3), (1, "b", 5), (2, "a", 1)]

    project.write({"models/board.sql": ("{{ config(materialized='incremental', unique_key=['day', 'player']) }}\n"
                                        "select day, player, points, points * 2 as doubled\n"
                                        "from {{ ref('scores') }}\n")})
    assert project.cli("run").code == 1
    [board] = project.run_results()["results"]
    assert "new columns ['doubled']" in board["message"] and "--full-refresh" in board["message"]
    assert project.rows("select count(*) from board") == [(3,)]
    project.ok("run", "--full-refresh")
    assert project.rows("select * from board order by day, player") == [(1, "b", 5, 10), (2, "a", 1, 2)]


def test_full_refresh_rebuilds_an_incremental_model(make_project: MakeProject) -> None:
    project = make_project({
        "seeds/events.csv": "id,value\n1,a\n2,b\n3,c\n",
        "models/events_all.sql": "{{ config(materialized='incremental') }}\nselect * from {{ ref('events') }}\n",
    })
    project.ok("build")
    project.ok("run")
    assert project.rows("select count(*) from events_all") == [(6,)]
    project.ok("run", "--full-refresh")
    assert project.rows("select id, value from events_all order by id") == [(1, "a"), (2, "b"), (3, "c")]
    assert project.run_results()["args"]["full_refresh"] is True


def test_ephemeral_models_are_inlined_and_never_built(make_project: MakeProject) -> None:
    project = make_project({
        "models/numbers.sql": "{{ config(materialized='ephemeral') }}\nselect range as n from range(6)\n",
        "models/evens.sql": ("{{ config(materialized='ephemeral') }}\n"
                             "select n from {{ ref('numbers') }} where n % 2 = 0\n"),
        "models/report.sql": ("{{ config(materialized='table') }}\n"
                              "with big as (select n from {{ ref('evens') }} where n > 0)\n"
                              "select n from big\n"),
        "models/py_reader.py": "def model(ctx):\n    return ctx.ref('evens').aggregate('count(*) as n')\n",
    })
    project.ok("run")
    assert project.relations() == {"py_reader": "BASE TABLE", "report": "BASE TABLE"}
    assert project.rows("select n from report order by n") == [(2,), (4,)]
    assert project.rows("select n from py_reader") == [(3,)]
    assert project.statuses() == {"numbers": "success", "evens": "success", "report": "success",
                                  "py_reader": "success"}


def test_a_failed_node_skips_its_descendants_and_the_rest_continue(make_project: MakeProject) -> None:
    project = make_project({
        "models/broken.sql": "{{ config(materialized='table') }}\nselect cast('abc' as integer) as x\n",
        "models/child.sql": "select x from {{ ref('broken') }}\n",
        "models/grandchild.sql": "select x from {{ ref('child') }}\n",
        "models/independent.sql": "{{ config(materialized='table') }}\nselect 7 as y\n",
    })
    result = project.cli("run")
    assert result.code == 1
    outcome = {r["name"]: r for r in project.run_results()["results"]}
    assert {name: r["status"] for name, r in outcome.items()} == {
        "broken": "error", "child": "skipped", "grandchild": "skipped", "independent": "success"}
    assert "models/broken.sql" in outcome["broken"]["message"]
    assert "abc" in outcome["broken"]["message"]
    assert "broken" in outcome["child"]["message"]
    assert project.relations() == {"independent": "BASE TABLE"}
    assert project.rows("select y from independent") == [(7,)]


def test_a_failing_rebuild_keeps_the_previous_table(make_project: MakeProject) -> None:
    project = make_project({"models/kept.sql": "{{ config(materialized='table') }}\nselect range as n from range(3)\n"})
    project.ok("run")
    project.write({"models/kept.sql": "{{ config(materialized='table') }}\n"
                                      "select range as n, cast('x' || range as integer) as bad from range(5)\n"})
    assert project.cli("run").code == 1
    assert project.rows("select n from kept order by n") == [(0,), (1,), (2,)]
    assert project.relations() == {"kept": "BASE TABLE"}


SLOW_TABLE = """\
{{ config(materialized='table') }}
{% if var('slow', false) %}
select sum(a.range + b.range) as n from range(400000) as a cross join range(400000) as b
{% else %}
select range as n from range(3)
{% endif %}
"""


def test_a_killed_run_leaves_the_previous_table_intact(make_project: MakeProject) -> None:
    project = make_project({"models/big.sql": SLOW_TABLE, "models/small.sql": "select 1 as x\n"})
    project.ok("run")
    proc = run_module(["run", "--log-format", "json", "--vars", "{slow: true}", "--select", "big"], cwd=project.root)
    try:
        assert proc.stdout is not None
        started = False
        deadline = time.monotonic() + 30
        for line in proc.stdout:
            event = json.loads(line)
            if event["event"] == "node_started" and event["unique_id"] == "model.big":
                started = True
                break
            assert time.monotonic() < deadline
        assert started, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.5)  # well inside the cross join
        assert proc.poll() is None, "the slow build finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    assert proc.returncode == -signal.SIGKILL
    assert project.rows("select n from big order by n") == [(0,), (1,), (2,)]
    assert project.rows("select x from small") == [(1,)]
    # The next run opens the warehouse normally and swaps the new table in.
    project.write({"models/big.sql": "{{ config(materialized='table') }}\nselect range as n from range(5)\n"})
    project.ok("run", "--select", "big")
    assert project.rows("select n from big order by n") == [(0,), (1,), (2,), (3,), (4,)]
    assert project.relations() == {"big": "BASE TABLE", "small": "VIEW"}


SLEEPY = """\
import time

import pyarrow as pa


def model(ctx):
    started = time.time()
    time.sleep(0.5)
    return pa.table({"started": [started], "finished": [time.time()]})
"""


def test_independent_nodes_run_concurrently(make_project: MakeProject) -> None:
    project = make_project({"models/sleepy_a.py": SLEEPY, "models/sleepy_b.py": SLEEPY})
    project.ok("run", "--threads", "2")  # first-use imports and warehouse creation out of the way
    started = time.perf_counter()
    project.ok("run", "--threads", "2")
    elapsed = time.perf_counter() - started
    assert elapsed < 0.9, f"two 0.5 s models took {elapsed:.2f} s with --threads 2"
    [(a_start, a_end)] = project.rows("select started, finished from sleepy_a")
    [(b_start, b_end)] = project.rows("select started, finished from sleepy_b")
    assert a_start < b_end and b_start < a_end  # the two sleeps overlapped


def test_threads_1_runs_nodes_one_after_another(make_project: MakeProject) -> None:
    project = make_project({"models/sleepy_a.py": SLEEPY, "models/sleepy_b.py": SLEEPY})
    project.ok("run", "--threads", "1")
    [(a_start, a_end)] = project.rows("select started, finished from sleepy_a")
    [(b_start, b_end)] = project.rows("select started, finished from sleepy_b")
    assert a_end <= b_start or b_end <= a_start
