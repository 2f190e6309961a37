"""Shared helpers for the engine tests: a project written into tmp_path, the CLI run in-process,
and the warehouse opened read-only (and closed again) to check what a command left behind."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest

from dataproj.cli import main

REPO_ROOT = Path(__file__).resolve().parents[1]

DEFAULT_PROJECT_YML = """\
name: demo
version: "1.0.0"
threads: 4
"""


@dataclass
class CliResult:
    """What one `dataproj` invocation returned and printed."""

    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]


class ProjectDir:
    """A project folder under tmp_path, with helpers to change files, run the CLI and read the warehouse."""

    def __init__(self, root: Path) -> None:
        self.root = root

    # ---- files -----------------------------------------------------------------------------
    def write(self, files: dict[str, str | bytes]) -> None:
        for rel, content in files.items():
            path = self.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(textwrap.dedent(content), encoding="utf-8")

    def remove(self, rel: str) -> None:
        (self.root / rel).unlink()

    def path(self, rel: str) -> Path:
        return self.root / rel

    def read_json(self, rel: str) -> Any:
        return json.loads((self.root / rel).read_text(encoding="utf-8"))

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse" / "dataproj.duckdb"

    # ---- CLI -------------------------------------------------------------------------------
    def cli(self, *args: str) -> CliResult:
        """Run `dataproj ARGS --project-dir ROOT` in this process and capture its output."""
        argv = list(args)
        if argv and argv[0] != "init" and "--project-dir" not in argv:
            argv += ["--project-dir", str(self.root)]
        return run_main(argv)

    def ok(self, *args: str) -> CliResult:
        """Run the CLI and fail the test with its output unless it exits 0."""
        result = self.cli(*args)
        assert result.code == 0, f"dataproj {' '.join(args)} exited {result.code}\n{result.out}\n{result.err}"
        return result

    def run_results(self) -> dict[str, Any]:
        return self.read_json("warehouse/target/run_results.json")

    def statuses(self) -> dict[str, str]:
        """name -> status of the last run_results.json."""
        return {r["name"]: r["status"] for r in self.run_results()["results"]}

    def manifest(self) -> dict[str, Any]:
        return self.read_json("warehouse/target/manifest.json")

    # ---- warehouse -------------------------------------------------------------------------
    @contextlib.contextmanager
    def db(self, path: Path | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """The warehouse opened read-only; always closed afterwards so the next command can open it."""
        con = duckdb.connect(str(path or self.warehouse), read_only=True)
        try:
            yield con
        finally:
            con.close()

    def rows(self, sql: str, path: Path | None = None) -> list[tuple[Any, ...]]:
        with self.db(path) as con:
            return con.execute(sql).fetchall()

    def relations(self) -> dict[str, str]:
        """The project's relations in the main schema: name -> 'BASE TABLE' | 'VIEW'.

        The engine's own bookkeeping tables (named dataproj_*, e.g. the call ledger) are left out;
        a warehouse that was never created has none.
        """
        if not self.warehouse.exists():
            return {}
        return dict(self.rows("select table_name, table_type from information_schema.tables "
                              "where table_schema = 'main' and table_name not like 'dataproj\\_%' escape '\\' "
                              "order by table_name"))


def run_main(argv: list[str]) -> CliResult:
    """`dataproj.cli.main(argv)` with stdout and stderr captured."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse errors
            code = exc.code if isinstance(exc.code, int) else 1
    return CliResult(code=code, out=out.getvalue(), err=err.getvalue())


def subprocess_env() -> dict[str, str]:
    """Environment for `python -m dataproj` in a child process (the package importable from src/)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT / "src"), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_module(args: list[str], cwd: Path, **kwargs: Any) -> subprocess.Popen[str]:
    """Start `python -m dataproj ARGS` in a child process."""
    return subprocess.Popen([sys.executable, "-m", "dataproj", *args], cwd=cwd, env=subprocess_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


MakeProject = Callable[..., ProjectDir]


@pytest.fixture
def make_project(tmp_path: Path) -> MakeProject:
    """make_project({relative_path: text}, project_yml=None) -> ProjectDir.

    Texts are dedented; bytes are written as they are. project.yml defaults to DEFAULT_PROJECT_YML
    unless the mapping has its own.
    """
    counter = iter(range(1000))

    def make(files: dict[str, str | bytes] | None = None, *, project_yml: str | None = None) -> ProjectDir:
        root = tmp_path / f"project{next(counter)}"
        root.mkdir()
        project = ProjectDir(root)
        files = dict(files or {})
        if "project.yml" not in files:
            files["project.yml"] = project_yml if project_yml is not None else DEFAULT_PROJECT_YML
        project.write(files)
        return project

    return make
