"""query_plan in SQL against a port of the reference planner (bench/imsearch_bench.py reference_plan): the same
candidates in the same order for every query, through relaxations, diversity caps, non-core off facets and
random top-ups; and clear errors for plans that cannot be made."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.compute as pc
import pytest
from conftest import run_main

ROOT = Path(__file__).resolve().parents[1]


def _load_bench() -> Any:
    spec = importlib.util.spec_from_file_location("imsearch_bench", ROOT / "bench" / "imsearch_bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


bench = _load_bench()


def reference_for(project: Path, annotations: Any, params: Any) -> dict[str, tuple[list[str], list[str]]]:
    """The reference plan for a built project, drawing 'random' images in the SQL model's seeded order: images
    sorted by hash(seed:image_id), rotated to start at hash(seed:query_id) mod N (docs/imsearch.md)."""
    con = duckdb.connect(str(project / "warehouse" / "dataproj.duckdb"), read_only=True)
    try:
        seed = params.random_seed or 42
        usable = con.execute("select image_id from annotations where status = 'ok' order by hash(? || ':' || "
                             "image_id), image_id", [str(seed)]).fetchall()
        by_position = [r[0] for r in usable]
        starts = dict(con.execute("select query_id, hash(? || ':' || query_id) % ? from query_seeds",
                                  [str(seed), len(by_position)]).fetchall())
        seeds = con.execute("select query_id, seed_image_ids from query_seeds order by query_id").fetchall()
    finally:
        con.close()

    def order(query_id: str) -> list[str]:
        start = starts[query_id]
        return by_position[start:] + by_position[:start]

    ok = annotations.filter(pc.equal(annotations.column("status"), "ok"))
    return bench.reference_plan(bench.records(ok), [(q, list(s)) for q, s in seeds], params, order=order)


def plan_project(tmp_path: Path, rows: int, **params: Any) -> tuple[Path, Any, Any]:
    plan = bench.PlanParams(**params)
    table = bench.generate_annotations(rows, seed=3)
    project = bench.make_plan_project(tmp_path / "plan", table, plan)
    result = run_main(["build", "--project-dir", str(project)])
    assert result.code == 0, result.text
    return project, table, plan


def sql_plan(project: Path) -> dict[str, tuple[list[str], list[str]]]:
    con = duckdb.connect(str(project / "warehouse" / "dataproj.duckdb"), read_only=True)
    try:
        rows = con.execute("select query_id, candidate_image_ids, candidate_roles from query_plan").fetchall()
    finally:
        con.close()
    return {r[0]: (r[1], r[2]) for r in rows}


@pytest.mark.parametrize("rows, params", [
    (3000, {"num_seeds": 40, "pos": 2, "neutral": 2, "hard": 25, "nearmiss": 10, "easy": 5,
            "diversity": ("background_kind",)}),  # caps bind: hard relaxes to 2 and 1 core facets
    (400, {"num_seeds": 30, "pos": 1, "neutral": 1, "hard": 30, "nearmiss": 20, "easy": 5, "diversity": ()}),
    (2000, {"num_seeds": 25, "hard": 10, "nearmiss": 10, "easy": 5, "off": ("background_kind", "dominant_color"),
            "diversity": ("object_count", "has_red")}),
])
def test_sql_plan_equals_the_reference_plan(tmp_path: Path, rows: int, params: dict[str, Any]) -> None:
    project, table, plan = plan_project(tmp_path, rows, **params)
    planned = sql_plan(project)
    assert planned == reference_for(project, table, plan)
    for candidates, roles in planned.values():
        negatives = sum(r in ("hard", "nearmiss", "easy", "random") for r in roles)
        assert negatives == plan.total and len(set(candidates)) == len(candidates) and roles[0] == "seed"


def test_short_pools_relax_and_top_up_at_random_as_the_reference_does(tmp_path: Path) -> None:
    project, table, plan = plan_project(tmp_path, 120, num_seeds=10, hard=30, nearmiss=30, easy=20,
                                        diversity=("background_kind",))
    planned = sql_plan(project)
    assert planned == reference_for(project, table, plan)
    roles = [role for _, roles in planned.values() for role in roles]
    assert 0 < roles.count("hard") < 30 * 10 and roles.count("random") > 0


def test_negative_counts_must_add_up(tmp_path: Path) -> None:
    project, _, _ = plan_project(tmp_path, 200, num_seeds=5)
    config = (project / "project.yml").read_text().replace("neg_total: 40", "neg_total: 41")
    (project / "project.yml").write_text(config)
    result = run_main(["run", "--select", "query_plan", "--project-dir", str(project)])
    assert result.code == 1
    assert ("vars.imsearch.query_plan: neg_hard (25) + neg_nearmiss (10) + neg_easy (5) must add up to "
            "neg_total (41) (project.yml)") in result.text


def test_more_seeds_than_images_is_a_clear_error(tmp_path: Path) -> None:
    project, _, _ = plan_project(tmp_path, 50, num_seeds=5)
    config = (project / "project.yml").read_text().replace("num_seeds: 5", "num_seeds: 80")
    (project / "project.yml").write_text(config)
    result = run_main(["run", "--select", "query_seeds", "--project-dir", str(project)])
    assert result.code == 1
    assert "vars.imsearch.query_plan.num_seeds is 80 but there are only 50 images" in result.text
