"""A built project for the commands that read it: its folders and its warehouse, opened read-only."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataprojError


@dataclass(frozen=True)
class BuiltProject:
    """A project whose warehouse is open read-only, with its imsearch settings (project vars + --vars)."""

    root: Path
    exports: Path
    imsearch: dict[str, Any]
    con: Any


@contextmanager
def built_project(project_dir: Path, cli_vars: dict[str, Any] | None = None) -> Iterator[BuiltProject]:
    import duckdb

    from ..compiler import deep_merge
    from ..project import load_project

    project = load_project(project_dir)
    if not project.warehouse_path.is_file():
        raise DataprojError(f"no warehouse at {project.warehouse_path}", hint="build the project first: dataproj build")
    try:
        con = duckdb.connect(str(project.warehouse_path), read_only=True)
    except duckdb.Error as err:
        raise DataprojError(f"cannot open the warehouse read-only: {err}",
                            hint="wait for the running build to finish") from None
    variables = deep_merge(project.config.vars, cli_vars or {})
    try:
        yield BuiltProject(project.root, project.dir("exports"), variables.get("imsearch") or {}, con)
    finally:
        con.close()
