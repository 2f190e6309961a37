"""The durable call cache: every finished call is stored the moment it completes, in a DuckDB file of its own.

One append-only table per function signature holds (namespace, typed inputs, ok, value, error). A namespace's
entries are loaded once per process into an index; lookups of a whole Arrow batch are vectorised: the SQL side
passes DuckDB's `hash()` of the arguments, and the index is a sorted numpy array of the same hashes.
Image arguments are stored as their content hash, so moving a file does not repay its calls.

A finished call is first appended to the process's journal (durable at once, see journal.py) and copied into
DuckDB with its ledger rows in one transaction per batch (`flush`); journals of killed processes are replayed
when the cache is next opened. Each copied journal file is recorded in the same transaction, so a kill between
the commit and the file's deletion does not copy it twice.
"""

from __future__ import annotations

import threading
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from .index import MISS, NamespaceIndex
from .journal import Entry, Insert, Journal, Segment, orphans
from .spec import FunctionSpec

__all__ = ["MISS", "CallCache", "NamespaceIndex", "StoredCall"]
LEDGER_TABLE = "dataproj_calls"
APPLIED_TABLE = "dataproj_journal_applied"  # journal files already copied into this database
# (function table, namespace) pairs where a call was made again for a stored input, so an input can have more
# than one entry: only those namespaces pay for finding the latest entry of each input when they are loaded.
SUPERSEDED_TABLE = "dataproj_superseded"


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
    """A DuckDB database of call results fed by a journal; thread-safe (one connection, one lock)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._con: Any = None
        self._lock = threading.RLock()
        self._tables: set[str] = set()
        self._schemas: dict[str, pa.Schema] = {}
        self._superseded: set[tuple[str, str]] = set()  # marked in SUPERSEDED_TABLE by this process
        self.journal_dir = path.parent / f"{path.stem}-journal"
        self.journal = Journal(self.journal_dir)

    @property
    def con(self) -> Any:
        if self._con is None:
            from ..warehouse import open_duckdb

            with self._lock:
                if self._con is None:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    con = open_duckdb(self.path)
                    self._replay(con)
                    self._con = con
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
        self.flush()
        table = _quote(self.table(spec))
        inputs = ", ".join(_quote("in_" + p.name) for p in spec.params)
        # No window over the whole table to find the latest entry per input: the index does that, and only
        # where an input may have several entries (SUPERSEDED_TABLE).
        query = (f"select {'hash(' + inputs + ')' if hashed else inputs}, ok, value, rowid from {table} "
                 "where namespace = ?")
        with self._lock:
            result = self.con.sql(query, params=[namespace]).to_arrow_table()
            unique = not self.con.execute(f"select count(*) from {SUPERSEDED_TABLE} where fn_table = ? and "
                                          "namespace = ?", [self.table(spec), namespace]).fetchall()[0][0]
        rowid = result.column("rowid").to_numpy()
        if np.any(rowid[1:] < rowid[:-1]):  # DuckDB returns insertion order unless told not to keep it
            result = result.take(pa.array(np.argsort(rowid, kind="stable")))
        values = result.column("value").combine_chunks()
        ok = result.column("ok").to_numpy(zero_copy_only=False).astype(bool)
        if hashed:
            return NamespaceIndex(result.column(0).to_numpy(), values, ok, spec.result.arrow,
                                  unique=unique)
        index = NamespaceIndex(np.zeros(0, np.uint64), values.slice(0, 0), ok[:0], spec.result.arrow)
        rows = zip(*(result.column(i).to_pylist() for i in range(len(spec.params))), strict=True)
        for key, is_ok, value in zip(rows, ok.tolist(), values.to_pylist(), strict=True):
            index.added[tuple(_hashable(v) for v in key)] = (is_ok, value)  # later entries replace earlier ones
        return index

    def store(self, spec: FunctionSpec, namespace: str, calls: Sequence[StoredCall],
              ledger: Insert | None = None, *, superseding: bool = False) -> None:
        """Record finished calls, and their ledger rows, durably at once (in the journal, until `flush`).
        `superseding`: the calls may replace stored entries of the same inputs (recomputed, retried)."""
        if not calls:
            if ledger is not None:  # calls whose results are not kept (store_if) are still paid for
                self.journal.append((ledger,))
            return
        table = self.table(spec)
        columns = ("namespace", *("in_" + p.name for p in spec.params), "ok", "value", "error", "latency_s")
        rows = [(namespace, *c.inputs, c.ok, c.value, c.error, c.latency_s) for c in calls]
        entry: Entry = (Insert(table, columns, rows),)
        if superseding and (table, namespace) not in self._superseded:
            entry += (Insert(SUPERSEDED_TABLE, ("fn_table", "namespace"), [(table, namespace)]),)
            self._superseded.add((table, namespace))
        self.journal.append(entry if ledger is None else (*entry, ledger))

    def flush(self) -> None:
        """Copy the journal's entries into DuckDB in one transaction, then delete its file."""
        segment = self.journal.take()
        if segment is None:
            return
        try:
            self._commit(segment)
        except BaseException:
            segment.release(delete=False)  # the next open replays it
            raise
        segment.release(delete=True)

    def _replay(self, con: Any) -> None:
        """Copy journals left by killed processes (once each), then forget the record of deleted ones."""
        con.execute(f"create table if not exists {APPLIED_TABLE} (file varchar, applied_at timestamp "
                    "default current_timestamp)")
        con.execute(f"create table if not exists {SUPERSEDED_TABLE} (fn_table varchar, namespace varchar)")
        applied = {row[0] for row in con.execute(f"select file from {APPLIED_TABLE}").fetchall()}
        for segment in orphans(self.journal_dir):
            try:
                if segment.path.name not in applied:
                    self._commit(segment, con)
                segment.release(delete=True)
            except Exception as err:  # keep it aside rather than fail every later run on it
                segment.path.rename(segment.path.with_suffix(".unreadable"))
                segment.release(delete=False)
                warnings.warn(f"call cache journal {segment.path.name} could not be replayed ({err}); kept as "
                              f"{segment.path.with_suffix('.unreadable')}", stacklevel=2)
        present = {p.name for p in self.journal_dir.glob("*.journal")} if self.journal_dir.is_dir() else set()
        gone = sorted(applied - present)
        if gone:
            con.execute(f"delete from {APPLIED_TABLE} where file in (select unnest(?::varchar[]))", [gone])

    def _commit(self, segment: Segment, con: Any = None) -> None:
        """All of a journal file's rows, one insert per table, and the file's name, in one transaction."""
        grouped: dict[tuple[str, tuple[str, ...]], list[tuple[Any, ...]]] = defaultdict(list)
        for entry in segment.entries:
            for insert in entry:
                grouped[(insert.table, insert.columns)] += insert.rows
        with self._lock:
            con = con or self.con
            con.execute("begin transaction")
            try:
                for (table, columns), rows in grouped.items():
                    self._insert(con, table, columns, rows)
                con.execute(f"insert into {APPLIED_TABLE} (file) values (?)", [segment.path.name])
                con.execute("commit")
            except BaseException:
                con.execute("rollback")
                raise

    def _insert(self, con: Any, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        schema = self._schemas.get(table)
        if schema is None:
            schema = self._schemas[table] = con.sql(f"select * from {_quote(table)} limit 0").to_arrow_table().schema
        batch = pa.table({name: pa.array([row[i] for row in rows], type=schema.field(name).type)
                          for i, name in enumerate(columns)})
        names = ", ".join(_quote(n) for n in columns)
        con.register("__dp_rows", batch)
        try:
            con.execute(f"insert into {_quote(table)} ({names}) select {names} from __dp_rows")
        finally:
            con.unregister("__dp_rows")

    def stats(self) -> list[tuple[str, int, int]]:
        """(function table, entries, failed entries) for every function table."""
        self.flush()
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
                    self.con.execute(f"delete from {SUPERSEDED_TABLE} where fn_table = ?", [table])
                self._tables.discard(table)
                self._schemas.pop(table, None)
                removed += entries
        return removed

    def close(self) -> None:
        try:
            self.flush()
        finally:
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
