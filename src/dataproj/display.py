"""Terminal output: a line per finished node, a live panel for nodes running long, a summary table;
or one JSON object per event for CI logs (`--log-format json`)."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from .compiler import CompiledNode
from .runner import NodeResult

_STYLE = {"success": "green", "pass": "green", "warn": "yellow", "fail": "red", "error": "red",
          "skipped": "dim"}
_LABEL = {"success": "OK", "pass": "PASS", "warn": "WARN", "fail": "FAIL", "error": "ERROR", "skipped": "SKIP"}
LONG_RUNNING_S = 1.0


def _verb(result: NodeResult) -> str:
    if result.resource_type == "test":
        return "test"
    if result.resource_type == "seed":
        return "seed"
    return {"view": "view", "table": "table", "incremental": "incremental", "ephemeral": "ephemeral"}.get(
        result.materialized, result.materialized)


def call_summary(calls: int, hits: int, failed: int, cost: float) -> str:
    return f"{calls:,} calls, {hits:,} cache hits, {failed:,} failed, ${cost:,.2f}"


class _Running:
    """The live panel: nodes running for more than a second, with elapsed time and their function calls."""

    def __init__(self) -> None:
        self.started: dict[str, tuple[float, CompiledNode]] = {}
        self.lock = threading.Lock()
        self.live_stats: Callable[[str], Any] | None = None

    def __rich__(self) -> Any:
        from rich.table import Table

        now = time.perf_counter()
        table = Table.grid(padding=(0, 2))
        with self.lock:
            items = [(now - t, c) for t, c in self.started.values() if now - t >= LONG_RUNNING_S]
        for elapsed, compiled in sorted(items, key=lambda item: -item[0]):
            table.add_row("[cyan]running[/]", compiled.node.name, f"{elapsed:5.1f}s", self._calls(compiled))
        return table

    def _calls(self, compiled: CompiledNode) -> str:
        stats = self.live_stats(compiled.node.name) if self.live_stats else None
        if stats is None or not (stats.rows or stats.calls):
            return ""
        return (f"{stats.rows:,} rows · {stats.calls_per_second():.1f} calls/s · "
                + call_summary(stats.calls, stats.cache_hits, stats.failed, stats.cost_usd))


class RichReporter:
    def __init__(self, command: str, *, console: Any = None) -> None:
        from rich.console import Console

        self.command = command
        self.console = console or Console(stderr=False, highlight=False)
        self.running = _Running()
        self.live: Any = None

    def start(self, total: int, live_stats: Callable[[str], Any] | None = None) -> None:
        from rich.live import Live

        self.running.live_stats = live_stats
        self.console.print(f"[bold]{self.command}[/]: {total} node{'s' if total != 1 else ''}")
        if self.console.is_terminal:
            self.live = Live(self.running, console=self.console, refresh_per_second=4, transient=True)
            self.live.start()

    def node_started(self, compiled: CompiledNode) -> None:
        with self.running.lock:
            self.running.started[compiled.unique_id] = (time.perf_counter(), compiled)

    def node_finished(self, result: NodeResult, index: int, total: int) -> None:
        with self.running.lock:
            self.running.started.pop(result.unique_id, None)
        style = _STYLE.get(result.status, "white")
        detail = f"{result.rows:,} rows" if result.rows is not None else ""
        if result.failures:
            detail = f"{result.failures:,} failing"
        timing = f"{result.execution_time:.2f}s" if result.status != "skipped" else ""
        if result.calls or result.cache_hits:
            detail += " · " + call_summary(result.calls, result.cache_hits, result.failed_calls, result.cost_usd)
        width = len(str(total))
        label = _LABEL.get(result.status, result.status)
        lines = [f"{index:>{width}}/{total} {label:<5} {_verb(result):<11} {result.name} {detail} {timing}"]
        if result.status in ("error", "fail", "warn") and result.message:
            lines.append(f"    {result.message}")
        lines += [f"      {json.dumps(row, default=str)}" for row in result.failing_rows]
        if not self.console.is_terminal:  # logs and pipes: plain text, without rich's per-line rendering cost
            self.console.file.write("\n".join(lines) + "\n")
            return
        from rich.markup import escape

        lines[0] = (f"{index:>{width}}/{total} [{style}]{label:<5}[/] {_verb(result):<11} {escape(result.name)} "
                    f"[dim]{escape(detail)} {timing}[/]")
        self.console.print(lines[0])
        for extra in lines[1:]:
            self.console.print(extra, style=style if extra.startswith("    ") and not extra.startswith("      ")
                               else None, markup=False, highlight=False)

    def finish(self, results: list[NodeResult], elapsed: float) -> None:
        from rich.table import Table

        if self.live is not None:
            self.live.stop()
        table = Table(title=f"{self.command} finished in {elapsed:.2f}s", title_justify="left")
        with_calls = any(r.calls or r.cache_hits for r in results)
        columns = ["node", "status", "rows", "seconds"] + (["calls", "hits", "failed", "cost $"] if with_calls else [])
        for column in columns:
            table.add_column(column, justify="left" if column in ("node", "status") else "right")
        for result in results:
            rows = f"{result.rows:,}" if result.rows is not None else (
                f"{result.failures:,} failing" if result.failures else "")
            cells = [result.name, f"[{_STYLE.get(result.status, 'white')}]{result.status}[/]", rows,
                     f"{result.execution_time:.2f}" if result.status != "skipped" else ""]
            if with_calls:
                cells += [f"{result.calls:,}", f"{result.cache_hits:,}", f"{result.failed_calls:,}",
                          f"{result.cost_usd:,.2f}"]
            table.add_row(*cells)
        if len(results) <= 200:
            self.console.print(table)
        counts: dict[str, int] = {}
        for result in results:
            counts[result.status] = counts.get(result.status, 0) + 1
        line = "  ".join(f"[{_STYLE.get(s, 'white')}]{s}[/] {n}" for s, n in sorted(counts.items()))
        if any(r.calls or r.cache_hits for r in results):
            line += "   " + call_summary(sum(r.calls for r in results), sum(r.cache_hits for r in results),
                                        sum(r.failed_calls for r in results), sum(r.cost_usd for r in results))
        self.console.print(line)


class JsonReporter:
    """One JSON object per line on stdout, for CI log processors."""

    def __init__(self, command: str, stream: Any = None) -> None:
        self.command = command
        self.stream = stream or sys.stdout

    def _emit(self, event: str, **fields: Any) -> None:
        self.stream.write(json.dumps({"event": event, "command": self.command, **fields}, default=str) + "\n")
        self.stream.flush()

    def start(self, total: int, live_stats: Callable[[str], Any] | None = None) -> None:
        self._emit("run_started", total=total)

    def node_started(self, compiled: CompiledNode) -> None:
        self._emit("node_started", unique_id=compiled.unique_id)

    def node_finished(self, result: NodeResult, index: int, total: int) -> None:
        from dataclasses import asdict

        self._emit("node_finished", index=index, total=total, **asdict(result))

    def finish(self, results: list[NodeResult], elapsed: float) -> None:
        counts: dict[str, int] = {}
        for result in results:
            counts[result.status] = counts.get(result.status, 0) + 1
        self._emit("run_finished", elapsed=round(elapsed, 3), counts=counts,
                   calls=sum(r.calls for r in results), cache_hits=sum(r.cache_hits for r in results),
                   failed_calls=sum(r.failed_calls for r in results),
                   cost_usd=round(sum(r.cost_usd for r in results), 6))
