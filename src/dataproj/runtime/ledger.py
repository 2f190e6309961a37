"""The call ledger: one row per real call (never a cache hit) with its node, model, latency, tokens and cost."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from .cache import LEDGER_TABLE, CallCache
from .journal import Insert


@dataclass
class Usage:
    """What a call reports about itself (see record_usage)."""

    model: str | None = None
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    raw_response: str | None = None


_current_usage: contextvars.ContextVar[Usage | None] = contextvars.ContextVar("dataproj_usage", default=None)


def record_usage(*, model: str | None = None, input_tokens: int = 0, cached_input_tokens: int = 0,
                 output_tokens: int = 0, raw_response: str | None = None) -> None:
    """Called from inside a UDF (or a client it uses): attach token usage to the call being made."""
    usage = _current_usage.get()
    if usage is None:
        return
    usage.model = model or usage.model
    usage.input_tokens += input_tokens
    usage.cached_input_tokens += cached_input_tokens
    usage.output_tokens += output_tokens
    if raw_response is not None:
        usage.raw_response = raw_response


def start_usage() -> tuple[Usage, contextvars.Token[Usage | None]]:
    usage = Usage()
    return usage, _current_usage.set(usage)


def end_usage(token: contextvars.Token[Usage | None]) -> None:
    _current_usage.reset(token)


@dataclass(frozen=True)
class Price:
    """US dollars per million tokens."""

    input: float = 0.0
    cached_input: float | None = None
    output: float = 0.0

    def cost(self, usage: Usage) -> float:
        cached = min(usage.cached_input_tokens, usage.input_tokens)
        cached_rate = self.input if self.cached_input is None else self.cached_input
        return ((usage.input_tokens - cached) * self.input + cached * cached_rate
                + usage.output_tokens * self.output) / 1e6


def parse_prices(config: Mapping[str, Any]) -> dict[str, Price]:
    return {model: Price(**values) for model, values in config.items()}


@dataclass
class CallRecord:
    function: str
    namespace: str
    node: str
    backend: str | None
    model: str | None
    status: str  # ok | failed
    latency_s: float
    attempts: int = 1
    rows: int = 1  # rows served by the call (a batch function serves many)
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    error: str | None = None
    # naive UTC: a TIMESTAMPTZ column would need pytz just to be read back into Python
    called_at: datetime = field(default_factory=lambda: datetime.now(UTC).replace(tzinfo=None))


_COLUMNS = tuple(f.name for f in fields(CallRecord))


class Ledger:
    """Appends call records to the cache database (durable with the results they paid for)."""

    def __init__(self, cache: CallCache) -> None:
        self.cache = cache
        self._lock = threading.Lock()
        self.publish_lock = threading.Lock()
        self._ready = False

    def _ensure(self) -> None:
        if not self._ready:
            with self.cache._lock:
                self.cache.con.execute(
                    f"create table if not exists {LEDGER_TABLE} (function varchar, namespace varchar, node varchar, "
                    "backend varchar, model varchar, status varchar, latency_s double, attempts bigint, rows bigint, "
                    "input_tokens bigint, cached_input_tokens bigint, output_tokens bigint, cost_usd double, "
                    "error varchar, called_at timestamp)")
            self._ready = True

    def insert(self, records: list[CallRecord], *, node: str | None = None) -> Insert | None:
        """Records as rows for the ledger table (None when there are none); creates the table on first use."""
        if not records:
            return None
        for record in records:
            record.node = record.node or node or "query"
        self._ensure()
        return Insert(LEDGER_TABLE, _COLUMNS, [tuple(getattr(r, name) for name in _COLUMNS) for r in records])

    def record(self, records: list[CallRecord], *, node: str | None = None) -> None:
        """Ledger rows of calls whose results are not cached: durable at once, like cached calls."""
        insert = self.insert(records, node=node)
        if insert is not None:
            self.cache.journal.append((insert,))

    def to_arrow(self) -> pa.Table:
        self._ensure()
        self.cache.flush()
        with self.cache._lock:
            return self.cache.con.sql(f"select * from {LEDGER_TABLE} order by called_at").to_arrow_table()


LEDGER_COLUMNS = list(_COLUMNS)


def publish(ledger: Ledger, con: Any) -> None:
    """The ledger as the warehouse table `dataproj_calls` (at the end of a run, and before Python models run,
    so a report model sees the calls made so far)."""
    with ledger.publish_lock:  # Python models on several threads would otherwise conflict on the table
        calls = ledger.to_arrow()
        con.register("__dp_calls", calls)
        try:
            con.execute(f"create or replace table main.{LEDGER_TABLE} as select * from __dp_calls")
        finally:
            con.unregister("__dp_calls")
