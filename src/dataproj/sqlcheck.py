"""sqlglot checks of rendered SQL: syntax errors with line and column, and tables used without ref()."""

from __future__ import annotations

import re

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from .errors import CompileError
from .nodes import Node

_DUCKDB = sqlglot.Dialect.get_or_raise("duckdb")


def check_model_sql(node: Node, sql: str, known_names: set[str]) -> None:
    """Raise CompileError when `sql` is not one valid statement or names a model or seed without ref()."""
    if not sql.strip():
        raise CompileError("the model renders to empty SQL", path=node.path,
                           hint="a model is one SELECT statement")
    try:
        statements = [s for s in _DUCKDB.parse(sql) if s is not None]
    except ParseError as err:
        if _duckdb_accepts(sql):
            return  # DuckDB syntax sqlglot does not know yet: DuckDB is the authority
        raise _syntax_error(node, sql, err) from None
    if len(statements) != 1:
        raise CompileError(f"the model renders to {len(statements)} statements", path=node.path,
                           hint="a model is one SELECT statement; move setup into macros or separate models")
    _check_bare_names(node, statements[0], known_names)


def _duckdb_accepts(sql: str) -> bool:
    import duckdb

    try:
        duckdb.extract_statements(sql)
    except duckdb.Error:
        return False
    return True


def _syntax_error(node: Node, sql: str, err: ParseError) -> CompileError:
    detail = err.errors[0] if err.errors else {}
    line, col = detail.get("line") or 1, detail.get("col") or 1
    lines = sql.splitlines() or [""]
    shown = lines[min(line, len(lines)) - 1]
    caret = " " * max(col - 1, 0) + "^"
    reason = str(detail.get("description") or err).splitlines()[0]
    return CompileError(f"SQL syntax error at line {line}, column {col} of the rendered SQL: {reason}\n"
                        f"    {shown}\n    {caret}", path=node.path,
                        hint="see the rendered SQL under warehouse/target/compiled/ (dataproj compile)")


def _check_bare_names(node: Node, statement: exp.Expression, known_names: set[str]) -> None:
    tables: list[exp.Table] = []
    ctes: set[str] = set()
    for item in statement.walk():  # one walk for both: this runs for every model on every parse
        if isinstance(item, exp.Table):
            tables.append(item)
        elif isinstance(item, exp.CTE):
            ctes.add(item.alias_or_name)
    for table in tables:
        name = table.name
        if table.db or not name or name in ctes or name not in known_names:
            continue
        raise CompileError(f"{name!r} is a model or seed used without ref()", path=node.path,
                           line=_source_line(node.raw_code, name),
                           hint=f"write {{{{ ref('{name}') }}}} so the dependency is known and built first")


def _source_line(source: str, name: str) -> int | None:
    pattern = re.compile(rf"(?<![\w'\"]){re.escape(name)}(?![\w'\"])")
    for number, text in enumerate(source.splitlines(), start=1):
        if pattern.search(text) and "ref(" not in text:
            return number
    return None
