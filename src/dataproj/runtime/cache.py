"""The durable call cache: every finished call is stored the moment it completes, in a DuckDB file of its own.

One append-only table per function signature holds (namespace, typed inputs, ok, value, error). A namespace's
entries are loaded once per process into an index; lookups of a whole Arrow batch are vectorised: the SQL side
passes DuckDB's `hash()` of the arguments, and the index is a sorted numpy array of the same hashes.
Image arguments are stored as their content hash, so moving a file does not repay its calls.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from .index import MISS, NamespaceIndex
from .spec import FunctionSpec

__all__ = ["MISS", "CallCache", "NamespaceIndex", "StoredCall"]
LEDGER_TABLE = "dataproj_calls"

def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass
class StoredCall:
    inputs: tuple[Any, ...]  # argument values, image arguments as content hashes
    ok: bool
    value: Any  # plain Python value of the result type (None for a failed scalar)
    error: str | None
    latency_s: float


class CallCache:
    """A DuckDB database of call results; thread-safe (one connection, one lock)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._con: Any = None
        self._lock = threading.RLock()
        self._tables: set[str] = set()

    @property
    def con(self) -> Any:
        if self._con is None:
            from ..warehouse import open_duckdb

            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._con = open_duckdb(self.path)
        return self._con

    def table(self, spec: FunctionSpec) -> str:
        name = f"fn_{spec.sql_name}_{spec.signature}"
        if name not in self._tables:
            columns = ", ".join(f"{_quote('in_' + p.name)} {p.type.sql}" for p in spec.params)
            with self._lock:
                self.con.execute(
                    f"create table if not exists {_quote(name)} (namespace varchar, {columns}, ok boolean, "
                    f"value {spec.result.sql}, error varchar, latency_s double, "
                    f"created_at timestamp default current_timestamp)")
            self._tables.add(name)
        return name

    def load(self, spec: FunctionSpec, namespace: str, *, hashed: bool) -> NamespaceIndex:
        """The entries of a namespace in insertion order (the index keeps the latest per input). `hashed`: key
        by DuckDB hash() of the typed inputs, else by the input values (image arguments)."""
        table = _quote(self.table(spec))
        inputs = ", ".join(_quote("in_" + p.name) for p in spec.params)
        # No window over the whole table to find the latest entry per input: the index does that in its sort.
        query = (f"select {'hash(' + inputs + ')' if hashed else inputs}, ok, value, rowid from {table} "
                 "where namespace = ?")
        with self._lock:
            result = self.con.sql(query, params=[namespace]).to_arrow_table()
        rowid = result.column("rowid").to_numpy()
        if np.any(rowid[1:] < rowid[:-1]):  # DuckDB returns insertion order unless told not to keep it
            result = result.take(pa.array(np.argsort(rowid, kind="stable")))
        values = result.column("value").combine_chunks()
        ok = result.column("ok").to_numpy(zero_copy_only=False).astype(bool)
        if hashed:
            return NamespaceIndex(result.column(0).to_numpy().astype(np.uint64), values, ok, spec.result.arrow)
        index = NamespaceIndex(np.zeros(0, np.uint64), values.slice(0, 0), ok[:0], spec.result.arrow)
        rows = zip(*(result.column(i).to_pylist() for i in range(len(spec.params))), strict=True)
        for key, is_ok, value in zip(rows, ok.tolist(), values.to_pylist(), strict=True):
            index.added[tuple(_hashable(v) for v in key)] = (is_ok, value)  # later entries replace earlier ones
        return index

    def store(self, spec: FunctionSpec, namespace: str, calls: Sequence[StoredCall],
              ledger: pa.Table | None = None) -> None:
        """Append finished calls, and their ledger rows, in one transaction that DuckDB commits durably."""
        if not calls:
            return
        table = self.table(spec)
        columns: dict[str, pa.Array] = {"namespace": pa.array([namespace] * len(calls), pa.string())}
        for i, param in enumerate(spec.params):
            columns["in_" + param.name] = pa.array([c.inputs[i] for c in calls], type=param.type.arrow)
        columns["ok"] = pa.array([c.ok for c in calls], pa.bool_())
        from .types import to_arrow

        columns["value"] = to_arrow([c.value for c in calls], spec.result)
        columns["error"] = pa.array([c.error for c in calls], pa.string())
        columns["latency_s"] = pa.array([c.latency_s for c in calls], pa.float64())
        batch = pa.table(columns)
        names = ", ".join(_quote(n) for n in columns)
        with self._lock:
            self.con.register("__dp_store", batch)
            if ledger is not None:
                self.con.register("__dp_ledger", ledger)
            try:
                self.con.execute("begin transaction")
                self.con.execute(f"insert into {_quote(table)} ({names}) select {names} from __dp_store")
                if ledger is not None:
                    self.con.execute(f"insert into {LEDGER_TABLE} select * from __dp_ledger")
                self.con.execute("commit")
            except BaseException:
                self.con.execute("rollback")
                raise
            finally:
                self.con.unregister("__dp_store")
                if ledger is not None:
                    self.con.unregister("__dp_ledger")

    def stats(self) -> list[tuple[str, int, int]]:
        """(function table, entries, failed entries) for every function table."""
        with self._lock:
            tables = [r[0] for r in self.con.execute(
                "select table_name from information_schema.tables where table_name like 'fn\\_%' escape '\\' "
                "order by 1").fetchall()]
            return [(t, *self.con.execute(f"select count(*), count(*) filter (where not ok) from {_quote(t)}")
                     .fetchone()) for t in tables]

    def clear(self, function: str | None = None) -> int:
        """Delete the cached results of one function (by SQL name) or of all; returns entries removed."""
        removed = 0
        for table, entries, _ in self.stats():
            if function is None or table.rsplit("_", 1)[0] == f"fn_{function.lower()}":
                with self._lock:
                    self.con.execute(f"drop table {_quote(table)}")
                self._tables.discard(table)
                removed += entries
        return removed

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value
