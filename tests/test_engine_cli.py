"""11. CLI: init, seed, run, test, build, compile, ls, show, query, export, clean; --log-format json."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import MakeProject, ProjectDir, run_main

PROJECT = {
    "seeds/people.csv": "id,name\n1,Ann\n2,Bob\n3,Cy\n",
    "models/people_named.sql": ("{{ config(materialized='table') }}\n"
                                "select id, upper(name) as name from {{ ref('people') }}\n"),
    "models/people_eph.sql": "{{ config(materialized='ephemeral') }}\nselect id * 100 as id from {{ ref('people') }}\n",
    "models/schema.yml": "models:\n  - name: people_named\n    columns:\n      - name: id\n        tests: [unique]\n",
}


@pytest.fixture
def built(make_project: MakeProject) -> ProjectDir:
    project = make_project(PROJECT)
    project.ok("build")
    return project


def test_init_scaffolds_a_project_that_builds(tmp_path: Path) -> None:
    target = tmp_path / "fresh"
    result = run_main(["init", str(target)])
    assert result.code == 0, result.err
    assert (target / "project.yml").is_file()
    assert "created" in result.out
    project = ProjectDir(target)
    project.ok("build")
    assert project.statuses() and set(project.statuses().values()) <= {"success", "pass"}
    assert any(project.path("warehouse/exports").iterdir())
    # its Python SQL function, cached: the second build makes no call
    assert project.rows("select orientation from pictures_clean order by picture_id") == [
        ("landscape",), ("landscape",), ("portrait",)]
    assert "0 calls, 3 cache hits" in project.ok("build").out

    again = run_main(["init", str(target)])
    assert again.code == 2
    assert "a project already exists here" in again.err


def test_show_prints_the_first_rows_of_a_model(built: ProjectDir) -> None:
    result = built.ok("show", "people_named", "--limit", "2")
    assert "ANN" in result.out and "BOB" in result.out and "CY" not in result.out
    assert result.out.rstrip().endswith("2 rows")
    ephemeral = built.ok("show", "people_eph", "--limit", "1")
    assert "100" in ephemeral.out and "1 row" in ephemeral.out
    missing = built.cli("show", "nobody")
    assert missing.code == 2
    assert "no model or seed named 'nobody'" in missing.err


def test_query_formats(built: ProjectDir) -> None:
    sql = "select id, name from people_named where id < 3 order by id"
    csv_out = built.ok("query", sql, "--format", "csv").out
    assert csv_out.splitlines() == ["id,name", "1,ANN", "2,BOB"]
    json_out = built.ok("query", sql, "--format", "json")
    assert json_out.json_lines() == [{"id": 1, "name": "ANN"}, {"id": 2, "name": "BOB"}]
    table_out = built.ok("query", sql).out
    assert "ANN" in table_out and "BOB" in table_out and table_out.rstrip().endswith("2 rows")


def test_query_with_bad_sql_is_a_clear_error(built: ProjectDir) -> None:
    result = built.cli("query", "selec id from people_named")
    assert result.code != 0
    assert "Traceback" not in result.text
    assert result.err.startswith("error:")
    assert "selec" in result.err


def test_ls_prints_names_by_default(built: ProjectDir) -> None:
    assert built.ok("ls", "--select", "people+", "--resource-type", "model").out.split() == [
        "people_eph", "people_named"]


def test_log_format_json_prints_one_event_per_line(make_project: MakeProject) -> None:
    project = make_project(PROJECT)
    result = project.ok("build", "--log-format", "json")
    events = result.json_lines()
    assert events[0] == {"event": "run_started", "command": "build", "total": 4}
    finished = [e for e in events if e["event"] == "node_finished"]
    assert sorted(e["unique_id"] for e in finished) == [
        "model.people_eph", "model.people_named", "seed.people", "test.unique_people_named_id"]
    assert [e["index"] for e in finished] == [1, 2, 3, 4]
    assert events[-1]["event"] == "run_finished"
    assert events[-1]["counts"] == {"success": 3, "pass": 1}
    assert len([e for e in events if e["event"] == "node_started"]) == 4


def test_clean_removes_target_and_exports_and_optionally_the_warehouse(make_project: MakeProject) -> None:
    project = make_project({"models/m.sql": "{{ config(export=['jsonl']) }}\nselect 1 as x\n"})
    project.ok("run")
    assert project.path("warehouse/exports/m.jsonl").is_file()
    project.ok("clean")
    assert not project.path("warehouse/target").exists()
    assert not project.path("warehouse/exports").exists()
    assert project.warehouse.is_file()
    assert project.rows("select x from m") == [(1,)]
    project.ok("clean", "--warehouse")
    assert not project.warehouse.exists()
    assert not project.path("warehouse/state").exists()


def test_each_command_exit_code(built: ProjectDir) -> None:
    for args in (["seed"], ["run"], ["test"], ["build"], ["compile"], ["ls"], ["export", "--format", "jsonl"]):
        assert built.cli(*args).code == 0, args
