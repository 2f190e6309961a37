"""Every CLI command as a plain function: load the project, compile, select, execute, write artifacts."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import artifacts
from .compiler import Compiler, deep_merge
from .errors import DataprojError
from .graph import Graph, add_test_gates, build_graph
from .project import Project, load_project
from .runner import FAILED, NodeResult, Reporter, RunContext, execute, function_scope
from .selector import describe, select_nodes
from .warehouse import Warehouse

RESOURCE_TYPES = {"run": {"model"}, "seed": {"seed"}, "test": {"test"}, "build": {"model", "seed", "test"},
                  "compile": {"model", "test"}, "ls": {"model", "seed", "test"}}


@dataclass
class Options:
    project_dir: Path = Path(".")
    select: list[str] | None = None
    exclude: list[str] | None = None
    vars: dict[str, Any] = field(default_factory=dict)
    threads: int | None = None
    full_refresh: bool = False
    state_dir: Path | None = None
    resource_types: set[str] | None = None
    refresh_cache: bool | list[str] = False  # True: every function; a list: those functions
    retry_failed: bool = False


@dataclass
class Session:
    """A loaded and compiled project, with the selection a command asked for."""

    project: Project
    compiler: Compiler
    graph: Graph
    selected: list[str]
    manifest: dict[str, Any]

    @property
    def target_dir(self) -> Path:
        return self.project.dir("target")


@contextmanager
def open_warehouse(project: Project, options: Options | None = None) -> Iterator[Warehouse]:
    """The warehouse with every project function registered on each cursor; closes both."""
    from .functions import make_runtime

    runtime = make_runtime(project, refresh=options.refresh_cache if options else False,
                           retry_failed=options.retry_failed if options else False,
                           variables=deep_merge(project.config.vars, options.vars if options else {}))
    def project_paths(cursor: Any) -> None:
        # read_csv('seeds/x.csv') in a model means the project's file, wherever dataproj was started from
        cursor.execute("set file_search_path = '" + str(project.root).replace("'", "''") + "'")

    try:
        warehouse = Warehouse(project.warehouse_path, cursor_setup=[project_paths, runtime.register])
    except BaseException:
        runtime.close()
        raise
    warehouse.runtime = runtime
    try:
        yield warehouse
    finally:
        warehouse.close()
        runtime.close()


def prepare(options: Options, command: str, *, project: Project | None = None,
            existing: dict[str, str] | None = None) -> Session:
    project = project or load_project(options.project_dir)
    target = project.dir("target")
    compiler = Compiler(project, cli_vars=options.vars, existing_relations=existing or {},
                        full_refresh=options.full_refresh, cache_dir=target / "jinja_cache")
    graph = build_graph(project, compiler)
    manifest = artifacts.manifest(graph, compiler, target, command)
    state_dir = options.state_dir or project.dir("state")
    is_modified = artifacts.modified_checker(artifacts.load_state(state_dir), manifest)
    nodes = {uid: c.node for uid, c in graph.nodes.items()}
    chosen = select_nodes(options.select, options.exclude, nodes, graph.parents, graph.children, is_modified)
    types = options.resource_types or RESOURCE_TYPES[command]
    selected = [uid for uid in graph.sorted(chosen) if graph.nodes[uid].node.resource_type in types]
    return Session(project=project, compiler=compiler, graph=graph, selected=selected, manifest=manifest)


def nothing_selected(options: Options) -> str:
    return f"nothing to do: the selection matched no nodes ({describe(options.select, options.exclude)})"


def list_nodes(options: Options) -> list[dict[str, Any]]:
    """`dataproj ls`: the selection in run order."""
    session = prepare(options, "ls")
    return [{"unique_id": uid, **{k: session.manifest["nodes"][uid][k]
                                  for k in ("name", "resource_type", "path", "tags", "depends_on")},
             "materialized": session.graph.nodes[uid].node.materialized} for uid in session.selected]


def compile_project(options: Options) -> Session:
    session = prepare(options, "compile")
    artifacts.write_compiled(session.graph, session.target_dir)
    artifacts.write_manifest(session.manifest, session.target_dir)
    return session


def execute_command(options: Options, command: str, reporter: Reporter) -> tuple[list[NodeResult], str | None]:
    """seed / run / test / build. Returns the node results and a note (e.g. nothing selected)."""
    project = load_project(options.project_dir)
    started = time.perf_counter()
    with open_warehouse(project, options) as warehouse:
        existing = warehouse.relations()
        session = prepare(options, command, project=project, existing=existing)
        graph = add_test_gates(session.graph) if command == "build" else session.graph
        # Compiled SQL files are for people to read: write them while the run goes on, not before it.
        writer = threading.Thread(target=artifacts.write_compiled, args=(graph, session.target_dir), daemon=True)
        writer.start()
        artifacts.write_manifest(session.manifest, session.target_dir)
        if not session.selected:
            writer.join()
            return [], nothing_selected(options)
        ctx = RunContext(root=session.project.root, warehouse=warehouse, graph=graph,
                         variables=session.compiler.vars, exports_dir=session.project.dir("exports"),
                         full_refresh=options.full_refresh, existing=existing, runtime=warehouse.runtime,
                         scoped=function_scope(graph, warehouse.runtime.calls_functions))
        threads = options.threads or session.project.config.threads
        try:
            results = execute(ctx, graph.sorted(session.selected), threads, reporter)
        finally:
            publish_ledger(warehouse)
            writer.join()
    artifacts.write_run_results(results, time.perf_counter() - started, session.target_dir, command,
                                {"select": options.select, "exclude": options.exclude, "vars": options.vars,
                                 "full_refresh": options.full_refresh, "threads": threads})
    artifacts.update_state(options.state_dir or session.project.dir("state"), session.manifest, results)
    return results, None


def publish_ledger(warehouse: Warehouse) -> None:
    """Copy the call ledger (kept with the cache) into the warehouse as `dataproj_calls`."""
    from .runtime.ledger import publish

    publish(warehouse.runtime.ledger, warehouse.con)


def exit_code(results: list[NodeResult]) -> int:
    return 1 if any(r.status in FAILED for r in results) else 0


def query(options: Options, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """`dataproj query`: plain SQL against the warehouse, with every project function registered."""
    project = load_project(options.project_dir)
    with open_warehouse(project, options) as warehouse:
        relation = warehouse.con.sql(sql)
        if relation is None:
            return [], []
        return list(relation.columns), relation.fetchall()


def show(options: Options, model: str, limit: int) -> tuple[list[str], list[tuple[Any, ...]]]:
    """`dataproj show`: the first rows of a model (ephemeral ones are computed from their SQL)."""
    project = load_project(options.project_dir)
    with open_warehouse(project, options) as warehouse:
        existing = warehouse.relations()
        session = prepare(Options(project_dir=options.project_dir, vars=options.vars), "ls", project=project,
                          existing=existing)
        matches = [c for c in session.graph.nodes.values() if c.node.name == model and c.node.resource_type != "test"]
        if not matches:
            raise DataprojError(f"no model or seed named {model!r}", hint="list them with: dataproj ls")
        compiled = matches[0]
        if compiled.node.materialized == "ephemeral" or model not in existing:
            if not compiled.sql:
                raise DataprojError(f"{model} is not built yet", hint=f"dataproj build --select {model}")
            relation = warehouse.con.sql(f"select * from (\n{compiled.sql}\n) limit {int(limit)}")
        else:
            relation = warehouse.con.sql(f'select * from main."{model}" limit {int(limit)}')
        return list(relation.columns), relation.fetchall()


def export(options: Options, formats: list[str]) -> list[Path]:
    """`dataproj export`: write selected, built models (or their configured formats) to the exports folder."""
    from .export import export_relation

    project = load_project(options.project_dir)
    paths: list[Path] = []
    with open_warehouse(project, options) as warehouse:
        existing = warehouse.relations()
        session = prepare(options, "ls", project=project, existing=existing)
        for uid in session.selected:
            node = session.graph.nodes[uid].node
            if not node.is_relation:
                continue
            if node.name not in existing:
                raise DataprojError(f"{node.name} is not built yet", hint=f"dataproj build --select {node.name}")
            for fmt in formats or node.config.get("export", ()):
                paths.append(export_relation(warehouse.con, node.name, fmt, project.dir("exports"),
                                             node.config.get("export_path")))
    return paths


def clean(options: Options, *, warehouse: bool = False) -> list[Path]:
    """Remove target/ and exports/ (and with `warehouse`, the database and state; never the call cache)."""
    project = load_project(options.project_dir)
    doomed = [project.dir("target"), project.dir("exports")]
    if warehouse:
        wal = project.warehouse_path.with_name(project.warehouse_path.name + ".wal")
        doomed += [project.warehouse_path, wal, project.dir("state")]
    removed = []
    for path in doomed:
        if path.is_dir():
            shutil.rmtree(path)
            removed.append(path)
        elif path.exists():
            path.unlink()
            removed.append(path)
    return removed


def cache_stats(options: Options) -> tuple[list[str], list[tuple[Any, ...]]]:
    """`dataproj cache stats`: entries and failures per function, and what the ledger says was paid."""
    from .runtime.cache import CallCache
    from .runtime.ledger import Ledger

    project = load_project(options.project_dir)
    cache = CallCache(project.dir("cache") / "calls.duckdb")
    try:
        calls = Ledger(cache).to_arrow()
        spent: dict[str, tuple[int, float]] = {}
        for function, cost in zip(calls.column("function").to_pylist(), calls.column("cost_usd").to_pylist(),
                                  strict=True):
            count, total = spent.get(function, (0, 0.0))
            spent[function] = (count + 1, total + (cost or 0.0))
        rows = []
        for table, entries, failed in cache.stats():
            function = table[3:].rsplit("_", 1)[0]
            count, total = spent.get(function, (0, 0.0))
            rows.append((function, entries, failed, count, round(total, 4)))
        return ["function", "cached results", "failed", "ledger calls", "cost usd"], rows
    finally:
        cache.close()


def cache_clear(options: Options, function: str | None) -> int:
    """`dataproj cache clear [FUNCTION]`: forget cached results (the ledger of what was paid stays)."""
    from .runtime.cache import CallCache

    project = load_project(options.project_dir)
    cache = CallCache(project.dir("cache") / "calls.duckdb")
    try:
        return cache.clear(function)
    finally:
        cache.close()
