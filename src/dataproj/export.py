"""Exports of built relations, streamed by DuckDB: JSONL (nested types as JSON) and Parquet."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .materialize import quote

FORMATS = {"jsonl": "(format json)", "parquet": "(format parquet, compression zstd)"}


def export_relation(cur: Any, name: str, fmt: str, exports_dir: Path, file_stem: str | None = None) -> Path:
    """Write main.<name> to exports_dir/<stem>.<fmt>; written aside and renamed, so readers never see half."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    target = exports_dir / f"{file_stem or name}.{fmt}"
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    path_literal = "'" + str(partial).replace("'", "''") + "'"
    cur.execute(f"copy (select * from main.{quote(name)}) to {path_literal} {FORMATS[fmt]}")
    os.replace(partial, target)
    return target
