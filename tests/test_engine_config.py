"""2. project.yml: name, version, vars, paths, warehouse, threads and the dbt-like `models:` folder defaults.

Unknown and mistyped keys are covered in test_engine_errors.py.
"""

from __future__ import annotations

from conftest import MakeProject


def test_defaults_put_the_warehouse_under_warehouse_and_use_four_threads(make_project: MakeProject) -> None:
    project = make_project({"models/one.sql": "select 1 as x\n"}, project_yml="name: minimal\n")
    project.ok("run")
    assert project.warehouse.is_file()
    assert project.run_results()["args"]["threads"] == 4
    assert project.rows("select * from one") == [(1,)]


def test_threads_from_project_yml_and_from_the_command_line(make_project: MakeProject) -> None:
    project = make_project({"models/one.sql": "select 1 as x\n"}, project_yml="name: t\nthreads: 3\n")
    project.ok("run")
    assert project.run_results()["args"]["threads"] == 3
    project.ok("run", "--threads", "1")
    assert project.run_results()["args"]["threads"] == 1


def test_warehouse_path_is_configurable(make_project: MakeProject) -> None:
    project = make_project({"models/one.sql": "select 42 as answer\n"},
                           project_yml="name: w\nwarehouse: data/other.duckdb\n")
    project.ok("run")
    assert not project.warehouse.exists()
    assert project.rows("select answer from one", path=project.path("data/other.duckdb")) == [(42,)]


def test_vars_come_from_project_yml_and_cli_overrides_them(make_project: MakeProject) -> None:
    project = make_project({
        "models/ids.sql": """\
            select range as id, '{{ var("label") }}' as label
            from range({{ var("n_rows") }})
            where range >= {{ var("min_id", 0) }}
            """,
    }, project_yml="name: v\nvars:\n  n_rows: 4\n  label: base\n")
    project.ok("run")
    assert project.rows("select * from ids order by id") == [(0, "base"), (1, "base"), (2, "base"), (3, "base")]
    project.ok("run", "--vars", "{n_rows: 3, min_id: 1}")
    assert project.rows("select * from ids order by id") == [(1, "base"), (2, "base")]


def test_paths_relocate_models_seeds_and_macros(make_project: MakeProject) -> None:
    project = make_project({
        "sql/doubled.sql": "select n, {{ twice('n') }} as n2 from {{ ref('numbers') }}\n",
        "data/numbers.csv": "n\n1\n2\n",
        "jinja/twice.sql": "{% macro twice(col) %}({{ col }} * 2){% endmacro %}\n",
        "models/ignored.sql": "select 1 as never_built\n",
    }, project_yml="name: p\npaths:\n  models: sql\n  seeds: data\n  macros: jinja\n")
    project.ok("build")
    assert project.rows("select n, n2 from doubled order by n") == [(1, 2), (2, 4)]
    assert set(project.relations()) == {"doubled", "numbers"}


FOLDER_DEFAULTS_YML = """\
name: shop
version: "2.1.0"
models:
  +materialized: table
  +tags: [shop]
  staging:
    +materialized: view
    +tags: [stg]
  marts:
    +export: [jsonl]
    orders_summary:
      +tags: daily
"""


def test_models_block_sets_per_folder_defaults(make_project: MakeProject) -> None:
    project = make_project({
        "models/staging/stg_orders.sql": "select range as id, range * 10 as amount from range(3)\n",
        "models/marts/orders_summary.sql": "select sum(amount) as total from {{ ref('stg_orders') }}\n",
        "models/marts/orders_view.sql": ("{{ config(materialized='view', tags=['adhoc']) }}\n"
                                         "select count(*) as n from {{ ref('stg_orders') }}\n"),
        "models/top.sql": "select 1 as x\n",
    }, project_yml=FOLDER_DEFAULTS_YML)
    project.ok("run")
    assert project.relations() == {"orders_summary": "BASE TABLE", "orders_view": "VIEW",
                                   "stg_orders": "VIEW", "top": "BASE TABLE"}
    nodes = project.manifest()["nodes"]
    assert nodes["model.stg_orders"]["tags"] == ["shop", "stg"]
    assert nodes["model.orders_summary"]["tags"] == ["shop", "daily"]
    assert nodes["model.orders_view"]["tags"] == ["shop", "adhoc"]
    assert nodes["model.top"]["tags"] == ["shop"]
    assert nodes["model.orders_summary"]["config"]["export"] == ["jsonl"]
    # The export default of marts/ applies to both marts models; the view exports too.
    exports = sorted(p.name for p in project.path("warehouse/exports").iterdir())
    assert exports == ["orders_summary.jsonl", "orders_view.jsonl"]
    assert project.path("warehouse/exports/orders_summary.jsonl").read_text().strip() == '{"total":30}'
    listed = project.ok("ls", "--select", "tag:stg").out.split()
    assert listed == ["stg_orders"]


def test_yaml_config_overrides_folder_defaults_and_config_call_overrides_yaml(make_project: MakeProject) -> None:
    project = make_project({
        "models/a.sql": "select 1 as x\n",
        "models/b.sql": "{{ config(materialized='view') }}\nselect 2 as x\n",
        "models/schema.yml": """\
            models:
              - name: a
                config:
                  materialized: table
              - name: b
                config:
                  materialized: table
            """,
    }, project_yml="name: o\nmodels:\n  +materialized: view\n")
    project.ok("run")
    assert project.relations() == {"a": "BASE TABLE", "b": "VIEW"}
