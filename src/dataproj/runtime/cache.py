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

from .spec import FunctionSpec

MISS = -1
LEDGER_TABLE = "dataproj_calls"


def rest_none() -> np.ndarray:
    return np.zeros(0, dtype=np.intp)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass
class StoredCall:
    inputs: tuple[Any, ...]  # argument values, image arguments as content hashes
    ok: bool
    value: Any  # plain Python value of the result type (None for a failed scalar)
    error: str | None
    latency_s: float


class NamespaceIndex:
    """The cached results of one function namespace.

    Base entries are vectorised: keys sorted and bucketed by their top bits, so a batch of lookups is a few
    numpy gathers (a binary search over millions of random 64-bit keys is bound by memory latency). Entries
    computed since are in `added`, and are folded into the base once they grow past a quarter of it.
    """

    def __init__(self, keys: np.ndarray, values: pa.Array, ok: np.ndarray, result_type: pa.DataType) -> None:
        self.result_type = result_type
        self.added: dict[Any, tuple[bool, Any]] = {}  # key -> (ok, plain value)
        self.fresh: set[Any] = set()  # keys computed by this process (kept even under --refresh-cache)
        self.lock = threading.Lock()
        self._build(keys.astype(np.uint64), values, ok.astype(bool))

    def _build(self, keys: np.ndarray, values: pa.Array, ok: np.ndarray) -> None:
        order = np.argsort(keys, kind="stable")
        self.sorted_keys = keys[order]
        self.order = order
        self.values = values
        self.ok = ok
        # About four buckets per key: most buckets hold at most one key, so one probe finds nearly every key.
        bits = int(min(26, max(8, np.ceil(np.log2(max(len(keys), 1))) + 2)))
        self.shift = np.uint64(64 - bits)
        counts = np.bincount((self.sorted_keys >> self.shift).astype(np.intp), minlength=1 << bits)
        self.starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32 if len(keys) < 2**31 else np.int64)
        self.widest = int(counts.max()) if len(keys) else 0
        self.last = max(len(keys) - 1, 0)

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Base positions for `keys` (MISS where absent): a first probe for all, a few more for crowded buckets."""
        if self.widest == 0:
            return np.full(len(keys), MISS, dtype=np.int64)
        bucket = (keys >> self.shift).astype(np.intp)
        low, high = self.starts[bucket], self.starts[bucket + 1]
        slot = np.minimum(low, self.last)
        hit = (self.sorted_keys[slot] == keys) & (high > low)
        found = np.where(hit, self.order[slot], MISS)
        rest = np.nonzero(~hit & (high - low > 1))[0] if self.widest > 1 else rest_none()
        offset = 1
        while rest.size:
            slot = low[rest] + offset
            inside = slot < high[rest]
            rest, slot = rest[inside], slot[inside]
            match = self.sorted_keys[slot] == keys[rest]
            found[rest[match]] = self.order[slot[match]]
            rest, offset = rest[~match], offset + 1
        return found

    def add(self, key: Any, ok: bool, value: Any) -> None:
        with self.lock:
            self.added[key] = (ok, value)
            self.fresh.add(key)

    def get(self, key: Any, *, fresh_only: bool = False) -> tuple[bool, Any] | None:
        """An entry added since loading (fresh_only: computed by this process)."""
        if fresh_only and key not in self.fresh:
            return None
        return self.added.get(key)

    def fold_added(self, to_arrow: Any) -> None:
        """Move hashed entries from `added` into the vectorised base once they are a quarter of it."""
        with self.lock:
            if len(self.added) < max(4096, len(self.sorted_keys) // 4):
                return
            new_keys = np.fromiter(self.added, dtype=np.uint64, count=len(self.added))
            entries = list(self.added.values())
            base_keys = self.sorted_keys[np.argsort(self.order)]  # back in value order
            keep = ~np.isin(base_keys, new_keys)  # a recomputed entry replaces the stored one
            keys = np.concatenate([base_keys[keep], new_keys])
            values = pa.concat_arrays([self.values.filter(pa.array(keep)),
                                       to_arrow([v for _, v in entries]).cast(self.values.type)])
            ok = np.concatenate([self.ok[keep], np.array([o for o, _ in entries], dtype=bool)])
            self._build(keys, values, ok)
            self.added.clear()


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
        """The latest entry per input of a namespace. `hashed`: key by DuckDB hash() of the typed inputs."""
        table = _quote(self.table(spec))
        inputs = ", ".join(_quote("in_" + p.name) for p in spec.params)
        query = (f"select {'hash(' + inputs + ')' if hashed else inputs}, ok, value from {table} "
                 f"where namespace = ? qualify row_number() over (partition by {inputs} "
                 f"order by created_at desc, rowid desc) = 1")
        with self._lock:
            result = self.con.sql(query, params=[namespace]).to_arrow_table()
        keys = (result.column(0).to_numpy().astype(np.uint64) if hashed
                else np.arange(result.num_rows, dtype=np.uint64))
        values = result.column("value").combine_chunks()
        ok = result.column("ok").to_numpy(zero_copy_only=False).astype(bool)
        index = NamespaceIndex(keys, values, ok, spec.result.arrow)
        if not hashed:  # tuple keys: everything lives in `added`
            rows = zip(*(result.column(i).to_pylist() for i in range(len(spec.params))), strict=True)
            for key, is_ok, value in zip(rows, ok.tolist(), values.to_pylist(), strict=True):
                index.added[tuple(_hashable(v) for v in key)] = (is_ok, value)
            index.sorted_keys = np.zeros(0, dtype=np.uint64)
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
