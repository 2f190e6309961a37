"""SQL functions registered on every warehouse cursor (the UDF runtime fills this in)."""

from __future__ import annotations

from typing import Any

from .project import Project


def cursor_setup(project: Project) -> list[Any]:
    """Callables that register the project's functions on a new DuckDB cursor."""
    return []
