"""Turns a compiled node into a warehouse relation: view, table, incremental, seed or Python model.

Tables are written under a temporary name and swapped in inside one transaction, so a run that is
killed part-way leaves the previous table intact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .compiler import CompiledNode, relation_name
from .errors import DataprojError

NEW_SUFFIX = "__dp_new"


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def build_view(cur: Any, name: str, sql: str, existing: str | None) -> None:
    if existing == "table":
        _transaction(cur, [f"drop table main.{quote(name)}", f"create view main.{quote(name)} as\n{sql}"])
    else:
        cur.execute(f"create or replace view main.{quote(name)} as\n{sql}")


def build_table(cur: Any, name: str, sql: str, existing: str | None, params: list[Any] | None = None) -> int:
    """CREATE under a temporary name, then drop-and-rename in one transaction. A table that does not exist yet
    is created directly: one CREATE TABLE AS statement is atomic on its own."""
    if existing is None:
        return int(cur.execute(f"create table main.{quote(name)} as\n{sql}", params or []).fetchone()[0])
    staged = name + NEW_SUFFIX
    rows = cur.execute(f"create or replace table main.{quote(staged)} as\n{sql}", params or []).fetchone()[0]
    _transaction(cur, [f"drop {'view' if existing == 'view' else 'table'} main.{quote(name)}",
                       f"alter table main.{quote(staged)} rename to {quote(name)}"])
    return int(rows)


def build_incremental(cur: Any, compiled: CompiledNode, existing: str | None, full_refresh: bool) -> int:
    """Append, or delete+insert by unique_key, inside one transaction."""
    node = compiled.node
    if existing != "table" or full_refresh:
        return build_table(cur, node.name, compiled.sql, existing)
    staged = node.name + "__dp_increment"
    cur.execute(f"create or replace temp table {quote(staged)} as\n{compiled.sql}")
    try:
        _check_columns(cur, node.name, staged, node.path)
        key = node.config.get("unique_key")
        keys = [key] if isinstance(key, str) else list(key or [])
        strategy = node.config.get("incremental_strategy") or ("delete+insert" if keys else "append")
        statements = []
        if strategy == "delete+insert":
            if not keys:
                raise DataprojError("incremental_strategy delete+insert needs a unique_key", path=node.path)
            match = " and ".join(f"t.{quote(k)} is not distinct from s.{quote(k)}" for k in keys)
            statements.append(f"delete from main.{quote(node.name)} as t "
                              f"where exists (select 1 from {quote(staged)} as s where {match})")
        statements.append(f"insert into main.{quote(node.name)} by name select * from {quote(staged)}")
        _transaction(cur, statements)
        return int(cur.execute(f"select count(*) from {quote(staged)}").fetchone()[0])
    finally:
        cur.execute(f"drop table if exists {quote(staged)}")


def _check_columns(cur: Any, target: str, staged: str, path: str) -> None:
    have = {r[0] for r in cur.execute(f"describe main.{quote(target)}").fetchall()}
    new = [r[0] for r in cur.execute(f"describe {quote(staged)}").fetchall() if r[0] not in have]
    if new:
        raise DataprojError(f"incremental model has new columns {new} that the existing table lacks",
                            path=path, hint="rebuild it with --full-refresh (cached calls are not repaid)")


def build_python_model(cur: Any, compiled: CompiledNode, root: Path, existing: str | None,
                       context: Any) -> int:
    """Run `model(ctx)` from a Python model file and store what it returns."""
    node = compiled.node
    namespace: dict[str, Any] = {"__file__": str(root / node.path), "__name__": f"dataproj_model_{node.name}"}
    # dont_inherit: the model must not inherit this module's `from __future__ import annotations`
    code = compile(node.raw_code, str(root / node.path), "exec", dont_inherit=True)
    exec(code, namespace)  # noqa: S102 - project code
    result = namespace["model"](context)
    table = _to_arrow(result, node.path)
    view = f"__dp_py_{node.name}"
    cur.register(view, table)
    try:
        return build_table(cur, node.name, f"select * from {quote(view)}", existing)
    finally:
        cur.unregister(view)


def _to_arrow(result: Any, path: str) -> Any:
    import pyarrow as pa

    if isinstance(result, pa.Table):
        return result
    if hasattr(result, "to_arrow"):  # polars frames and DuckDB relations
        table = result.to_arrow()
        return table.read_all() if hasattr(table, "read_all") else table
    if hasattr(result, "arrow"):
        table = result.arrow()
        return table.read_all() if hasattr(table, "read_all") else table
    raise DataprojError(f"model() returned {type(result).__name__}", path=path,
                        hint="return a pyarrow Table, a polars DataFrame or a DuckDB relation")


def _transaction(cur: Any, statements: list[str]) -> None:
    cur.execute("begin transaction")
    try:
        for statement in statements:
            cur.execute(statement)
        cur.execute("commit")
    except BaseException:
        cur.execute("rollback")
        raise


class PythonModelContext:
    """What a Python model's `model(ctx)` receives."""

    def __init__(self, cur: Any, variables: dict[str, Any], ephemeral_sql: dict[str, str], *,
                 project_dir: Path | None = None, exports_dir: Path | None = None) -> None:
        self.con = cur
        self.vars = variables
        self.project_dir = project_dir  # the project root: relative paths in the project are relative to it
        self.exports_dir = exports_dir  # where exports go (for models that write files, e.g. legacy formats)
        self._ephemeral = ephemeral_sql

    def ref(self, name: str) -> Any:
        if name in self._ephemeral:
            return self.con.sql(self._ephemeral[name])
        return self.con.sql(f"select * from {relation_name(name)}")

    def sql(self, query: str) -> Any:
        return self.con.sql(query)

    def var(self, name: str, default: Any = None) -> Any:
        return self.vars.get(name, default)
