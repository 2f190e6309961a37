"""6. Selection through the CLI: dbt grammar, `ls --output json`, empty selections, state:modified(+)."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import MakeProject, ProjectDir

SHOP = {
    "seeds/raw_orders.csv": "id,amount\n1,10\n2,20\n3,30\n",
    "macros/money.sql": "{% macro cents(col) %}({{ col }} * 100){% endmacro %}\n",
    "macros/unused.sql": "{% macro unused_thing() %}1{% endmacro %}\n",
    "models/staging/stg_orders.sql": "select id, {{ cents('amount') }} as cents from {{ ref('raw_orders') }}\n",
    "models/marts/orders.sql": "select id, cents from {{ ref('stg_orders') }} where cents > 0\n",
    "models/marts/revenue.sql": "select sum(cents) as total from {{ ref('orders') }}\n",
    "models/other.sql": "select 1 as x\n",
    "models/marts/schema.yml": """\
        models:
          - name: orders
            columns:
              - name: id
                tests: [not_null]
        """,
}
SHOP_YML = "name: shop\nmodels:\n  staging:\n    +tags: [stg]\n  marts:\n    +materialized: table\n"


@pytest.fixture
def shop(make_project: MakeProject) -> ProjectDir:
    return make_project(SHOP, project_yml=SHOP_YML)


def _ls(project: ProjectDir, *args: str) -> list[str]:
    out = project.ok("ls", *args, "--output", "json").out
    return [node["name"] for node in json.loads(out)] if out.strip() else []


def _names(project: ProjectDir, *args: str) -> set[str]:
    return set(_ls(project, *args))


def test_ls_json_lists_every_node_in_run_order(shop: ProjectDir) -> None:
    nodes = json.loads(shop.ok("ls", "--output", "json").out)
    names = [n["name"] for n in nodes]
    assert set(names) == {"raw_orders", "stg_orders", "orders", "revenue", "other", "not_null_orders_id"}
    for before, after in [("raw_orders", "stg_orders"), ("stg_orders", "orders"), ("orders", "revenue"),
                          ("orders", "not_null_orders_id")]:
        assert names.index(before) < names.index(after)
    orders = next(n for n in nodes if n["name"] == "orders")
    assert orders == {"unique_id": "model.orders", "name": "orders", "resource_type": "model",
                      "path": "models/marts/orders.sql", "tags": [], "depends_on": ["model.stg_orders"],
                      "materialized": "table"}


@pytest.mark.parametrize(("select", "expected"), [
    (["orders"], {"orders", "not_null_orders_id"}),
    (["+orders"], {"raw_orders", "stg_orders", "orders", "not_null_orders_id"}),
    (["orders+"], {"orders", "revenue", "not_null_orders_id"}),
    (["1+orders"], {"stg_orders", "orders", "not_null_orders_id"}),
    (["tag:stg"], {"stg_orders"}),
    (["path:models/marts"], {"orders", "revenue", "not_null_orders_id"}),
    (["marts"], {"orders", "revenue", "not_null_orders_id"}),
    (["resource_type:seed"], {"raw_orders"}),
    (["config.materialized:table"], {"orders", "revenue", "not_null_orders_id"}),
    (["other", "revenue"], {"other", "revenue"}),
    (["+revenue,tag:stg"], {"stg_orders"}),
    (["@stg_orders"], {"raw_orders", "stg_orders", "orders", "revenue", "not_null_orders_id"}),
])
def test_select_grammar(shop: ProjectDir, select: list[str], expected: set[str]) -> None:
    assert _names(shop, "--select", *select) == expected


def test_exclude_and_resource_type(shop: ProjectDir) -> None:
    assert _names(shop, "--select", "+revenue", "--exclude", "tag:stg", "--resource-type", "model") == {
        "orders", "revenue"}
    assert shop.ok("ls", "--resource-type", "test").out.split() == ["not_null_orders_id"]
    assert shop.ok("ls", "--select", "orders", "--output", "path").out.split() == [
        "models/marts/orders.sql", "models/marts/schema.yml"]


def test_a_selection_that_matches_nothing_says_so(shop: ProjectDir) -> None:
    listed = shop.cli("ls", "--select", "tag:nope")
    assert listed.code == 0
    assert listed.out == ""
    assert 'nothing to do: the selection matched no nodes (--select "tag:nope")' in listed.err
    ran = shop.cli("run", "--select", "nope")
    assert ran.code == 0
    assert 'the selection matched no nodes (--select "nope")' in ran.text
    assert shop.relations() == {}


def test_run_builds_only_the_selection(shop: ProjectDir) -> None:
    shop.ok("build", "--select", "+orders")
    assert shop.relations() == {"orders": "BASE TABLE", "raw_orders": "BASE TABLE", "stg_orders": "VIEW"}
    assert shop.statuses() == {"raw_orders": "success", "stg_orders": "success", "orders": "success",
                               "not_null_orders_id": "pass"}


def _modified(project: ProjectDir, selector: str = "state:modified", *extra: str) -> set[str]:
    result = project.ok("ls", "--select", selector, "--resource-type", "model", "seed", *extra)
    return set(result.out.split())


def test_state_modified_without_a_previous_run_says_what_to_do(shop: ProjectDir) -> None:
    result = shop.cli("ls", "--select", "state:modified")
    assert result.code == 2
    assert "needs the manifest of a previous run" in result.err


def test_state_modified_compares_with_the_previous_run(shop: ProjectDir) -> None:
    shop.ok("build")
    assert (shop.root / "warehouse/state/manifest.json").is_file()
    nothing = shop.cli("ls", "--select", "state:modified")
    assert "the selection matched no nodes" in nothing.err

    # A Jinja comment does not change the rendered SQL: not modified.
    shop.write({"models/marts/orders.sql": "select id, cents from {{ ref('stg_orders') }} where cents > 0{# ok #}\n"})
    assert _modified(shop) == set()

    shop.write({"models/marts/orders.sql": "select id, cents from {{ ref('stg_orders') }} where cents > 1000\n"})
    assert _modified(shop) == {"orders"}
    assert _modified(shop, "state:modified+") == {"orders", "revenue"}
    # Tests of a modified model ride along.
    assert set(shop.ok("ls", "--select", "state:modified").out.split()) == {"orders", "not_null_orders_id"}

    # Building the modified nodes records them: nothing is modified afterwards.
    shop.ok("build", "--select", "state:modified+")
    assert shop.statuses() == {"orders": "success", "revenue": "success", "not_null_orders_id": "pass"}
    assert _modified(shop) == set()
    assert shop.rows("select total from revenue") == [(5000,)]


def test_state_modified_sees_config_macro_and_seed_changes(shop: ProjectDir) -> None:
    shop.ok("build")
    shop.write({"project.yml": SHOP_YML.replace("[stg]", "[stg, extra]")})
    assert _modified(shop) == {"stg_orders"}
    shop.write({"project.yml": SHOP_YML})

    shop.write({"macros/unused.sql": "{% macro unused_thing() %}2{% endmacro %}\n"})
    assert _modified(shop) == set()
    # The macro's source changes, the rendered SQL does not: still modified.
    shop.write({"macros/money.sql": "{# v2 #}" + SHOP["macros/money.sql"]})
    assert _modified(shop) == {"stg_orders"}
    assert _modified(shop, "state:modified+") == {"stg_orders", "orders", "revenue"}
    shop.write({"macros/money.sql": SHOP["macros/money.sql"]})
    assert _modified(shop) == set()

    shop.write({"seeds/raw_orders.csv": "id,amount\n1,10\n2,20\n3,31\n"})
    assert _modified(shop) == {"raw_orders"}
    assert _modified(shop, "state:modified+") == {"raw_orders", "stg_orders", "orders", "revenue"}


def test_a_failed_node_stays_modified_until_it_builds(shop: ProjectDir) -> None:
    shop.ok("build")
    shop.write({"models/other.sql": "{{ config(materialized='table') }}\nselect cast('x' as integer) as x\n"})
    assert shop.cli("run", "--select", "state:modified").code == 1
    assert _modified(shop) == {"other"}
    shop.write({"models/other.sql": "select 2 as x\n"})
    shop.ok("run", "--select", "state:modified")
    assert _modified(shop) == set()


UDF_MODULE = """\
from dataproj import udf


@udf
def shout(text: str) -> str:
    return text.upper()
"""


def test_state_modified_sees_udf_changes(make_project: MakeProject) -> None:
    project = make_project({
        "udfs/text.py": UDF_MODULE,
        "models/shouted.sql": "{{ config(materialized='table') }}\nselect shout('hi') as s\n",
        "models/plain.sql": "select 1 as x\n",
    })
    project.ok("run")
    assert project.rows("select s from shouted") == [("HI",)]
    assert _modified(project) == set()

    project.write({"udfs/text.py": UDF_MODULE.replace("upper()", "upper() + '!'")})
    assert _modified(project) == {"shouted"}
    project.ok("run", "--select", "state:modified")
    assert project.statuses() == {"shouted": "success"}
    assert project.rows("select s from shouted") == [("HI!",)]
    assert _modified(project) == set()


def test_state_modified_sees_prompt_changes_against_a_state_folder(make_project: MakeProject) -> None:
    project = make_project({
        "prompts/caption/v1.yaml": "template: Describe the image.\n",
        "models/captioned.sql": "select caption('img.png') as c\n",
        "models/plain.sql": "select 1 as x\n",
    })
    project.ok("compile")
    previous = project.root / "previous"
    previous.mkdir()
    shutil.copy(project.path("warehouse/target/manifest.json"), previous / "manifest.json")
    state = ("--state", str(previous))
    assert _modified(project, "state:modified", *state) == set()
    project.write({"prompts/caption/v1.yaml": "template: Describe the image in one sentence.\n"})
    assert _modified(project, "state:modified", *state) == {"captioned"}
