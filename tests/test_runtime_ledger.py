"""The call ledger: a row per real call with tokens and cost from project.yml prices, queryable as
`dataproj_calls`, summed per node in run_results.json and the run summary; retries and rate limits of backends."""

from __future__ import annotations

import pytest
from conftest import MakeProject, ProjectDir
from runtime_support import call_count, calls, ledger, node_result, udf_module

PRICED_YML = """\
name: demo
backends:
  vlm: {max_workers: 4}
prices:
  big-model: {input: 2.0, cached_input: 0.5, output: 10.0}
  cheap-model: {input: 1.0, output: 4.0}
"""

PRICED_UDFS = udf_module('''\
    from dataproj import record_usage, udf


    @udf(cached=True, kind="io", backend="vlm")
    def caption(i: int) -> str:
        log("caption", i)
        record_usage(model="big-model", input_tokens=100_000, cached_input_tokens=20_000, output_tokens=10_000)
        if i == 3:
            raise RuntimeError("the model refused")
        return f"caption {i}"


    @udf(cached=True, kind="io", config={"model": "cheap-model", "prompt": "short"})
    def tag(i: int) -> str:
        log("tag", i)
        record_usage(input_tokens=1_000_000, output_tokens=250_000)  # the model comes from config
        return f"tag {i}"


    @udf(cached=True, kind="io")
    def unpriced(i: int) -> int:
        log("unpriced", i)
        record_usage(model="mystery-model", input_tokens=5, output_tokens=5)
        return i


    @udf(kind="io", backend="vlm")
    def live(i: int) -> int:
        log("live", i)
        record_usage(model="cheap-model", input_tokens=1_000_000)
        return -i


    @udf
    def local_only(i: int) -> int:
        log("local_only", i)
        return i


    @udf(cached=True)
    def row_priced(i: int) -> int:
        log("row_priced", i)
        record_usage(model="cheap-model", input_tokens=1_000_000, output_tokens=0)
        return i
''')

CAPTION_COST = (80_000 * 2.0 + 20_000 * 0.5 + 10_000 * 10.0) / 1e6  # 0.27
TAG_COST = (1_000_000 * 1.0 + 250_000 * 4.0) / 1e6  # 2.0; no cached_input price: input price applies


def priced_project(make_project: MakeProject) -> ProjectDir:
    return make_project({
        "udfs/priced.py": PRICED_UDFS,
        "models/captions.sql": "{{ config(materialized='table') }}\n"
                               "select i, caption(i) as c, tag(i) as t, unpriced(i) as u from range(4) t(i)\n",
        "models/tags.sql": "{{ config(materialized='table') }}\n"
                           "select i, tag(i) as t, live(i) as l, local_only(i) as o from range(2, 6) t(i)\n",
    }, project_yml=PRICED_YML + "threads: 1\n")


def test_every_real_call_is_in_the_ledger_with_tokens_and_cost(make_project: MakeProject) -> None:
    project = priced_project(make_project)
    project.ok("run", "--select", "captions")
    rows = ledger(project)
    captions = sorted((r for r in rows if r["function"] == "caption"), key=lambda r: r["status"])
    assert len(captions) == 4 == call_count(project, "caption")
    for row in captions:
        assert (row["node"], row["backend"], row["model"], row["attempts"], row["rows"]) == (
            "captions", "vlm", "big-model", 1, 1)
        assert (row["input_tokens"], row["cached_input_tokens"], row["output_tokens"]) == (100_000, 20_000, 10_000)
        assert row["cost_usd"] == pytest.approx(CAPTION_COST)
        assert row["latency_s"] >= 0
    # A failed call is paid for too, and says why.
    assert [(r["status"], r["error"]) for r in captions] == [("failed", "RuntimeError: the model refused")] + [
        ("ok", None)] * 3
    tags = [r for r in rows if r["function"] == "tag"]
    assert [(r["model"], r["backend"]) for r in tags] == [("cheap-model", None)] * 4
    assert [r["cost_usd"] for r in tags] == pytest.approx([TAG_COST] * 4)
    unpriced = [r for r in rows if r["function"] == "unpriced"]
    assert {(r["model"], r["input_tokens"], r["cost_usd"]) for r in unpriced} == {("mystery-model", 5, 0.0)}

    result = node_result(project, "captions")
    assert (result["calls"], result["cache_hits"], result["failed_calls"]) == (12, 0, 1)
    assert result["cost_usd"] == pytest.approx(4 * CAPTION_COST + 4 * TAG_COST)


def test_cache_hits_are_not_in_the_ledger_and_uncached_backend_calls_always_are(make_project: MakeProject) -> None:
    project = priced_project(make_project)
    project.ok("run")
    first = len(ledger(project))
    assert call_count(project, "local_only") == 4
    # A plain function (not cached, no backend) is not ledgered; a backend function is, cached or not.
    assert {r["function"] for r in ledger(project)} == {"caption", "tag", "unpriced", "live"}
    assert len(ledger(project, "function = 'live'")) == 4

    project.ok("run")
    assert call_count(project, "caption") == 4 and call_count(project, "tag") == 6  # i = 0..5, once each
    assert call_count(project, "live") == 8  # not cached: called again
    assert len(ledger(project)) == first + 4
    assert len(ledger(project, "function = 'live'")) == 8
    tags = node_result(project, "tags")
    # live is real calls; tag hits the cache for every row; local_only is neither cached nor ledgered.
    assert (tags["calls"], tags["cache_hits"], tags["failed_calls"]) == (4 + 4, 4, 0)
    assert tags["cost_usd"] == pytest.approx(4 * 1.0)


def test_run_results_and_the_summary_sum_calls_per_node(make_project: MakeProject) -> None:
    project = priced_project(make_project)
    result = project.ok("run")
    captions, tags = node_result(project, "captions"), node_result(project, "tags")
    assert (captions["calls"], captions["cache_hits"], captions["failed_calls"]) == (12, 0, 1)
    # tags runs after captions (threads: 1, alphabetical): tag(2), tag(3) are cache hits.
    assert (tags["calls"], tags["cache_hits"], tags["failed_calls"]) == (2 + 4 + 4, 2, 0)
    per_node = {n: sum(r["cost_usd"] for r in ledger(project, f"node = '{n}'")) for n in ("captions", "tags")}
    assert captions["cost_usd"] == pytest.approx(per_node["captions"])
    assert tags["cost_usd"] == pytest.approx(per_node["tags"])
    total = per_node["captions"] + per_node["tags"]
    assert f"22 calls, 2 cache hits, 1 failed, ${total:,.2f}" in result.out

    events = project.ok("run", "--log-format", "json").json_lines()
    finished = [e for e in events if e["event"] == "run_finished"]
    assert len(finished) == 1
    # Only live and local_only (not cached) are called again; the failed caption is replayed.
    assert (finished[0]["calls"], finished[0]["cache_hits"], finished[0]["failed_calls"]) == (4 + 4, 12 + 4, 0)
    assert finished[0]["cost_usd"] == pytest.approx(4.0)


def test_a_cached_row_function_has_a_ledger_row_per_call_with_its_usage(make_project: MakeProject) -> None:
    project = make_project({
        "udfs/priced.py": PRICED_UDFS,
        "models/rows.sql": "{{ config(materialized='table') }}\nselect row_priced(i) as v from range(3) t(i)\n",
    }, project_yml=PRICED_YML)
    project.ok("run")
    assert call_count(project, "row_priced") == 3
    rows = ledger(project)
    assert [(r["function"], r["rows"], r["model"], r["input_tokens"]) for r in rows] == [
        ("row_priced", 1, "cheap-model", 1_000_000)] * 3
    assert node_result(project, "rows")["cost_usd"] == pytest.approx(3.0)


def test_the_ledger_is_queryable_with_dataproj_query(make_project: MakeProject) -> None:
    project = priced_project(make_project)
    project.ok("run", "--select", "captions")
    result = project.cli("query", "select * from dataproj_calls where function = 'caption'", "--format", "json")
    assert result.code == 0, result.text
    assert len(result.json_lines()) == 4


BACKEND_YML = """\
name: demo
backends:
  flaky_api: {max_workers: 4, max_attempts: 3, backoff_initial_s: 0.01, backoff_max_s: 5}
  slow_api: {max_workers: 8, rpm: 300}
"""

BACKEND_UDFS = udf_module('''\
    import time
    from types import SimpleNamespace

    from dataproj import udf


    class Throttled(Exception):
        """Shaped like an HTTP client's error: a 429 whose response asks to wait."""

        def __init__(self, retry_after):
            super().__init__("429 Too Many Requests")
            self.status_code = 429
            self.response = SimpleNamespace(status_code=429, headers={"Retry-After": retry_after})


    class BadRequest(Exception):
        status_code = 400


    def attempts(name, i):
        log(name, i, time.monotonic())
        return sum(1 for line in (_CALLS / (name + ".log")).read_text().splitlines() if line.split("\\t")[0] == str(i))


    @udf(cached=True, kind="io", backend="flaky_api")
    def throttled(i: int) -> str:
        # Row 0 is throttled twice with Retry-After: 0.3; row 1 always; row 2 is a client error (not retried).
        n = attempts("throttled", i)
        if i == 0 and n <= 2 or i == 1:
            raise Throttled("0.3")
        if i == 2:
            raise BadRequest("bad request")
        return f"done {i} after {n}"


    @udf(kind="io", backend="slow_api")
    def paced(i: int) -> int:
        log("paced", i, time.monotonic())
        return i
''')


def test_backend_calls_are_retried_honouring_retry_after(make_project: MakeProject) -> None:
    project = make_project({
        "udfs/backend.py": BACKEND_UDFS,
        "models/retried.sql": "{{ config(materialized='table', failure_budget=1) }}\n"
                              "select i, throttled(i) as v from range(4) t(i)\n",
    }, project_yml=BACKEND_YML)
    project.ok("run")
    assert project.rows("select i, v from retried order by i") == [
        (0, "done 0 after 3"), (1, None), (2, None), (3, "done 3 after 1")]
    attempts = {}
    for i, at in calls(project, "throttled"):
        attempts.setdefault(int(i), []).append(float(at))
    assert {i: len(times) for i, times in attempts.items()} == {0: 3, 1: 3, 2: 1, 3: 1}
    gaps = [b - a for a, b in zip(attempts[0], attempts[0][1:], strict=False)]
    assert all(0.3 <= gap < 1.5 for gap in gaps), gaps  # Retry-After, not the 0.01 s backoff
    assert sorted((r["status"], r["error"] or "") for r in ledger(project)) == [
        ("failed", "BadRequest: bad request"), ("failed", "Throttled: 429 Too Many Requests"), ("ok", ""), ("ok", "")]
    assert sorted(r["attempts"] for r in ledger(project, "status = 'ok'")) == [1, 3]
    assert node_result(project, "retried")["failed_calls"] == 2


def test_the_ledger_counts_the_attempts_of_a_call_that_failed_after_retries(make_project: MakeProject) -> None:
    project = make_project({
        "udfs/backend.py": BACKEND_UDFS,
        "models/retried.sql": "{{ config(materialized='table', failure_budget=1) }}\n"
                              "select throttled(1) as v\n",
    }, project_yml=BACKEND_YML.replace("max_attempts: 3", "max_attempts: 2"))
    project.ok("run")
    assert call_count(project, "throttled") == 2
    assert [(r["status"], r["attempts"]) for r in ledger(project)] == [("failed", 2)]


def test_rpm_limits_a_backend(make_project: MakeProject) -> None:
    project = make_project({
        "udfs/backend.py": BACKEND_UDFS,
        "models/paced.sql": "{{ config(materialized='table') }}\nselect paced(i) as v from range(8) t(i)\n",
    }, project_yml=BACKEND_YML)
    project.ok("run")
    starts = sorted(float(at) for _, at in calls(project, "paced"))
    assert len(starts) == 8
    # 300 rpm = 5 per second with a burst of 5: the last 3 wait 0.2 s each, although 8 workers are free.
    assert starts[-1] - starts[0] >= 0.5
    assert starts[4] - starts[0] < 0.2
