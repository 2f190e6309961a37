"""Executes selected nodes concurrently in dependency order; a failure skips its descendants."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from .compiler import CompiledNode
from .datatests import describe as describe_test
from .errors import DataprojError
from .export import export_relation
from .graph import Graph
from .materialize import PythonModelContext, build_incremental, build_python_model, build_table, build_view
from .seeds import seed_select
from .warehouse import Warehouse

FAILED = {"error", "fail"}


@dataclass
class NodeResult:
    unique_id: str
    name: str
    resource_type: str
    materialized: str
    status: str  # success | error | skipped | pass | fail | warn
    message: str = ""
    rows: int | None = None
    execution_time: float = 0.0
    started_at: str = ""
    completed_at: str = ""
    failures: int | None = None
    failing_rows: list[dict[str, Any]] = field(default_factory=list)
    exports: list[str] = field(default_factory=list)
    calls: int = 0  # real function calls (not cache hits)
    cache_hits: int = 0
    failed_calls: int = 0
    cost_usd: float = 0.0


class Reporter(Protocol):
    def start(self, total: int, live_stats: Callable[[str], Any] | None = None) -> None: ...
    def node_started(self, compiled: CompiledNode) -> None: ...
    def node_finished(self, result: NodeResult, index: int, total: int) -> None: ...
    def finish(self, results: list[NodeResult], elapsed: float) -> None: ...


@dataclass
class RunContext:
    root: Path
    warehouse: Warehouse
    graph: Graph
    variables: dict[str, Any]
    exports_dir: Path
    full_refresh: bool = False
    existing: dict[str, str] = field(default_factory=dict)  # relation name -> 'table' | 'view'
    runtime: Any = None  # dataproj.runtime.runtime.Runtime, when functions are registered
    scoped: set[str] = field(default_factory=set)  # nodes whose queries may call functions (see function_scope)

    def ephemeral_sql(self) -> dict[str, str]:
        return {c.node.name: c.sql for c in self.graph.nodes.values() if c.node.materialized == "ephemeral"}


def function_scope(graph: Graph, calls_functions: Callable[[str], bool]) -> set[str]:
    """Nodes that may call SQL functions: their own SQL does, they are Python models, or they read a view that
    does (a view's functions run in the query that reads it). Only these pay for per-node call accounting."""
    scoped: set[str] = set()
    for uid in graph.order:
        compiled = graph.nodes[uid]
        inherited = any(p in scoped and graph.nodes[p].node.materialized == "view" for p in graph.parents[uid])
        if inherited or compiled.node.language == "python" or calls_functions(compiled.sql):
            scoped.add(uid)
    return scoped


def execute(ctx: RunContext, selected: list[str], threads: int, reporter: Reporter) -> list[NodeResult]:
    """Run `selected` (a topological order); independent nodes run at once on `threads` workers."""
    graph = ctx.graph
    chosen = set(selected)
    waiting = {uid: len(graph.parents[uid] & chosen) for uid in selected}
    ready = [uid for uid in selected if waiting[uid] == 0]
    skip_reason: dict[str, str] = {}
    results: list[NodeResult] = []
    started = time.perf_counter()
    reporter.start(len(selected), ctx.runtime.node_stats.get if ctx.runtime is not None else None)

    def release(uid: str) -> None:
        for child in sorted(graph.children[uid] & chosen):
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)

    def record(result: NodeResult) -> None:
        results.append(result)
        reporter.node_finished(result, len(results), len(selected))
        if result.status in FAILED:
            for uid in graph.descendants(result.unique_id) & chosen:
                skip_reason.setdefault(uid, f"skipped: upstream {result.name} {result.status}")
        release(result.unique_id)

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="dataproj") as pool:
        running: dict[Future[NodeResult], str] = {}
        try:
            while ready or running:
                while ready:
                    uid = ready.pop(0)
                    if uid in skip_reason:
                        record(_skipped(graph.nodes[uid], skip_reason[uid]))
                        continue
                    reporter.node_started(graph.nodes[uid])
                    running[pool.submit(run_node, ctx, graph.nodes[uid])] = uid
                if running:
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in sorted(done, key=lambda f: running[f]):
                        running.pop(future)
                        record(future.result())
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    reporter.finish(results, time.perf_counter() - started)
    return results


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _skipped(compiled: CompiledNode, reason: str) -> NodeResult:
    node = compiled.node
    return NodeResult(unique_id=node.unique_id, name=node.name, resource_type=node.resource_type,
                      materialized=node.materialized, status="skipped", message=reason)


def run_node(ctx: RunContext, compiled: CompiledNode) -> NodeResult:
    """Build or test one node on this thread's cursor; errors become an 'error' result."""
    node = compiled.node
    result = NodeResult(unique_id=node.unique_id, name=node.name, resource_type=node.resource_type,
                        materialized=node.materialized, status="success", started_at=_now())
    started = time.perf_counter()
    stats = None
    try:
        cur = ctx.warehouse.cursor()
        if ctx.runtime is not None and compiled.unique_id in ctx.scoped:
            stats = ctx.runtime.begin_node(cur, node.name, failure_budget=node.config.get("failure_budget", 0.2),
                                           vlm_backend=node.config.get("vlm_backend"),
                                           refresh=bool(node.config.get("refresh_cache")),
                                           max_workers=node.config.get("max_workers"))
        if node.resource_type == "test":
            missing = [ctx.graph.nodes[p].node.name for p in sorted(ctx.graph.parents[compiled.unique_id])
                       if ctx.graph.nodes[p].node.is_relation and ctx.graph.nodes[p].node.name not in ctx.existing]
            if missing:  # e.g. a relationships test whose other model was not selected and never built
                result.status, result.message = "skipped", f"skipped: {', '.join(missing)} not built"
            else:
                _run_test(cur, compiled, result)
        else:
            _build(ctx, cur, compiled, result)
    except DataprojError as err:
        result.status, result.message = "error", str(err)
    except Exception as err:  # the database's own message is the most useful thing to show
        result.status, result.message = "error", f"{node.path}: {type(err).__name__}: {err}"
    result.execution_time = time.perf_counter() - started
    result.completed_at = _now()
    if stats is not None:
        result.calls, result.cache_hits, result.failed_calls = stats.calls, stats.cache_hits, stats.failed
        result.cost_usd = round(stats.cost_usd, 6)
    return result


def _build(ctx: RunContext, cur: Any, compiled: CompiledNode, result: NodeResult) -> None:
    node = compiled.node
    existing = ctx.existing.get(node.name)
    kind = node.materialized
    if node.resource_type == "seed":
        sql, params = seed_select(cur, node, ctx.root)
        result.rows = build_table(cur, node.name, sql, existing, params)
    elif node.language == "python":
        if ctx.runtime is not None:
            from .runtime.ledger import publish

            publish(ctx.runtime.ledger, cur)
        context = PythonModelContext(cur, ctx.variables, ctx.ephemeral_sql(), project_dir=ctx.root,
                                     exports_dir=ctx.exports_dir)
        result.rows = build_python_model(cur, compiled, ctx.root, existing, context)
    elif kind == "view":
        build_view(cur, node.name, compiled.sql, existing)
    elif kind == "table":
        result.rows = build_table(cur, node.name, compiled.sql, existing)
    elif kind == "incremental":
        result.rows = build_incremental(cur, compiled, existing, ctx.full_refresh)
    elif kind == "ephemeral":
        result.message = "ephemeral: inlined into the models that use it"
        return
    ctx.existing[node.name] = "view" if kind == "view" else "table"
    for fmt in node.config.get("export", ()):
        result.exports.append(str(export_relation(cur, node.name, fmt, ctx.exports_dir,
                                                  node.config.get("export_path"))))


def _run_test(cur: Any, compiled: CompiledNode, result: NodeResult) -> None:
    node = compiled.node
    failures = int(cur.execute(f"select count(*) from (\n{compiled.sql}\n) as failures").fetchall()[0][0])
    result.failures = failures
    if failures == 0:
        result.status = "pass"
        return
    limit = int(node.config.get("store_failures_limit", 5))
    rows = cur.execute(f"select * from (\n{compiled.sql}\n) as failures limit {limit}").fetchall()
    columns = [d[0] for d in cur.description]
    result.failing_rows = [dict(zip(columns, row, strict=True)) for row in rows]
    result.status = "warn" if node.config.get("severity") == "warn" else "fail"
    result.message = f"{describe_test(node)}: {failures} failing row{'s' if failures != 1 else ''}"
