"""9. Exports: `export: [jsonl, parquet]` after a build, nested types kept; `dataproj export`."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
from conftest import MakeProject, ProjectDir

NESTED = """\
{{ config(materialized='table', export=['jsonl', 'parquet']) }}
select * from (values
    (1, {'label': 'cat', 'score': 0.5}, [1, 2, 3], [{'k': 'a'}]),
    (2, {'label': 'dog', 'score': 0.25}, [], [{'k': 'b'}, {'k': 'c'}])
) as t(id, info, nums, items)
"""

NESTED_ROWS = [
    {"id": 1, "info": {"label": "cat", "score": 0.5}, "nums": [1, 2, 3], "items": [{"k": "a"}]},
    {"id": 2, "info": {"label": "dog", "score": 0.25}, "nums": [], "items": [{"k": "b"}, {"k": "c"}]},
]


def _jsonl(path: str, project: ProjectDir) -> list[dict]:
    lines = project.path(path).read_text(encoding="utf-8").splitlines()
    return sorted((json.loads(line) for line in lines), key=lambda row: row["id"])


def test_configured_exports_are_written_after_the_build_with_nested_types(make_project: MakeProject) -> None:
    project = make_project({"models/labels.sql": NESTED, "models/plain.sql": "select 1 as id\n"})
    project.ok("run")
    exports = project.path("warehouse/exports")
    assert sorted(p.name for p in exports.iterdir()) == ["labels.jsonl", "labels.parquet"]
    assert _jsonl("warehouse/exports/labels.jsonl", project) == NESTED_ROWS

    table = pq.read_table(exports / "labels.parquet")
    assert pa.types.is_struct(table.schema.field("info").type)
    assert pa.types.is_list(table.schema.field("nums").type)
    assert pa.types.is_struct(table.schema.field("items").type.value_type)
    assert sorted(table.to_pylist(), key=lambda row: row["id"]) == NESTED_ROWS

    [labels] = [r for r in project.run_results()["results"] if r["name"] == "labels"]
    assert sorted(labels["exports"]) == sorted(str(exports / f"labels.{ext}") for ext in ("jsonl", "parquet"))


def test_exports_follow_the_latest_build(make_project: MakeProject) -> None:
    project = make_project({"models/counts.sql": "{{ config(export=['jsonl']) }}\nselect 1 as id\n"})
    project.ok("run")
    project.write({"models/counts.sql": "{{ config(export=['jsonl']) }}\nselect 2 as id\n"})
    project.ok("run")
    assert _jsonl("warehouse/exports/counts.jsonl", project) == [{"id": 2}]


def test_export_command_writes_selected_models_in_the_given_formats(make_project: MakeProject) -> None:
    project = make_project({
        "models/labels.sql": NESTED,
        "models/plain.sql": "{{ config(materialized='table') }}\nselect range as id from range(2)\n",
        "models/other.sql": "select 1 as id\n",
    })
    project.ok("run")
    for path in project.path("warehouse/exports").iterdir():
        path.unlink()

    result = project.ok("export", "--select", "plain", "--format", "jsonl", "parquet")
    assert sorted(p.name for p in project.path("warehouse/exports").iterdir()) == ["plain.jsonl", "plain.parquet"]
    assert "plain.jsonl" in result.out
    assert _jsonl("warehouse/exports/plain.jsonl", project) == [{"id": 0}, {"id": 1}]
    assert pq.read_table(project.path("warehouse/exports/plain.parquet")).to_pylist() == [{"id": 0}, {"id": 1}]

    # Without --format, a model's configured formats are used.
    project.ok("export", "--select", "labels")
    assert _jsonl("warehouse/exports/labels.jsonl", project) == NESTED_ROWS
    assert project.path("warehouse/exports/labels.parquet").is_file()
    assert not any(p.name.endswith(".partial") for p in project.path("warehouse/exports").iterdir())


def test_exporting_a_model_that_is_not_built_is_an_error(make_project: MakeProject) -> None:
    project = make_project({"models/built.sql": "select 1 as id\n", "models/unbuilt.sql": "select 2 as id\n"})
    project.ok("run", "--select", "built")
    result = project.cli("export", "--select", "unbuilt", "--format", "jsonl")
    assert result.code == 2
    assert "unbuilt is not built yet" in result.err
    assert "dataproj build --select unbuilt" in result.err
