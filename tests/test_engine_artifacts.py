"""10. Artifacts: warehouse/target/manifest.json, run_results.json and compiled SQL."""

from __future__ import annotations

from conftest import MakeProject

PROJECT = {
    "seeds/raw.csv": "id,v\n1,10\n2,20\n",
    "models/clean.sql": ("{{ config(materialized='table') }}\n"
                         "select id, v * {{ var('factor') }} as v from {{ ref('raw') }}\n"),
    "models/summary.sql": "select sum(v) as total from {{ ref('clean') }}\n",
    "models/schema.yml": """\
        models:
          - name: clean
            description: Cleaned rows.
            columns:
              - name: id
                description: Row id.
                tests: [unique]
        """,
}
YML = "name: arts\nvars:\n  factor: 3\n"


def test_build_writes_manifest_run_results_and_compiled_sql(make_project: MakeProject) -> None:
    project = make_project(PROJECT, project_yml=YML)
    project.ok("build")
    target = project.path("warehouse/target")

    manifest = project.manifest()
    assert manifest["metadata"]["command"] == "build"
    assert set(manifest["nodes"]) == {"seed.raw", "model.clean", "model.summary", "test.unique_clean_id"}
    clean = manifest["nodes"]["model.clean"]
    assert clean["name"] == "clean"
    assert clean["resource_type"] == "model"
    assert clean["path"] == "models/clean.sql"
    assert clean["depends_on"] == ["seed.raw"]
    assert clean["config"]["materialized"] == "table"
    assert clean["description"] == "Cleaned rows."
    assert clean["columns"] == {"id": "Row id."}
    assert len(clean["checksum"]) == 16
    assert manifest["nodes"]["test.unique_clean_id"]["depends_on"] == ["model.clean"]
    assert manifest["child_map"]["model.clean"] == ["model.summary", "test.unique_clean_id"]

    run_results = project.run_results()
    assert run_results["metadata"]["command"] == "build"
    assert run_results["args"]["select"] is None
    assert isinstance(run_results["elapsed_time"], float)
    by_name = {r["name"]: r for r in run_results["results"]}
    assert {n: (r["status"], r["rows"]) for n, r in by_name.items()} == {
        "raw": ("success", 2), "clean": ("success", 2), "summary": ("success", None),
        "unique_clean_id": ("pass", None)}
    assert by_name["clean"]["unique_id"] == "model.clean"
    assert by_name["clean"]["materialized"] == "table"
    assert by_name["clean"]["started_at"] <= by_name["clean"]["completed_at"]
    assert by_name["unique_clean_id"]["failures"] == 0

    compiled = target / "compiled" / "models"
    assert (compiled / "clean.sql").read_text().strip() == 'select id, v * 3 as v from main."raw"'
    assert (compiled / "summary.sql").read_text() == 'select sum(v) as total from main."clean"\n'
    assert (target / "compiled" / "tests" / "unique_clean_id.sql").read_text().count('main."clean"') == 1


def test_manifest_compiled_path_is_relative_to_the_project_root(make_project: MakeProject) -> None:
    project = make_project(PROJECT, project_yml=YML)
    project.ok("compile")
    node = project.manifest()["nodes"]["model.clean"]
    # Like "path", "compiled_path" is relative to the project root.
    assert node["compiled_path"] == "warehouse/target/compiled/models/clean.sql"
    assert (project.root / node["compiled_path"]).is_file()


def test_compile_renders_without_building(make_project: MakeProject) -> None:
    project = make_project(PROJECT, project_yml=YML)
    result = project.ok("compile", "--vars", "{factor: 5}")
    assert "compiled 4 nodes" in result.out
    compiled = project.path("warehouse/target/compiled/models/clean.sql")
    assert compiled.read_text().strip() == 'select id, v * 5 as v from main."raw"'
    assert project.manifest()["metadata"]["command"] == "compile"
    assert not project.path("warehouse/target/run_results.json").exists()
    assert not project.warehouse.exists() or project.relations() == {}
