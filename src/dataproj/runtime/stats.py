"""Per-node call statistics: what the progress bar, run_results.json and the failure budget read."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


class FailureBudgetExceeded(RuntimeError):
    """Too many calls of a node failed: stop paying for a broken prompt or endpoint."""


@dataclass
class NodeStats:
    node: str
    failure_budget: float = 0.2
    min_calls: int = 10  # the budget applies once this many real calls were made
    refresh: bool = False  # the node recomputes its cached calls (model config refresh_cache)
    slots: threading.BoundedSemaphore | None = None  # model config max_workers: one slot per call in flight
    rows: int = 0
    calls: int = 0
    cache_hits: int = 0
    failed: int = 0
    failed_rows: int = 0  # rows whose result is a failure, computed now or replayed from the cache
    cost_usd: float = 0.0
    last_error: str | None = None
    observed_calls: int = 0  # counted by the worker threads as calls finish, before they are stored
    observed_failed: int = 0
    tripped: bool = False  # the budget is exceeded: calls not yet started are skipped
    started: float = field(default_factory=time.perf_counter)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_rows(self, rows: int, hits: int, failed_rows: int) -> None:
        """Count answered rows; too many failed rows (even replayed ones) fail the node too."""
        with self.lock:
            self.rows += rows
            self.cache_hits += hits
            self.failed_rows += failed_rows
            over = self.rows >= self.min_calls and self.failed_rows > self.failure_budget * self.rows
        if over:
            raise FailureBudgetExceeded(
                f"failure budget exceeded in {self.node}: {self.failed_rows} of {self.rows} rows failed "
                f"(more than {self.failure_budget:.0%}); last error: {self.last_error or 'replayed from the cache'}. "
                "Retry them with --retry-failed once the cause is fixed, or raise the node's failure_budget")

    def add_calls(self, calls: int, failed: int, cost_usd: float, last_error: str | None,
                  check_budget: bool = True) -> None:
        """Count finished real calls; raises FailureBudgetExceeded when too many of them failed."""
        with self.lock:
            self.calls += calls
            self.cost_usd += cost_usd
            self.failed += failed
            self.last_error = last_error or self.last_error
            over = self.calls >= self.min_calls and self.failed > self.failure_budget * self.calls
        if over and check_budget:
            raise FailureBudgetExceeded(
                f"failure budget exceeded in {self.node}: {self.failed} of {self.calls} calls failed "
                f"(more than {self.failure_budget:.0%}); last error: {self.last_error}. Finished calls are "
                "cached; fix the cause and rerun, or raise the node's failure_budget")

    def observe(self, ok: bool) -> None:
        """A worker finished a call: trip the budget at once, so no further call starts (and is paid for)."""
        with self.lock:
            self.observed_calls += 1
            self.observed_failed += 0 if ok else 1
            if (self.observed_calls >= self.min_calls
                    and self.observed_failed > self.failure_budget * self.observed_calls):
                self.tripped = True

    def budget_error(self) -> FailureBudgetExceeded:
        return FailureBudgetExceeded(
            f"failure budget exceeded in {self.node}: {self.observed_failed} of {self.observed_calls} calls failed "
            f"(more than {self.failure_budget:.0%}); last error: {self.last_error}. Finished calls are cached; "
            "fix the cause and rerun, or raise the node's failure_budget")

    def over_budget(self, more_calls: int, more_failed: int) -> bool:
        """Would these further calls exceed the budget? (checked before they are stored)"""
        calls, failed = self.calls + more_calls, self.failed + more_failed
        return calls >= self.min_calls and failed > self.failure_budget * calls

    def calls_per_second(self) -> float:
        elapsed = time.perf_counter() - self.started
        return self.calls / elapsed if elapsed > 0 else 0.0

    def summary(self) -> str:
        return f"{self.calls:,} calls, {self.cache_hits:,} cache hits, {self.failed:,} failed, ${self.cost_usd:,.2f}"
