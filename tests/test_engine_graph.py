"""5. Edges come from ref(); the rendered SQL is checked with sqlglot.

The error cases (bare names, syntax errors, cycles, unknown refs) are in test_engine_errors.py.
"""

from __future__ import annotations

from conftest import MakeProject

CHAIN = {
    "seeds/raw.csv": "id\n1\n2\n3\n",
    "models/a.sql": "select id from {{ ref('raw') }}\n",
    "models/b.sql": "select id * 10 as id from {{ ref('a') }}\n",
    "models/c.sql": "select b.id, a.id as a_id from {{ ref('b') }} as b join {{ ref('a') }} as a on b.id = a.id * 10\n",
}


def test_edges_come_from_ref_and_drive_the_build_order(make_project: MakeProject) -> None:
    project = make_project(CHAIN)
    project.ok("build", "--threads", "4")
    manifest = project.manifest()
    assert manifest["nodes"]["model.a"]["depends_on"] == ["seed.raw"]
    assert manifest["nodes"]["model.c"]["depends_on"] == ["model.a", "model.b"]
    assert manifest["child_map"]["model.a"] == ["model.b", "model.c"]
    assert manifest["parent_map"]["model.b"] == ["model.a"]
    order = [r["name"] for r in project.run_results()["results"]]
    assert order == ["raw", "a", "b", "c"]
    assert project.rows("select * from c order by id") == [(10, 1), (20, 2), (30, 3)]


def test_ctes_and_string_literals_named_like_models_are_not_bare_references(make_project: MakeProject) -> None:
    project = make_project({
        "models/a.sql": "select 1 as x\n",
        "models/b.sql": "with a as (select 2 as x) select x, 'a' as label from a\n",
    })
    project.ok("run")
    assert project.manifest()["nodes"]["model.b"]["depends_on"] == []
    assert project.rows("select * from b") == [(2, "a")]


def test_ref_to_an_ephemeral_model_is_an_edge_without_a_relation(make_project: MakeProject) -> None:
    project = make_project({
        "models/common/base.sql": "select range as n from range(4)\n",
        "models/evens.sql": "select n from {{ ref('base') }} where n % 2 = 0\n",
    }, project_yml="name: g\nmodels:\n  common:\n    +materialized: ephemeral\n")
    project.ok("run")
    assert project.manifest()["nodes"]["model.evens"]["depends_on"] == ["model.base"]
    assert project.relations() == {"evens": "VIEW"}
    assert project.rows("select n from evens order by n") == [(0,), (2,)]
