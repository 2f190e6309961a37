"""The image_referring_expression inputs that are folders: the images of image_dir and the KITTI label files
of kitti_label_dir (read by DuckDB's CSV reader, one row per label line)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..errors import DataprojError
from .paths import project_relative

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# type truncated occluded alpha x1 y1 x2 y2 h w l x y z rotation_y: the 15 fields of a KITTI label line.
KITTI_COLUMNS = {"type": "VARCHAR", "truncated": "DOUBLE", "occluded": "INTEGER", "alpha": "DOUBLE",
                 "x1": "DOUBLE", "y1": "DOUBLE", "x2": "DOUBLE", "y2": "DOUBLE", "h": "DOUBLE", "w": "DOUBLE",
                 "l": "DOUBLE", "x": "DOUBLE", "y": "DOUBLE", "z": "DOUBLE", "rotation_y": "DOUBLE"}
KITTI_HINT = ("a KITTI label line has 15 space-separated fields: "
              "type truncated occluded alpha x1 y1 x2 y2 h w l x y z rotation_y")
IMAGES = pa.schema([("file_no", pa.int32()), ("image_id", pa.string()), ("image_path", pa.string())])


def image_files(root: Path, folder: Path, shown: str) -> pa.Table:
    """One row per image under `folder` (recursively, sorted): image_id is the file stem, which must be unique
    because KITTI label files are matched to images by it."""
    if not folder.is_dir():
        raise DataprojError("image folder not found", path=shown,
                            hint="set vars.grounding.image_referring_expression.image_dir to a folder of images")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    seen: dict[str, Path] = {}
    for path in files:
        if path.stem in seen:
            raise DataprojError(f"two images share the stem {path.stem!r}: {seen[path.stem]} and {path}", path=shown,
                                hint="image ids are file stems (they name the KITTI label files); rename one")
        seen[path.stem] = path
    rows = [{"file_no": n, "image_id": p.stem, "image_path": project_relative(root, p)}
            for n, p in enumerate(files, start=1)]
    return pa.Table.from_pylist(rows, schema=IMAGES)


def kitti_labels(con: Any, folder: Path, shown: str) -> pa.Table:
    """Every line of `folder`/*.txt with its file's stem as image_id and its position in the file (label_no)."""
    if not folder.is_dir():
        raise DataprojError("KITTI label folder not found", path=shown,
                            hint="set vars.grounding.image_referring_expression.kitti_label_dir")
    columns = ", ".join(f"'{name}': '{kind}'" for name, kind in KITTI_COLUMNS.items())
    pattern = _literal(str(folder / "*.txt"))
    empty = not any(folder.glob("*.txt"))
    scan = (f"select *, row_number() over () as scan_no from read_csv({pattern}, delim = ' ', header = false, "
            f"auto_detect = false, columns = {{{columns}}}, filename = true)")
    if empty:
        scan = f"select {', '.join(f'null::{k} as {n}' for n, k in KITTI_COLUMNS.items())}, " \
               "null::varchar as filename, 0::bigint as scan_no where false"
    query = f"""
        select
            regexp_extract(filename, '([^/\\\\]+?)(\\.[^./\\\\]*)?$', 1) as image_id,
            row_number() over (partition by filename order by scan_no)::integer as label_no,
            * exclude (scan_no)
        from ({scan})
        order by filename, label_no"""
    try:
        table = con.sql(query).arrow()
    except Exception as err:  # DuckDB's CSV errors name the file and the line: keep those, add what to do
        raise _kitti_error(err, shown) from None
    return table.read_all() if hasattr(table, "read_all") else table


def _kitti_error(err: Exception, shown: str) -> DataprojError:
    text = str(err)
    line = re.search(r"CSV Error on Line: (\d+)", text)
    file = re.search(r"file = (\S+)", text)
    original = re.search(r"Original Line: (.*)", text)
    first = text.splitlines()[0] if text else type(err).__name__
    detail = f"malformed label line {original.group(1)!r}" if original else first
    return DataprojError(detail, path=file.group(1) if file else shown, line=int(line.group(1)) if line else None,
                         hint=KITTI_HINT)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
