"""Bad input gets a clear error: the file, the line or key at fault, and what to do; never a traceback."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest
from conftest import CliResult, MakeProject, ProjectDir


def _fails(project: ProjectDir, *args: str) -> CliResult:
    """Run a command that must stop before building anything, with a one-message error."""
    result = project.cli(*(args or ("build",)))
    assert result.code == 2, result.text
    assert result.err.startswith("error: "), result.err
    assert "Traceback" not in result.text
    return result


# ---- invalid YAML ----------------------------------------------------------------------------

def test_invalid_yaml_in_project_yml_names_file_and_line(make_project: MakeProject) -> None:
    project = make_project(project_yml="name: x\nvars:\n  a: [1, 2\n  b: 3\n")
    err = _fails(project).err
    assert re.search(r"project\.yml:4: invalid YAML", err), err


def test_invalid_yaml_in_a_properties_file_names_file_and_line(make_project: MakeProject) -> None:
    project = make_project({
        "models/a.sql": "select 1 as x\n",
        "models/schema.yml": "models:\n  - name: a\n    columns:\n      - name: x\n        tests: [unique\n",
    })
    err = _fails(project).err
    assert re.search(r"models/schema\.yml:6: invalid YAML", err), err


def test_duplicate_yaml_key_names_file_and_line(make_project: MakeProject) -> None:
    project = make_project(project_yml="name: x\nthreads: 2\nthreads: 3\n")
    err = _fails(project).err
    assert re.search(r"project\.yml:3: duplicate key 'threads'", err), err


# ---- unknown or mistyped config keys -----------------------------------------------------------

def test_unknown_top_level_key_names_path_line_and_allowed_keys(make_project: MakeProject) -> None:
    project = make_project(project_yml="name: x\nthreds: 2\n")
    err = _fails(project).err
    assert re.search(r"project\.yml:2: unknown key 'threds'", err), err
    assert "allowed keys here: backends, models, name, paths, prices, prompts, seeds, tests, threads, vars, " \
           "version, vlm, warehouse" in err


def test_unknown_nested_key_names_its_dotted_path(make_project: MakeProject) -> None:
    project = make_project(project_yml="name: x\npaths:\n  model: sql\n")
    err = _fails(project).err
    assert re.search(r"project\.yml:3: unknown key 'paths\.model'", err), err
    assert "macros, models, prompts, seeds" in err


def test_unknown_plus_key_in_the_models_block_lists_the_allowed_config_keys(make_project: MakeProject) -> None:
    project = make_project({"models/a.sql": "select 1 as x\n"},
                           project_yml="name: x\nmodels:\n  +materialised: table\n")
    err = _fails(project).err
    assert "project.yml" in err
    assert "models.+materialised" in err
    assert "+materialized" in err and "+tags" in err and "+export" in err


def test_models_block_folder_that_does_not_exist(make_project: MakeProject) -> None:
    project = make_project({"models/staging/a.sql": "select 1 as x\n"},
                           project_yml="name: x\nmodels:\n  stagin:\n    +materialized: table\n")
    err = _fails(project).err
    assert "project.yml" in err and "models.stagin" in err


def test_mistyped_materialization_value_names_the_key_and_choices(make_project: MakeProject) -> None:
    project = make_project({"models/a.sql": "select 1 as x\n"},
                           project_yml="name: x\nmodels:\n  +materialized: tabel\n")
    err = _fails(project).err
    assert "project.yml" in err
    assert "materialized" in err and "'tabel'" in err
    assert "'view', 'table', 'incremental' or 'ephemeral'" in err


def test_unknown_seed_config_key(make_project: MakeProject) -> None:
    project = make_project({"seeds/s.csv": "a\n1\n"},
                           project_yml="name: x\nseeds:\n  s:\n    +column_type: {a: VARCHAR}\n")
    err = _fails(project).err
    assert "seeds.s.+column_type" in err and "+column_types" in err


def test_unknown_key_in_yaml_config_names_file_line_and_allowed_keys(make_project: MakeProject) -> None:
    project = make_project({
        "models/a.sql": "select 1 as x\n",
        "models/schema.yml": "models:\n  - name: a\n    config:\n      materialised: table\n",
    })
    err = _fails(project).err
    assert re.search(r"models/schema\.yml:4: unknown key 'a\.config\.materialised'", err), err
    assert "materialized" in err.split("allowed keys here:")[1]


def test_unknown_key_in_config_call_names_the_model_file(make_project: MakeProject) -> None:
    project = make_project({"models/a.sql": "{{ config(materialised='table') }}\nselect 1 as x\n"})
    err = _fails(project).err
    assert "models/a.sql" in err and "materialised" in err
    assert "materialized" in err.split("allowed keys here:")[1]


def test_unknown_key_in_a_yaml_model_entry_lists_the_allowed_keys(make_project: MakeProject) -> None:
    project = make_project({
        "models/a.sql": "select 1 as x\n",
        "models/schema.yml": "models:\n  - name: a\n    descripton: typo\n",
    })
    err = _fails(project).err
    assert re.search(r"models/schema\.yml:3: unknown key '[^']*descripton'", err), err
    assert "allowed keys here:" in err, err
    allowed = err.split("allowed keys here:")[1]
    assert "description" in allowed and "columns" in allowed and "config" in allowed


def test_unknown_key_in_the_tests_block_of_project_yml_names_project_yml(make_project: MakeProject) -> None:
    project = make_project({
        "models/a.sql": "select 1 as x\n",
        "models/schema.yml": "models:\n  - name: a\n    columns:\n      - name: x\n        tests: [unique]\n",
    }, project_yml="name: x\ntests:\n  severty: warn\n")
    err = _fails(project).err
    assert "project.yml" in err and "schema.yml" not in err
    assert "tests.severty" in err
    assert "allowed keys here:" in err, err
    assert "severity" in err.split("allowed keys here:")[1]


def test_unknown_generic_test_names_file_and_line(make_project: MakeProject) -> None:
    project = make_project({
        "models/a.sql": "select 1 as x\n",
        "models/schema.yml": "models:\n  - name: a\n    columns:\n      - name: x\n        tests: [uniq]\n",
    })
    err = _fails(project).err
    assert re.search(r"models/schema\.yml:5: unknown test 'uniq' on a\.x", err), err
    assert "unique" in err


def test_yaml_entry_for_a_missing_model_suggests_the_closest(make_project: MakeProject) -> None:
    project = make_project({
        "models/customers.sql": "select 1 as id\n",
        "models/schema.yml": "models:\n  - name: custmers\n    description: typo\n",
    })
    err = _fails(project).err
    assert re.search(r"models/schema\.yml:2: models: no model named 'custmers'", err), err
    assert "did you mean 'customers'?" in err


# ---- refs, cycles, SQL ------------------------------------------------------------------------

def test_missing_ref_names_file_line_and_suggests_the_closest_name(make_project: MakeProject) -> None:
    project = make_project({
        "models/customers.sql": "select 1 as id\n",
        "models/report.sql": "select *\nfrom {{ ref('custmers') }}\n",
    })
    err = _fails(project).err
    assert "models/report.sql:2: ref('custmers'): no model or seed named 'custmers'" in err
    assert "did you mean 'customers'?" in err
    assert project.relations() == {}


def test_cycle_is_reported_with_its_full_path(make_project: MakeProject) -> None:
    project = make_project({
        "models/a.sql": "select * from {{ ref('c') }}\n",
        "models/b.sql": "select * from {{ ref('a') }}\n",
        "models/c.sql": "select * from {{ ref('b') }}\n",
        "models/outside.sql": "select 1 as x\n",
    })
    err = _fails(project).err
    match = re.search(r"dependency cycle: (.+)", err)
    assert match, err
    hops = match.group(1).strip().split(" -> ")
    assert len(hops) == 4 and hops[0] == hops[-1]
    assert sorted(hops[:-1]) == ["models/a.sql", "models/b.sql", "models/c.sql"]
    # Each hop is a ref: x -> y means y refers to x (or x to y), consistently along the path.
    edges = {("models/a.sql", "models/c.sql"), ("models/b.sql", "models/a.sql"), ("models/c.sql", "models/b.sql")}
    pairs = set(zip(hops, hops[1:], strict=False))
    assert pairs == edges or {(b, a) for a, b in pairs} == edges


def test_model_name_used_without_ref_names_file_and_line(make_project: MakeProject) -> None:
    project = make_project({
        "models/orders.sql": "select 1 as id\n",
        "models/report.sql": "select r.id\nfrom {{ ref('orders') }} as o\njoin orders as r on r.id = o.id\n",
    })
    err = _fails(project).err
    assert "models/report.sql:3: 'orders' is a model or seed used without ref()" in err
    assert "{{ ref('orders') }}" in err


def test_seed_name_used_without_ref_is_an_error_too(make_project: MakeProject) -> None:
    project = make_project({"seeds/raw.csv": "a\n1\n", "models/m.sql": "select a\nfrom raw\n"})
    err = _fails(project).err
    assert "models/m.sql:2: 'raw' is a model or seed used without ref()" in err


def test_sql_syntax_error_shows_the_offending_rendered_line(make_project: MakeProject) -> None:
    project = make_project({
        "models/broken.sql": "{% set n = 3 %}\nselect\n  1 as x,\n  2 as y y y\nfrom range({{ n }})\n",
    })
    err = _fails(project).err
    assert err.startswith("error: models/broken.sql")
    assert re.search(r"SQL syntax error at line 4, column \d+ of the rendered SQL", err), err
    shown = err.splitlines()
    offending = next(i for i, line in enumerate(shown) if line.strip() == "2 as y y y")
    assert shown[offending + 1].strip() == "^"
    assert project.relations() == {}


def test_a_model_of_two_statements_is_an_error(make_project: MakeProject) -> None:
    project = make_project({"models/a.sql": "select 1 as x;\nselect 2 as y\n"})
    err = _fails(project).err
    assert "models/a.sql: the model renders to 2 statements" in err


def test_undefined_jinja_variable_names_file_line_and_name(make_project: MakeProject) -> None:
    project = make_project({"models/a.sql": "select 1 as x\n-- note\nwhere {{ missing_thing }} > 1\n"})
    err = _fails(project).err
    assert "models/a.sql:3: undefined Jinja name: 'missing_thing' is undefined" in err


def test_var_without_default_names_file_line_and_how_to_set_it(make_project: MakeProject) -> None:
    project = make_project({"models/a.sql": "select\n  {{ var('cutoff') }} as c\n"})
    err = _fails(project).err
    assert "models/a.sql:2: var('cutoff') is not set and has no default" in err
    assert "--vars" in err


def test_env_var_without_default_names_the_variable(make_project: MakeProject,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DP_TEST_UNSET_VARIABLE", raising=False)
    project = make_project({"models/a.sql": "select '{{ env_var('DP_TEST_UNSET_VARIABLE') }}' as v\n"})
    err = _fails(project).err
    assert "models/a.sql:1: env_var('DP_TEST_UNSET_VARIABLE')" in err


def test_jinja_syntax_error_names_file_and_line(make_project: MakeProject) -> None:
    project = make_project({"models/a.sql": "select 1 as x\nfrom {{ ref('a' }}\n"})
    err = _fails(project).err
    assert re.search(r"models/a\.sql:2: Jinja syntax error", err), err


def test_python_model_syntax_error_names_file_and_line(make_project: MakeProject) -> None:
    project = make_project({"models/py.py": "def model(ctx):\n    return (\n\nx = 1\n"})
    err = _fails(project).err
    assert re.search(r"models/py\.py:\d+: Python syntax error", err), err


def test_duplicate_model_names_name_both_files(make_project: MakeProject) -> None:
    project = make_project({"models/x/a.sql": "select 1 as x\n", "models/y/a.sql": "select 2 as x\n"})
    err = _fails(project).err
    assert "duplicate name 'a': models/x/a.sql and models/y/a.sql" in err


def test_a_model_and_a_seed_with_the_same_name_clash(make_project: MakeProject) -> None:
    project = make_project({"models/a.sql": "select 1 as x\n", "seeds/a.csv": "x\n1\n"})
    err = _fails(project).err
    assert "duplicate name 'a': models/a.sql and seeds/a.csv" in err


# ---- seeds ------------------------------------------------------------------------------------

def _seed_error(project: ProjectDir) -> str:
    result = project.cli("build")
    assert result.code == 1, result.text
    assert "Traceback" not in result.text
    [seed] = [r for r in project.run_results()["results"] if r["resource_type"] == "seed"]
    assert seed["status"] == "error"
    return seed["message"]


def test_malformed_csv_row_names_file_and_line(make_project: MakeProject) -> None:
    project = make_project({
        "seeds/people.csv": "id,name\n1,Ann\n2,Bob,extra\n3,Cy\n",
        "models/people_count.sql": "select count(*) as n from {{ ref('people') }}\n",
    })
    message = _seed_error(project)
    assert message.startswith("seeds/people.csv:3: malformed row: 3 fields, the header has 2")
    assert project.statuses()["people_count"] == "skipped"
    assert project.relations() == {}


def test_malformed_jsonl_row_names_file_and_line(make_project: MakeProject) -> None:
    project = make_project({"seeds/events.jsonl": '{"id": 1}\n{"id": 2}\n{"id": 3\n'})
    assert _seed_error(project).startswith("seeds/events.jsonl:3: malformed JSON")


def test_malformed_json_seed_names_file_and_line(make_project: MakeProject) -> None:
    project = make_project({"seeds/cities.json": '[\n  {"city": "Oslo"},\n  {"city": "Rome",}\n]\n'})
    assert _seed_error(project).startswith("seeds/cities.json:3: malformed JSON")


def test_value_that_does_not_fit_the_column_type_names_file_and_line(make_project: MakeProject) -> None:
    project = make_project({"seeds/s.csv": "a,b\n1,x\n2,y\nzz,w\n"},
                           project_yml="name: x\nseeds:\n  s:\n    +column_types: {a: INTEGER}\n")
    message = _seed_error(project)
    assert message.startswith("seeds/s.csv:4: column 'a': 'zz' is not a valid INTEGER")


# ---- a locked warehouse -----------------------------------------------------------------------

def test_locked_warehouse_names_the_holder_and_what_to_do(make_project: MakeProject) -> None:
    project = make_project({"models/a.sql": "select 1 as x\n"})
    project.ok("run")
    holder = subprocess.Popen(
        [sys.executable, "-c",
         f"import duckdb,time; c=duckdb.connect({str(project.warehouse)!r}); print('ready', flush=True); "
         "time.sleep(30)"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "ready"
        started = time.perf_counter()
        for args in (("run",), ("query", "select 1"), ("show", "a")):
            result = project.cli(*args)
            assert result.code == 2, (args, result.text)
            assert "Traceback" not in result.text
            assert re.search(rf"is locked by .*\(PID {holder.pid}\)", result.err), result.err
            assert str(project.warehouse) in result.err or "warehouse/dataproj.duckdb" in result.err
            assert "wait for that process to finish or stop it" in result.err
        assert time.perf_counter() - started < 10
    finally:
        holder.kill()
        holder.wait()
        for stream in (holder.stdout, holder.stderr):
            if stream is not None:
                stream.close()
    project.ok("run")
