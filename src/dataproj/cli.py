"""Command-line interface: argument parsing and printing only; every command calls a plain function."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

COMMANDS = {
    "init": "scaffold a new project",
    "seed": "load seed files into the warehouse",
    "run": "build the selected models",
    "test": "run data tests",
    "build": "seed + run + test in dependency order",
    "compile": "render SQL to warehouse/target/compiled",
    "ls": "list the selected nodes in run order",
    "show": "print the first rows of a model",
    "query": "run SQL against the warehouse",
    "export": "write built models to warehouse/exports",
    "clean": "remove warehouse/target and exports",
    "cache": "inspect or clear the durable call cache",
    "vlm-server": "serve the offline backend over the OpenAI and Gemini APIs (for trying real-backend configs)",
    "report": "write the image-search summary (CSV tables and PNG plots) from the built warehouse",
    "publish": "publish the built image-search benchmark: a Hugging Face dataset (hf) or TREC files (trec)",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dataproj", description="dbt-style SQL/Arrow data projects on DuckDB")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, text in COMMANDS.items():
        cmd = sub.add_parser(name, help=text, description=text)
        if name != "init":
            cmd.add_argument("--project-dir", type=Path, default=Path("."), help="folder with project.yml")
            cmd.add_argument("--vars", default="{}", help="YAML/JSON mapping overriding project vars")
        if name in ("seed", "run", "test", "build", "compile", "ls", "export"):
            cmd.add_argument("-s", "--select", nargs="+", help="dbt selection syntax")
            cmd.add_argument("--exclude", nargs="+", help="nodes to leave out (same syntax)")
            cmd.add_argument("--state", type=Path, help="folder of the manifest that state:modified compares to")
        if name in ("seed", "run", "test", "build"):
            cmd.add_argument("--threads", type=int, help="concurrent nodes (default: project.yml threads)")
            cmd.add_argument("--full-refresh", action="store_true", help="rebuild incremental models")
            cmd.add_argument("--log-format", choices=["text", "json"], default="text")
            cmd.add_argument("--refresh-cache", nargs="*", metavar="FUNCTION",
                             help="recompute cached calls (all, or of these SQL functions)")
            cmd.add_argument("--retry-failed", action="store_true",
                             help="recompute calls that failed before (failures are replayed from the cache)")
        _add_specific(name, cmd)
    return parser


def _add_specific(name: str, cmd: argparse.ArgumentParser) -> None:
    if name == "init":
        cmd.add_argument("path", type=Path, nargs="?", default=Path("."))
    elif name == "ls":
        cmd.add_argument("--output", choices=["name", "path", "json"], default="name")
        cmd.add_argument("--resource-type", nargs="+", choices=["model", "seed", "test"])
    elif name == "show":
        cmd.add_argument("model")
        cmd.add_argument("--limit", type=int, default=10)
    elif name == "query":
        cmd.add_argument("sql")
        cmd.add_argument("--format", choices=["table", "csv", "json"], default="table")
    elif name == "export":
        cmd.add_argument("--format", nargs="+", choices=["jsonl", "parquet"], default=[])
    elif name == "cache":
        cmd.add_argument("action", choices=["stats", "clear"])
        cmd.add_argument("function", nargs="?", help="clear: only this SQL function's results")
    elif name == "vlm-server":
        cmd.add_argument("--host", default="127.0.0.1")
        cmd.add_argument("--port", type=int, default=8765)
        cmd.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    elif name == "clean":
        cmd.add_argument("--warehouse", action="store_true", help="also delete the database and its state")
    elif name == "report":
        cmd.add_argument("--out", type=Path, help="folder to write (default: <exports>/summary)")
    elif name == "publish":
        cmd.add_argument("target", choices=["hf", "trec"])
        cmd.add_argument("--repo-id", help="hf: push to this dataset repo (needs HF_TOKEN); default vars.imsearch.hf")
        cmd.add_argument("--private", action="store_true", default=None, help="hf: create the repo private")
        cmd.add_argument("--out", type=Path, help="folder to write (default: <exports>/hf_dataset or <exports>)")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.version:
        from . import __version__

        print(f"dataproj {__version__}")
        return 0
    if args.command is None:
        _parser().print_help()
        return 2
    from .errors import DataprojError

    try:
        return _dispatch(args)
    except DataprojError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:
        if type(err).__module__.split(".")[0] not in ("duckdb", "_duckdb"):
            raise
        print(f"error: {err}", file=sys.stderr)  # the database's message names the SQL at fault
        return 1
    except KeyboardInterrupt:
        print("interrupted: finished nodes are kept; tables being built were left as they were", file=sys.stderr)
        return 130


def _options(args: argparse.Namespace) -> Any:
    import yaml

    from .commands import Options
    from .errors import ConfigError

    try:
        cli_vars = yaml.safe_load(args.vars) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"--vars is not valid YAML: {err}") from None
    if not isinstance(cli_vars, dict):
        raise ConfigError("--vars must be a mapping, e.g. --vars '{edit_task: subject_add}'")
    return Options(project_dir=args.project_dir, select=getattr(args, "select", None),
                   exclude=getattr(args, "exclude", None), vars=cli_vars, threads=getattr(args, "threads", None),
                   full_refresh=getattr(args, "full_refresh", False), state_dir=getattr(args, "state", None),
                   resource_types=set(args.resource_type) if getattr(args, "resource_type", None) else None,
                   refresh_cache=_refresh(getattr(args, "refresh_cache", None)),
                   retry_failed=getattr(args, "retry_failed", False))


def _refresh(value: list[str] | None) -> bool | list[str]:
    """--refresh-cache alone means every function; with names, only those."""
    if value is None:
        return False
    return value or True


def _dispatch(args: argparse.Namespace) -> int:
    from . import commands

    if args.command == "init":
        from .scaffold import init_project

        for path in init_project(args.path):
            print(f"created {path}")
        return 0
    options = _options(args)
    if args.command in ("seed", "run", "test", "build"):
        return _execute(options, args)
    if args.command == "ls":
        return _ls(options, args.output)
    if args.command == "compile":
        session = commands.compile_project(options)
        print(f"compiled {len(session.graph.nodes)} nodes to {session.target_dir / 'compiled'}")
        return 0
    if args.command == "show":
        columns, rows = commands.show(options, args.model, args.limit)
        _print_rows(columns, rows, "table", title=args.model)
        return 0
    if args.command == "query":
        columns, rows = commands.query(options, args.sql)
        _print_rows(columns, rows, args.format)
        return 0
    if args.command == "export":
        for path in commands.export(options, args.format):
            print(f"exported {path}")
        return 0
    if args.command == "vlm-server":
        return _vlm_server(options, args)
    if args.command == "cache":
        return _cache(options, args.action, args.function)
    if args.command == "report":
        from .report.command import report

        written = report(options.project_dir, options.vars, args.out)
        print(f"wrote {len(written)} summary files to {written[0].parent if written else args.out}")
        return 0
    if args.command == "publish":
        return _publish(options, args)
    if args.command == "clean":
        for path in commands.clean(options, warehouse=args.warehouse):
            print(f"removed {path}")
        return 0
    raise AssertionError(args.command)


def _execute(options: Any, args: argparse.Namespace) -> int:
    from .commands import execute_command, exit_code
    from .display import JsonReporter, RichReporter

    reporter = JsonReporter(args.command) if args.log_format == "json" else RichReporter(args.command)
    results, note = execute_command(options, args.command, reporter)
    if note:
        print(note)
    return exit_code(results)


def _vlm_server(options: Any, args: argparse.Namespace) -> int:
    import time

    from .project import load_project
    from .vlm.serve import offline_server

    project = load_project(options.project_dir)
    server = offline_server(project.dir("prompts"), latency_s=args.latency, port=args.port, host=args.host).start()
    print(f"offline VLM server on {server.url}: OpenAI base_url {server.openai_base_url}, "
          f"Gemini base_url {server.gemini_base_url} (Ctrl-C stops it)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()


def _publish(options: Any, args: argparse.Namespace) -> int:
    from .publish.command import publish_hf, publish_trec

    if args.target == "trec":
        for written in publish_trec(options.project_dir, options.vars, args.out):
            skipped = f" ({len(written.skipped)} rows with whitespace in an id left out)" if written.skipped else ""
            print(f"wrote {written.path} ({written.lines} lines){skipped}")
        return 0
    published = publish_hf(options.project_dir, options.vars, repo_id=args.repo_id, private=args.private,
                           out_dir=args.out)
    print(f"saved {published.rows} rows to {published.out_dir} ({published.failed_rows} rows of failed judgments "
          f"and {published.missing_images} with missing images left out)")
    if published.commit_url:
        print(f"pushed to {published.repo_id}: {published.commit_url}")
    return 0


def _cache(options: Any, action: str, function: str | None) -> int:
    from .commands import cache_clear, cache_stats

    if action == "clear":
        removed = cache_clear(options, function)
        print(f"removed {removed:,} cached results" + (f" of {function}" if function else ""))
        return 0
    columns, rows = cache_stats(options)
    _print_rows(columns, rows, "table", title="call cache")
    return 0


def _ls(options: Any, output: str) -> int:
    from .commands import list_nodes, nothing_selected

    nodes = list_nodes(options)
    if not nodes:
        print(nothing_selected(options), file=sys.stderr)
        return 0
    if output == "json":
        print(json.dumps(nodes, indent=1))
    else:
        for node in nodes:
            print(node["path"] if output == "path" else node["name"])
    return 0


def _print_rows(columns: list[str], rows: list[tuple[Any, ...]], fmt: str, title: str | None = None) -> None:
    if fmt == "json":
        for row in rows:
            print(json.dumps(dict(zip(columns, row, strict=True)), default=str))
    elif fmt == "csv":
        import csv

        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    else:
        _print_table(columns, rows, title)


def _print_table(columns: list[str], rows: list[tuple[Any, ...]], title: str | None) -> None:
    """A table when it fits the terminal, otherwise one block of `column: value` lines per row."""
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    if sum(min(w, 60) + 3 for w in widths) <= console.width:
        table = Table(title=title, title_justify="left")
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in cells:
            table.add_row(*row)
        console.print(table)
    else:
        pad = max(len(c) for c in columns)
        for number, row in enumerate(cells, start=1):
            console.print(f"[bold]-- row {number} --[/]")
            for column, value in zip(columns, row, strict=True):
                console.print(f"{column:>{pad}}: {value}", markup=False)
    print(f"{len(rows)} row{'s' if len(rows) != 1 else ''}")


def _cell(value: Any) -> str:
    if isinstance(value, bytes):
        return f"<{len(value):,} bytes>"
    text = json.dumps(value, default=str) if isinstance(value, dict | list) else str(value)
    return text if len(text) <= 200 else text[:197] + "..."


if __name__ == "__main__":
    sys.exit(main())
