"""The DuckDB warehouse: opening it (with a clear message when another process holds it), one cursor
per worker thread with the project's functions registered, and closing everything explicitly."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import WarehouseError

CursorSetup = Callable[[Any], None]


class Warehouse:
    def __init__(self, path: Path, *, read_only: bool = False,
                 cursor_setup: list[CursorSetup] | None = None) -> None:
        self.path = path
        self.runtime: Any = None  # the function runtime registered on its cursors, if any
        self.cursor_setup = list(cursor_setup or [])
        if not read_only:
            path.parent.mkdir(parents=True, exist_ok=True)
        self.con = open_duckdb(path, read_only=read_only)
        self._cursors: list[Any] = []
        self._local = threading.local()
        self._lock = threading.Lock()
        for setup in self.cursor_setup:
            setup(self.con)

    def cursor(self) -> Any:
        """This thread's own cursor (DuckDB connections are not shared between threads)."""
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            cursor = self.con.cursor()
            for setup in self.cursor_setup:
                setup(cursor)
            self._local.cursor = cursor
            with self._lock:
                self._cursors.append(cursor)
        return cursor

    def relations(self) -> dict[str, str]:
        """Existing tables and views in the main schema: name -> 'table' | 'view'."""
        rows = self.con.execute(
            "select table_name, table_type from information_schema.tables where table_schema = 'main'"
        ).fetchall()
        return {name: ("view" if kind == "VIEW" else "table") for name, kind in rows}

    def close(self) -> None:
        with self._lock:
            for cursor in self._cursors:
                cursor.close()
            self._cursors.clear()
        self.con.close()

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_duckdb(path: Path, *, read_only: bool = False) -> Any:
    """Connect to a DuckDB file; a lock held by another process becomes a WarehouseError saying who and what to do."""
    import duckdb

    try:
        return duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as err:
        raise _lock_error(path, err) from None


def _lock_error(path: Path, err: Exception) -> WarehouseError:
    text = str(err)
    if "lock" not in text.lower():
        return WarehouseError(f"cannot open the database: {text}", path=path)
    holder = re.search(r"held in (.+?) \(PID (\d+)\)", text)
    who = f"{holder.group(1)} (PID {holder.group(2)})" if holder else "another process"
    return WarehouseError(f"the database is locked by {who}", path=path,
                          hint="wait for that process to finish or stop it (another `dataproj run`, a DuckDB "
                          "shell or a notebook holding the file), or set `warehouse:` in project.yml to another file")
