"""3. Models: Jinja SQL (ref, var, env_var, config, this, is_incremental, macros), Python models, YAML beside models."""

from __future__ import annotations

import pytest
from conftest import MakeProject

ORDERS_CSV = "id,amount,status\n1,2.5,placed\n2,4.0,shipped\n3,1.25,placed\n"


def test_ref_var_env_var_and_macros_render(make_project: MakeProject, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DP_TEST_REGION", raising=False)
    project = make_project({
        "seeds/orders.csv": ORDERS_CSV,
        "macros/money.sql": "{% macro cents(col) %}cast({{ col }} * 100 as bigint){% endmacro %}\n",
        # A macro in a nested folder calling a macro from another file.
        "macros/text/labels.sql": "{% macro label(prefix) %}'{{ prefix }}-' || {{ cents('amount') }}{% endmacro %}\n",
        "models/orders_enriched.sql": """\
            select
                id,
                {{ cents('amount') }} as amount_cents,
                {{ label(var('prefix', 'ord')) }} as label,
                '{{ env_var('DP_TEST_REGION', 'eu') }}' as region
            from {{ ref('orders') }}
            where status = '{{ var('status') }}'
            """,
    }, project_yml="name: m\nvars:\n  status: placed\n")
    project.ok("build")
    assert project.rows("select * from orders_enriched order by id") == [
        (1, 250, "ord-250", "eu"), (3, 125, "ord-125", "eu")]

    monkeypatch.setenv("DP_TEST_REGION", "us")
    project.ok("run", "--vars", "{prefix: o, status: shipped}")
    assert project.rows("select * from orders_enriched order by id") == [(2, 400, "o-400", "us")]


def test_config_call_sets_materialization_and_tags(make_project: MakeProject) -> None:
    project = make_project({
        "models/configured.sql": "{{ config(materialized='table', tags=['nightly']) }}\nselect 1 as x\n",
        "models/plain.sql": "select 2 as x\n",
    })
    project.ok("run")
    assert project.relations() == {"configured": "BASE TABLE", "plain": "VIEW"}
    assert project.manifest()["nodes"]["model.configured"]["tags"] == ["nightly"]
    assert project.ok("ls", "--select", "tag:nightly").out.split() == ["configured"]


def test_this_and_is_incremental_render_against_the_existing_table(make_project: MakeProject) -> None:
    project = make_project({
        "models/events.sql": """\
            {{ config(materialized='incremental') }}
            select range as id from range({{ var('n', 3) }})
            {% if is_incremental() %}
            where range > (select max(id) from {{ this }})
            {% endif %}
            """,
    })
    compiled = project.path("warehouse/target/compiled/models/events.sql")
    project.ok("run")
    assert "where range >" not in compiled.read_text()
    project.ok("run", "--vars", "{n: 5}")
    assert 'where range > (select max(id) from main."events")' in compiled.read_text()
    assert project.rows("select id from events order by id") == [(0,), (1,), (2,), (3,), (4,)]


def test_this_name_is_the_model_name(make_project: MakeProject) -> None:
    project = make_project({"models/whoami.sql": "select '{{ this.name }}' as me\n"})
    project.ok("run")
    assert project.rows("select me from whoami") == [("whoami",)]


PY_ARROW = """\
import pyarrow as pa


def model(ctx):
    rows = ctx.ref("orders").order("id").fetchall()
    return pa.table({"id": [r[0] for r in rows], "double_amount": [r[1] * 2 for r in rows]})
"""

PY_POLARS = """\
import polars as pl


def model(ctx):
    frame = ctx.ref("orders").pl()
    return frame.group_by("status").agg(pl.len().alias("n")).sort("status")
"""

PY_RELATION = """\
def model(ctx):
    return ctx.ref("py_arrow").filter("double_amount > 4").project("id")
"""


def test_python_models_return_arrow_polars_or_duckdb_relations(make_project: MakeProject) -> None:
    project = make_project({
        "seeds/orders.csv": ORDERS_CSV,
        "models/py_arrow.py": PY_ARROW,
        "models/py_polars.py": PY_POLARS,
        "models/py_relation.py": PY_RELATION,
        "models/after_python.sql": "select count(*) as n from {{ ref('py_relation') }}\n",
    })
    project.ok("build")
    assert project.rows("select * from py_arrow order by id") == [(1, 5.0), (2, 8.0), (3, 2.5)]
    assert project.rows("select * from py_polars order by status") == [("placed", 2), ("shipped", 1)]
    assert project.rows("select * from py_relation") == [(1,), (2,)]
    assert project.rows("select n from after_python") == [(2,)]
    nodes = project.manifest()["nodes"]
    assert nodes["model.py_arrow"]["depends_on"] == ["seed.orders"]
    assert nodes["model.py_relation"]["depends_on"] == ["model.py_arrow"]
    assert nodes["model.py_arrow"]["language"] == "python"
    assert project.relations()["py_arrow"] == "BASE TABLE"


def test_python_model_returning_something_else_fails_naming_the_file(make_project: MakeProject) -> None:
    project = make_project({"models/bad_py.py": "def model(ctx):\n    return [1, 2, 3]\n"})
    result = project.cli("run")
    assert result.code == 1
    [outcome] = project.run_results()["results"]
    assert outcome["status"] == "error"
    assert "models/bad_py.py" in outcome["message"]
    assert "list" in outcome["message"]


SCHEMA_YML = """\
version: 2
models:
  - name: customers
    description: One row per customer.
    config:
      materialized: table
      tags: [core]
    columns:
      - name: id
        description: The customer id.
        tests: [unique, not_null]
      - name: name
        description: Display name.
"""


def test_yaml_beside_models_adds_descriptions_config_and_column_tests(make_project: MakeProject) -> None:
    project = make_project({
        "models/core/customers.sql": "select * from (values (1, 'Ann'), (2, 'Bob')) as t(id, name)\n",
        "models/core/schema.yml": SCHEMA_YML,
    })
    project.ok("build")
    node = project.manifest()["nodes"]["model.customers"]
    assert node["description"] == "One row per customer."
    assert node["columns"] == {"id": "The customer id.", "name": "Display name."}
    assert node["config"]["materialized"] == "table"
    assert node["tags"] == ["core"]
    assert project.relations() == {"customers": "BASE TABLE"}
    assert project.statuses() == {"customers": "success", "unique_customers_id": "pass",
                                  "not_null_customers_id": "pass"}
