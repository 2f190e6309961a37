"""Helpers shared by the tests/test_runtime_*.py files (the runtime's behaviour tests).

UDFs count their real calls by appending a line to `<project>/calls/<name>.log`; the tests read those files
and the call ledger (`dataproj_calls` in the warehouse) and the cache database directly, opened read-only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import duckdb
from conftest import ProjectDir
from PIL import Image

# Put at the top of a udfs/*.py: `log("name", value, ...)` appends one tab-separated line per real call.
UDF_PRELUDE = '''\
import os
from pathlib import Path

_CALLS = Path(__file__).resolve().parent.parent / "calls"


def log(name, *values):
    _CALLS.mkdir(exist_ok=True)
    line = "\\t".join(str(v) for v in values) + "\\n"
    fd = os.open(_CALLS / (name + ".log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
'''

LEDGER_COLUMNS = ("function, node, backend, model, status, latency_s, attempts, rows, input_tokens, "
                  "cached_input_tokens, output_tokens, cost_usd, error")


def udf_module(body: str) -> str:
    """A udfs/*.py source: the call-logging prelude, then `body` (dedented by the caller's project.write)."""
    import textwrap

    return UDF_PRELUDE + "\n" + textwrap.dedent(body)


def calls(project: ProjectDir, name: str) -> list[list[str]]:
    """The lines a UDF logged with log(name, ...), each split into its values."""
    path = project.path(f"calls/{name}.log")
    if not path.exists():
        return []
    return [line.split("\t") for line in path.read_text().splitlines()]


def call_count(project: ProjectDir, name: str) -> int:
    return len(calls(project, name))


def cache_db(project: ProjectDir) -> Path:
    return project.path("warehouse/cache/calls.duckdb")


def cache_rows(project: ProjectDir, function: str) -> list[dict[str, Any]]:
    """Every stored call of `function` (all namespaces), straight from the cache database."""
    if not cache_db(project).exists():
        return []
    with duckdb.connect(str(cache_db(project)), read_only=True) as con:
        tables = [r[0] for r in con.execute(
            "select table_name from information_schema.tables where table_name like ?",
            [f"fn_{function.lower()}_%"]).fetchall()]
        rows: list[dict[str, Any]] = []
        for table in tables:
            relation = con.sql(f'select * exclude (created_at) from "{table}"')
            rows += [dict(zip(relation.columns, row, strict=True)) for row in relation.fetchall()]
        return rows


def ledger(project: ProjectDir, where: str = "true") -> list[dict[str, Any]]:
    """Rows of the warehouse table dataproj_calls (called_at left out)."""
    with project.db() as con:
        relation = con.sql(f"select {LEDGER_COLUMNS} from dataproj_calls where {where} order by called_at")
        return [dict(zip(relation.columns, row, strict=True)) for row in relation.fetchall()]


def node_result(project: ProjectDir, name: str) -> dict[str, Any]:
    """The entry of node `name` in the last run_results.json."""
    return next(r for r in project.run_results()["results"] if r["name"] == name)


def write_png(path: Path, size: tuple[int, int] = (8, 6)) -> Path:
    """A small PNG of random pixels (so two images never share a content hash)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    Image.frombytes("RGB", size, os.urandom(width * height * 3)).save(path, format="PNG")
    return path
