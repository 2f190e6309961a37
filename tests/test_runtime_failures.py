"""Per-row failures: NULL or a failed struct, recorded, stored as failures, replayed, retried with --retry-failed;
and the per-node failure budget."""

from __future__ import annotations

from conftest import MakeProject, ProjectDir
from runtime_support import cache_rows, call_count, calls, ledger, node_result, udf_module

FLAKY_UDFS = udf_module('''\
    from pydantic import BaseModel

    from dataproj import RowFailure, record_usage, udf

    _FIXED = _CALLS.parent / "fixed"


    class Verdict(BaseModel):
        label: str
        score: float


    @udf(cached=True)
    def upper(text: str) -> str:
        log("upper", text)
        if text.startswith("bad") and not _FIXED.exists():
            raise ValueError(f"cannot shout {text!r}")
        return text.upper()


    @udf(cached=True, kind="io")
    def judge(text: str) -> Verdict:
        log("judge", text)
        if _FIXED.exists():
            return Verdict(label=text, score=1.0)
        if text == "bad-json":
            raise RowFailure("response is not JSON", raw_response="{oops")
        if text == "bad-usage":
            record_usage(raw_response="<html>502</html>")
            raise ConnectionAbortedError("gateway hung up")
        return Verdict(label=text, score=0.5)
''')

FLAKY_MODEL = """\
    {{ config(materialized='table', failure_budget=0.9) }}
    select t, upper(t) as u, judge(t) as j
    from (values ('a'), ('bad-json'), ('b'), ('bad-usage')) v(t)
    """


def flaky_project(make_project: MakeProject) -> ProjectDir:
    return make_project({"udfs/flaky.py": FLAKY_UDFS, "models/verdicts.sql": FLAKY_MODEL})


def verdicts(project: ProjectDir) -> dict[str, tuple]:
    return {t: (u, j) for t, u, j in project.rows("select t, u, j from verdicts")}


FAILED_JSON = {"label": None, "score": None, "status": "failed", "error": "response is not JSON",
               "raw_response": "{oops"}
FAILED_USAGE = {"label": None, "score": None, "status": "failed",
                "error": "ConnectionAbortedError: gateway hung up", "raw_response": "<html>502</html>"}


def test_a_failing_row_becomes_null_or_a_failed_struct_and_the_query_goes_on(make_project: MakeProject) -> None:
    project = flaky_project(make_project)
    project.ok("run")
    rows = verdicts(project)
    assert rows["a"] == ("A", {"label": "a", "score": 0.5, "status": "ok", "error": None, "raw_response": None})
    assert rows["bad-json"] == (None, FAILED_JSON)
    assert rows["bad-usage"] == (None, FAILED_USAGE)
    assert rows["b"][0] == "B"
    result = node_result(project, "verdicts")
    assert (result["status"], result["rows"], result["calls"], result["failed_calls"]) == ("success", 4, 8, 4)
    # Stored as failures with their errors, never as successes.
    assert sorted((r["in_text"], r["ok"], r["error"]) for r in cache_rows(project, "upper")) == [
        ("a", True, None), ("b", True, None),
        ("bad-json", False, "ValueError: cannot shout 'bad-json'"),
        ("bad-usage", False, "ValueError: cannot shout 'bad-usage'")]
    failed = {r["in_text"]: r["value"] for r in cache_rows(project, "judge") if not r["ok"]}
    assert failed == {"bad-json": FAILED_JSON, "bad-usage": FAILED_USAGE}
    # And recorded in the ledger (row functions: see test_runtime_ledger).
    assert sorted(r["error"] for r in ledger(project, "status = 'failed' and function = 'judge'")) == [
        "ConnectionAbortedError: gateway hung up", "response is not JSON"]


def test_a_failing_row_in_query_prints_null(make_project: MakeProject) -> None:
    project = flaky_project(make_project)
    result = project.ok("query", "select upper('bad-x') as u, upper('ok') as v", "--format", "json")
    assert result.json_lines() == [{"u": None, "v": "OK"}]


PLAIN_UDFS = udf_module('''\
    from pydantic import BaseModel

    from dataproj import udf


    class Half(BaseModel):
        value: int


    @udf
    def half(i: int) -> int:
        log("half", i)
        if i % 7 in (0, 1) or i == 2999:  # the first rows, two in a row, the last one
            raise ValueError(f"odd one {i}")
        return i // 2


    @udf
    def half_struct(i: int) -> Half:
        log("half_struct", i)
        if i % 7 == 3:
            raise ValueError(f"odd one {i}")
        return Half(value=i // 2)
''')


def test_uncached_row_functions_fail_only_their_rows_and_call_each_row_once(make_project: MakeProject) -> None:
    project = make_project({"udfs/plain.py": PLAIN_UDFS, "models/halves.sql":
                            "{{ config(materialized='table', failure_budget=0.5) }}\n"
                            "select i, half(i) as h, half_struct(i) as s from range(3000) t(i)\n"})
    project.ok("run")
    rows = {i: (h, s) for i, h, s in project.rows("select i, h, s from halves")}
    failing = {i for i in range(3000) if i % 7 in (0, 1) or i == 2999}
    assert {i for i, (h, _) in rows.items() if h is None} == failing
    assert all(h == i // 2 for i, (h, _) in rows.items() if i not in failing)
    assert rows[3][1] == {"value": None, "status": "failed", "error": "ValueError: odd one 3", "raw_response": None}
    assert rows[4][1] == {"value": 2, "status": "ok", "error": None, "raw_response": None}
    assert sorted(int(c[0]) for c in calls(project, "half")) == list(range(3000))  # no row called twice
    assert call_count(project, "half_struct") == 3000
    result = node_result(project, "halves")
    assert (result["rows"], result["failed_calls"]) == (3000, len(failing) + len(range(3, 3000, 7)))


def test_failures_are_replayed_without_a_call_and_retried_with_retry_failed(make_project: MakeProject) -> None:
    project = flaky_project(make_project)
    project.ok("run")
    first = verdicts(project)
    assert (call_count(project, "upper"), call_count(project, "judge")) == (4, 4)

    project.ok("run")  # nothing was fixed: the failures come back from the cache, unpaid
    assert (call_count(project, "upper"), call_count(project, "judge")) == (4, 4)
    assert verdicts(project) == first
    result = node_result(project, "verdicts")
    assert (result["calls"], result["cache_hits"], result["failed_calls"]) == (0, 8, 0)

    project.write({"fixed": ""})
    project.ok("run", "--retry-failed")
    # Only the failed calls were made again.
    assert sorted(t for t, in calls(project, "upper")[4:]) == ["bad-json", "bad-usage"]
    assert sorted(t for t, in calls(project, "judge")[4:]) == ["bad-json", "bad-usage"]
    rows = verdicts(project)
    assert rows["bad-json"] == ("BAD-JSON", {"label": "bad-json", "score": 1.0, "status": "ok", "error": None,
                                             "raw_response": None})
    assert rows["a"] == first["a"]  # not recomputed (it would say score 1.0 now)
    result = node_result(project, "verdicts")
    assert (result["calls"], result["cache_hits"], result["failed_calls"]) == (4, 4, 0)

    project.ok("run")  # the successful retry replaced the failure
    assert (call_count(project, "upper"), call_count(project, "judge")) == (6, 6)
    assert verdicts(project) == rows


BUDGET_UDFS = udf_module('''\
    import time

    from dataproj import udf

    _FIXED = _CALLS.parent / "fixed"


    @udf(cached=True, kind="io", backend="api")
    def fragile(i: int) -> str:
        if not _FIXED.exists():
            time.sleep(0.05)  # slow enough that the runner keeps up with the answers
        if i % 2 and not _FIXED.exists():
            log("fragile", i, "failed")
            raise TimeoutError(f"row {i} timed out")
        log("fragile", i, "ok")
        return f"ok {i}"


    @udf(cached=True)
    def fragile_row(i: int) -> str:
        if i % 2 and not _FIXED.exists():
            log("fragile_row", i, "failed")
            raise ValueError(f"row {i} is odd")
        log("fragile_row", i, "ok")
        return f"ok {i}"
''')

BUDGET_YML = "name: demo\nbackends:\n  api: {max_workers: 4, max_attempts: 1}\n"


def budget_project(make_project: MakeProject, function: str, rows: int = 200) -> ProjectDir:
    return make_project({
        "udfs/budget.py": BUDGET_UDFS,
        "models/fragile_all.sql": f"{{{{ config(materialized='table') }}}}\n"
                                  f"select i, {function}(i) as v from range({rows}) t(i)\n",
        "models/after.sql": "select count(*) as n from {{ ref('fragile_all') }}\n",
    }, project_yml=BUDGET_YML)


def test_an_exceeded_failure_budget_fails_the_node_and_keeps_what_was_paid(make_project: MakeProject) -> None:
    project = budget_project(make_project, "fragile")
    result = project.cli("run")
    assert result.code == 1, result.text
    assert project.statuses() == {"fragile_all": "error", "after": "skipped"}
    failed = node_result(project, "fragile_all")
    assert "failure budget exceeded in fragile_all" in failed["message"]
    assert "TimeoutError: row" in failed["message"]
    # It stopped soon after the budget applied (10 calls), not after 200.
    made = calls(project, "fragile")
    assert 10 <= len(made) <= 10 + 2 * 4
    assert failed["failed_calls"] > 0.2 * failed["calls"]

    stored = {r["in_i"]: r["ok"] for r in cache_rows(project, "fragile")}
    assert stored, "finished calls are cached"
    assert all(stored[int(i)] == (status == "ok") for i, status in made if int(i) in stored)

    project.write({"fixed": ""})
    project.ok("run")
    rerun = [int(i) for i, _ in calls(project, "fragile")[len(made):]]
    assert sorted(rerun) == sorted(set(range(200)) - set(stored))  # nothing stored is paid for again
    assert project.statuses() == {"fragile_all": "success", "after": "success"}
    # The failures stored by the first run are replayed as they were (--retry-failed would retry them).
    assert project.rows("select count(*) from fragile_all where v is null") == [
        (sum(1 for ok in stored.values() if not ok),)]


def test_calls_running_when_the_budget_trips_are_still_stored(make_project: MakeProject) -> None:
    project = budget_project(make_project, "fragile")
    assert project.cli("run").code == 1
    made = calls(project, "fragile")
    assert len(cache_rows(project, "fragile")) == len(made)
    assert len(ledger(project)) == len(made)


def test_the_failure_budget_stops_a_row_function_soon_after_ten_calls(make_project: MakeProject) -> None:
    project = budget_project(make_project, "fragile_row")
    assert project.cli("run").code == 1
    assert node_result(project, "fragile_all")["status"] == "error"
    assert len(calls(project, "fragile_row")) <= 20


def test_the_failure_budget_is_configurable_and_applies_after_ten_calls(make_project: MakeProject) -> None:
    # 9 calls, all failing: under the 10 calls the budget waits for, so the node succeeds with NULLs.
    project = make_project({
        "udfs/budget.py": BUDGET_UDFS,
        "models/few.sql": "{{ config(materialized='table') }}\nselect fragile_row(2 * i + 1) as v from range(9) t(i)\n",
        # 50% failures with a budget of 0.6 is fine.
        "models/tolerant.sql": "{{ config(materialized='table', failure_budget=0.6) }}\n"
                               "select fragile_row(i + 100) as v from range(40) t(i)\n",
        # 2 of 10 failing is within the default 20%; 3 of 10 is not.
        "models/within.sql": "{{ config(materialized='table') }}\n"
                             "select fragile_row(i) as v from (values (0), (2), (4), (6), (8), (10), (12), (14), "
                             "(1), (3)) t(i)\n",
        "models/over.sql": "{{ config(materialized='table') }}\n"
                           "select fragile_row(i + 1000) as v from (values (0), (2), (4), (6), (8), (10), (12), "
                           "(1), (3), (5)) t(i)\n",
    })
    result = project.cli("run")
    assert result.code == 1
    assert project.statuses() == {"few": "success", "tolerant": "success", "within": "success", "over": "error"}
    assert project.rows("select count(*), count(v) from few") == [(9, 0)]
    assert project.rows("select count(*), count(v) from tolerant") == [(40, 20)]
    assert node_result(project, "over")["failed_calls"] == 3
    assert "3 of 10 calls failed" in node_result(project, "over")["message"]
