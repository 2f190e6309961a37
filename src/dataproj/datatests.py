"""Data tests: SQL that returns the failing rows. Generic tests come from YAML, singular from tests/*.sql."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .nodes import Node


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def generic_test_sql(node: Node, relation: Callable[[str], str]) -> str:
    """The failing-rows query of a generic test."""
    test = node.generic_test
    assert test is not None
    model = relation(test.model)
    where = node.config.get("where")
    source = f"(select * from {model} where {where})" if where else model
    column = _quote_ident(test.column) if test.column else ""
    if test.kind == "not_null":
        return f"select * from {source} where {column} is null"
    if test.kind == "unique":
        return (f"select {column} as unique_field, count(*) as n_records from {source} "
                f"where {column} is not null group by {column} having count(*) > 1")
    if test.kind == "accepted_values":
        quote = test.args.get("quote", True)
        values = ", ".join(_literal(v) if quote else str(v) for v in test.args["values"])
        return (f"select {column} as value_field, count(*) as n_records from {source} "
                f"where {column} is not null and {column} not in ({values}) group by {column}")
    if test.kind == "relationships":
        parent = relation(test.args["to"])
        field = _quote_ident(test.args["field"])
        return (f"select child.{column} as from_field from {source} as child "
                f"where child.{column} is not null and not exists "
                f"(select 1 from {parent} as parent where parent.{field} = child.{column})")
    if test.kind == "expression":
        return f"select * from {source} where not coalesce(({test.args['expression']}), false)"
    raise ValueError(f"unknown generic test {test.kind}")


def describe(node: Node) -> str:
    test = node.generic_test
    if test is None:
        return f"singular test {node.path}"
    target = f"{test.model}.{test.column}" if test.column else test.model
    return f"{test.kind} on {target}"
