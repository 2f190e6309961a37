"""Loads seed files (CSV, JSON, JSONL, Parquet) and image folders into warehouse tables."""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import DataprojError, SeedError
from .nodes import Node

_READERS = {
    "csv": "read_csv(?, header = true, all_varchar = false)",
    "json": "read_json(?, format = 'auto')",
    "jsonl": "read_json(?, format = 'newline_delimited')",
    "parquet": "read_parquet(?)",
}


def seed_select(con: Any, node: Node, root: Path) -> tuple[str, list[Any]]:
    """A SELECT (and its parameters) that yields the seed's rows with its column types applied.

    The file is validated first so that a malformed row is reported with its line number.
    """
    path = root / node.path
    if node.language == "images":
        con.register(f"__dp_images_{node.name}", image_folder_table(path, node, root))
        return f'select * from "__dp_images_{node.name}"', []
    if node.language == "csv":
        _validate_csv(path, node.path)
    elif node.language == "jsonl":
        _validate_jsonl(path, node.path)
    elif node.language == "json":
        _validate_json(path, node.path)
    source = _READERS[node.language]
    types: dict[str, str] = node.config.get("column_types", {})
    if not types:
        return f"select * from {source}", [str(path)]
    _check_casts(con, node, source, str(path), types)
    replaces = ", ".join(f'cast("{c}" as {t}) as "{c}"' for c, t in types.items())
    return f"select * replace ({replaces}) from {source}", [str(path)]


def _validate_csv(path: Path, rel: str) -> None:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header:
            raise SeedError("empty CSV: no header row", path=rel, line=1)
        for row in reader:
            if row and len(row) != len(header):
                raise SeedError(f"malformed row: {len(row)} fields, the header has {len(header)}",
                                path=rel, line=reader.line_num,
                                hint="quote values that contain commas, or fix the row")


def jsonl_objects(path: Path, shown: str,
                  error: type[DataprojError] = SeedError) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; a line that is no JSON object raises `error` with its number."""
    with path.open(encoding="utf-8") as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                value = json.loads(text)
            except json.JSONDecodeError as err:
                raise error(f"malformed JSON: {err.msg} (column {err.colno})", path=shown, line=number,
                            hint="each line must be one JSON object") from None
            if not isinstance(value, dict):
                raise error("each line must be a JSON object", path=shown, line=number)
            yield number, value


def _validate_jsonl(path: Path, rel: str) -> None:
    for _ in jsonl_objects(path, rel):
        pass


def _validate_json(path: Path, rel: str) -> None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise SeedError(f"malformed JSON: {err.msg} (column {err.colno})", path=rel, line=err.lineno) from None
    if isinstance(value, dict):
        return  # one document (e.g. a rights map): a table of one row
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise SeedError("a .json seed must be an object or an array of objects", path=rel,
                        hint="use .jsonl for one object per line")


def _check_casts(con: Any, node: Node, source: str, path: str, types: dict[str, str]) -> None:
    """Name the first row whose value does not cast to the declared column type."""
    columns = {row[0] for row in con.execute(f"describe select * from {source}", [path]).fetchall()}
    for column, sql_type in types.items():
        if column not in columns:
            raise SeedError(f"column_types names {column!r}, which the file does not have", path=node.path,
                            hint="columns: " + ", ".join(sorted(columns)))
        bad = con.execute(
            f'select n, v from (select row_number() over () as n, "{column}" as v from {source}) '
            f"where v is not null and try_cast(v as {sql_type}) is null order by n limit 1", [path]).fetchone()
        if bad is not None:
            line = bad[0] + 1 if node.language == "csv" else bad[0]
            raise SeedError(f"column {column!r}: {bad[1]!r} is not a valid {sql_type}", path=node.path,
                            line=line if node.language in ("csv", "jsonl") else None,
                            hint=f"fix the value or change column_types.{column}")


def image_folder_table(folder: Path, node: Node, root: Path) -> Any:
    """One row per image file: relative path, project path, bytes and content hash."""
    import pyarrow as pa

    extensions = {e.lower() if e.startswith(".") else "." + e.lower() for e in node.config["extensions"]}
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in extensions)
    rows: dict[str, list[Any]] = {k: [] for k in
                                  ("relative_path", "path", "file_name", "extension", "size_bytes",
                                   "content_hash", "bytes")}
    for path in files:
        data = path.read_bytes()
        rows["relative_path"].append(path.relative_to(folder).as_posix())
        rows["path"].append(path.relative_to(root).as_posix())
        rows["file_name"].append(path.name)
        rows["extension"].append(path.suffix.lower().lstrip("."))
        rows["size_bytes"].append(len(data))
        rows["content_hash"].append(hashlib.sha256(data).hexdigest())
        rows["bytes"].append(data)
    schema = pa.schema([("relative_path", pa.string()), ("path", pa.string()), ("file_name", pa.string()),
                        ("extension", pa.string()), ("size_bytes", pa.int64()), ("content_hash", pa.string()),
                        ("bytes", pa.binary())])
    return pa.table(rows, schema=schema)


def seed_content_hash(node: Node, root: Path) -> str:
    """Hash of what the seed loads, so state:modified sees edited seed files."""
    path = root / node.path
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(file.relative_to(root).as_posix().encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()[:16]
