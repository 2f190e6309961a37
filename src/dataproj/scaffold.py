"""`dataproj init`: a new project with one seed, two models, a Python SQL function, tests and an export."""

from __future__ import annotations

from pathlib import Path

from .errors import DataprojError

_FILES = {
    "project.yml": """name: {name}
version: "0.1.0"
warehouse: warehouse/dataproj.duckdb
threads: 4
vars:
  min_width: 0
models:
  +materialized: view
  example:
    +materialized: table
    +tags: [example]
""",
    ".gitignore": "warehouse/\n__pycache__/\n",
    "seeds/pictures.csv": "picture_id,path,width,height\n1,images/a.png,640,480\n2,images/b.png,320,240\n"
                          "3,images/c.png,300,400\n",
    "models/example/pictures_clean.sql": """select picture_id, path, width, height, width * height as pixels,
    orientation(width, height) as orientation  -- a Python function from udfs/pictures.py
from {{ ref('pictures') }}
where width > {{ var('min_width') }}
""",
    "models/example/picture_sizes.sql": """{{ config(export=['jsonl', 'parquet']) }}
select width > 400 as is_large, count(*) as n_pictures, sum(pixels) as total_pixels
from {{ ref('pictures_clean') }}
group by all
""",
    "models/example/schema.yml": """version: 2
models:
  - name: pictures_clean
    description: Pictures with their pixel count.
    columns:
      - name: picture_id
        description: The picture's id from the seed.
        tests: [unique, not_null]
      - name: pixels
        tests:
          - expression: "pixels > 0"
      - name: orientation
        tests:
          - accepted_values: {values: [landscape, portrait, square]}
""",
    "macros/.gitkeep": "",
    "tests/.gitkeep": "",
    "udfs/pictures.py": '''"""SQL functions in Python: each @udf here can be called from models and `dataproj query`."""

from dataproj import udf


@udf(cached=True)
def orientation(width: int, height: int) -> str:
    """landscape, portrait or square. cached=True keeps each answer in warehouse/cache/, so a rerun (or the
    rerun after a crash) never computes an input twice: what a model or API call costs is paid once."""
    if width == height:
        return "square"
    return "landscape" if width > height else "portrait"
''',
    "prompts/.gitkeep": "",
}


def init_project(path: Path, name: str | None = None) -> list[Path]:
    """Write the scaffold into `path`; refuses to overwrite an existing project."""
    if (path / "project.yml").exists():
        raise DataprojError("a project already exists here", path=path / "project.yml",
                            hint="choose an empty folder: dataproj init NEW_FOLDER")
    written = []
    for rel, text in _FILES.items():
        target = path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text.format(name=name or path.resolve().name) if rel == "project.yml" else text)
        written.append(target)
    return written
