"""Tests for the dbt-style --select / --exclude grammar in dataproj.selector."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from dataproj.errors import SelectorError
from dataproj.selector import describe, select_nodes


@dataclass(frozen=True)
class Node:
    resource_type: str
    name: str
    path: str
    fqn: tuple[str, ...]
    tags: tuple[str, ...] = ()
    config: Mapping[str, Any] = field(default_factory=dict)
    depends_on: tuple[str, ...] = ()  # names, resolved to unique_ids below

    @property
    def unique_id(self) -> str:
        return f"{self.resource_type}.{self.name}"


# The graph; tests hang off models, "scratch" stands alone:
#   raw_images -> stg_images -> {img_embed, img_labels} -> images      (a diamond)
#   scenes -> stg_scenes -> images -> search_index -> report             (a chain)
#   rights_map -> rights -> report
_NODES = [
    Node("seed", "raw_images", "seeds/raw_images.csv", ("raw_images",)),
    Node("seed", "scenes", "seeds/scenes", ("scenes",)),  # a folder seed
    Node("seed", "rights_map", "seeds/rights_map.csv", ("rights_map",)),
    Node(
        "model",
        "stg_images",
        "models/staging/stg_images.sql",
        ("staging", "stg_images"),
        ("staging",),
        {"materialized": "view"},
        ("raw_images",),
    ),
    Node(
        "model",
        "stg_scenes",
        "models/staging/stg_scenes.sql",
        ("staging", "stg_scenes"),
        ("staging",),
        {"materialized": "view"},
        ("scenes",),
    ),
    Node(
        "model",
        "img_embed",
        "models/imsearch/img_embed.py",
        ("imsearch", "img_embed"),
        ("ml",),
        {"materialized": "table", "full_refresh": True, "meta": {"owner": "ml-team"}},
        ("stg_images",),
    ),
    Node(
        "model",
        "img_labels",
        "models/imsearch/img_labels.sql",
        ("imsearch", "img_labels"),
        (),
        {"materialized": "table", "full_refresh": False},
        ("stg_images",),
    ),
    Node(
        "model",
        "images",
        "models/imsearch/images.sql",
        ("imsearch", "images"),
        ("nightly", "core"),
        {"materialized": "incremental", "unique_key": "id", "export": ["jsonl", "parquet"], "batch": 500},
        ("img_embed", "img_labels", "stg_scenes"),
    ),
    Node(
        "model",
        "search_index",
        "models/imsearch/serving/search_index.sql",
        ("imsearch", "serving", "search_index"),
        ("nightly",),
        {"materialized": "incremental"},
        ("images",),
    ),
    Node("model", "rights", "models/legal/rights.sql", ("legal", "rights"), (), {}, ("rights_map",)),
    Node("model", "report", "models/report.sql", ("report",), (), {}, ("search_index", "rights")),
    Node("model", "scratch", "models/scratch.sql", ("scratch",), ("wip",), {"enabled": True}),
    Node(
        "test",
        "not_null_stg_images_id",
        "models/staging/schema.yml",
        ("staging", "not_null_stg_images_id"),
        depends_on=("stg_images",),
    ),
    Node(
        "test",
        "unique_images_id",
        "models/imsearch/schema.yml",
        ("imsearch", "unique_images_id"),
        depends_on=("images",),
    ),
    Node(
        "test",
        "rel_images_scenes",
        "models/imsearch/schema.yml",
        ("imsearch", "rel_images_scenes"),
        depends_on=("images", "stg_scenes"),
    ),
]
_BY_NAME = {node.name: node for node in _NODES}
NODES = {node.unique_id: node for node in _NODES}
PARENTS = {node.unique_id: {_BY_NAME[dep].unique_id for dep in node.depends_on} for node in _NODES}
CHILDREN: dict[str, set[str]] = {uid: set() for uid in NODES}
for _child, _parents in PARENTS.items():
    for _parent in _parents:
        CHILDREN[_parent].add(_child)

ALL = set(_BY_NAME)
TESTS = {"not_null_stg_images_id", "unique_images_id", "rel_images_scenes"}
IMAGE_TESTS = {"unique_images_id", "rel_images_scenes"}  # tests with images as a parent
IMSEARCH = {"img_embed", "img_labels", "images", "search_index"} | IMAGE_TESTS


def run(select: list[str] | None, exclude: list[str] | None = None, is_modified: Any = None) -> set[str]:
    """Select, then map unique_ids back to names so expectations stay readable."""
    chosen = select_nodes(select, exclude, NODES, PARENTS, CHILDREN, is_modified)
    return {NODES[uid].name for uid in chosen}


@pytest.mark.parametrize(
    ("select", "expected"),
    [
        # name / fqn (bare words), with wildcards
        (["images"], {"images"} | IMAGE_TESTS),
        (["img*"], {"img_embed", "img_labels"}),
        (["imsearch.images"], {"images"} | IMAGE_TESTS),
        (["imsearch.*"], IMSEARCH),
        (["imsearch"], IMSEARCH),  # dbt: a bare fqn prefix selects the folder
        (["imsearch.serving.search_index"], {"search_index"}),
        (["fqn:staging"], {"stg_images", "stg_scenes", "not_null_stg_images_id", "rel_images_scenes"}),
        (["name:imsearch"], set()),
        (["name:stg_*"], {"stg_images", "stg_scenes", "not_null_stg_images_id", "rel_images_scenes"}),
        (["nope"], set()),
        (["*"], ALL),
        # tag
        (["tag:nightly"], {"images", "search_index"} | IMAGE_TESTS),
        (["tag:*ing"], {"stg_images", "stg_scenes", "not_null_stg_images_id", "rel_images_scenes"}),
        # path, and bare words that look like paths or files
        (["path:models/imsearch"], IMSEARCH),
        (["path:models/imsearch/"], IMSEARCH),
        (["path:./models/imsearch"], IMSEARCH),
        (["path:models/imsearch/images.sql"], {"images"} | IMAGE_TESTS),
        (["path:models/imsearch/serving"], {"search_index"}),
        (["path:models/*/img_*"], {"img_embed", "img_labels"}),
        (["path:models/ims*"], IMSEARCH),
        (["path:models/imsearch/ima"], set()),  # a folder prefix is whole path parts, not characters
        (["path:seeds/scenes"], {"scenes"}),
        (["path:seeds"], {"raw_images", "scenes", "rights_map"}),
        (["models/staging/stg_images.sql"], {"stg_images", "not_null_stg_images_id"}),
        (["models/legal/"], {"rights"}),
        (["images.sql"], {"images"} | IMAGE_TESTS),
        (["img_embed.py"], {"img_embed"}),
        # config
        (["config.materialized:incremental"], {"images", "search_index"} | IMAGE_TESTS),
        (["config.export:parquet"], {"images"} | IMAGE_TESTS),
        (["config.export:csv"], set()),
        (["config.batch:500"], {"images"} | IMAGE_TESTS),
        (["config.full_refresh:true"], {"img_embed"}),
        (["config.full_refresh:False"], {"img_labels"}),
        (["config.enabled:true"], {"scratch"}),
        (["config.meta.owner:ml-team"], {"img_embed"}),
        (["config.missing:x"], set()),
        # resource_type
        (["resource_type:seed"], {"raw_images", "scenes", "rights_map"}),
        (["resource_type:test"], TESTS),
        (["resource_type:model"], ALL - {"raw_images", "scenes", "rights_map"}),
    ],
)
def test_methods(select: list[str], expected: set[str]) -> None:
    assert run(select) == expected


@pytest.mark.parametrize(
    ("select", "expected"),
    [
        (["+img_embed"], {"img_embed", "stg_images", "raw_images", "not_null_stg_images_id"}),
        (["+images"], ALL - {"search_index", "report", "rights", "rights_map", "scratch"}),
        (["1+images"], {"images", "img_embed", "img_labels", "stg_scenes"} | IMAGE_TESTS),
        (
            ["2+images"],
            {
                "images",
                "img_embed",
                "img_labels",
                "stg_scenes",
                "stg_images",
                "scenes",
                "not_null_stg_images_id",
            }
            | IMAGE_TESTS,
        ),
        (["0+images"], {"images"} | IMAGE_TESTS),
        (["2+report"], {"report", "search_index", "rights", "images", "rights_map"} | IMAGE_TESTS),
        (["images+"], {"images", "search_index", "report"} | IMAGE_TESTS),
        (["images+1"], {"images", "search_index"} | IMAGE_TESTS),
        (["stg_images+1"], {"stg_images", "img_embed", "img_labels", "not_null_stg_images_id"}),
        (["img_labels+"], {"img_labels", "images", "search_index", "report"} | IMAGE_TESTS),
        (["1+img_embed+1"], {"stg_images", "img_embed", "images", "not_null_stg_images_id"} | IMAGE_TESTS),
        (["+rights+"], {"rights_map", "rights", "report"}),
        # "@": descendants plus everything they need, e.g. img_embed and rights for report
        (["@img_labels"], ALL - {"scratch"}),
        (["@rights"], ALL - {"scratch"}),  # report needs search_index, which needs nearly everything
        (["@scratch"], {"scratch"}),
        (["+tag:ml"], {"img_embed", "stg_images", "raw_images", "not_null_stg_images_id"}),
        (["path:models/imsearch/serving+"], {"search_index", "report"}),
        (
            ["config.materialized:view+1"],
            {"stg_images", "stg_scenes", "img_embed", "img_labels", "images"} | TESTS,
        ),
    ],
)
def test_graph_operators(select: list[str], expected: set[str]) -> None:
    assert run(select) == expected


@pytest.mark.parametrize(
    ("select", "expected"),
    [
        # union: spaces within a value and several values
        (["tag:ml tag:wip"], {"img_embed", "scratch"}),
        (["tag:ml", "scratch"], {"img_embed", "scratch"}),
        (["  tag:ml \t scratch  "], {"img_embed", "scratch"}),
        # intersection
        (["tag:nightly,path:models/imsearch/serving"], {"search_index"}),
        (["tag:nightly,config.materialized:incremental"], {"images", "search_index"} | IMAGE_TESTS),
        (
            ["+images,tag:staging"],
            {"stg_images", "stg_scenes", "not_null_stg_images_id", "rel_images_scenes"},
        ),
        (["resource_type:model,path:models/imsearch"], IMSEARCH),
        (["tag:ml,tag:wip"], set()),
        # tests are picked per term, so this is dbt's "the tests of nightly models"
        (["tag:nightly,resource_type:test"], IMAGE_TESTS),
        (["images,resource_type:test img_embed"], IMAGE_TESTS | {"img_embed"}),
    ],
)
def test_union_and_intersection(select: list[str], expected: set[str]) -> None:
    assert run(select) == expected


@pytest.mark.parametrize(
    ("select", "exclude", "expected"),
    [
        (None, None, ALL),
        ([], [], ALL),
        (None, ["resource_type:test"], ALL - TESTS),
        (["images"], ["unique_images_id"], {"images", "rel_images_scenes"}),
        # excluding a model drops its tests too (dbt: "--exclude orders")
        (["images"], ["stg_scenes"], {"images", "unique_images_id"}),
        (None, ["tag:nightly"], ALL - {"images", "search_index"} - IMAGE_TESTS),
        (
            ["+images"],
            ["stg_images"],
            {"images", "img_embed", "img_labels", "stg_scenes", "raw_images", "scenes"} | IMAGE_TESTS,
        ),
        (["imsearch.*"], ["images+"], {"img_embed", "img_labels"}),
        (["tag:ml"], ["nothing_matches"], {"img_embed"}),
        (None, ["path:models tag:nope"], {"raw_images", "scenes", "rights_map"}),
    ],
)
def test_exclude(select: list[str] | None, exclude: list[str] | None, expected: set[str]) -> None:
    assert run(select, exclude) == expected


def test_a_bare_string_is_one_value_not_letters() -> None:
    chosen = select_nodes("img_embed", None, NODES, PARENTS, CHILDREN)  # type: ignore[arg-type]
    assert chosen == {"model.img_embed"}


def test_walks_ignore_ids_that_are_not_nodes() -> None:
    parents = {**PARENTS, "seed.raw_images": {"source.raw"}}
    chosen = select_nodes(["+raw_images"], None, NODES, parents, CHILDREN)
    assert chosen == {"seed.raw_images"}


def test_state_modified_uses_the_callback() -> None:
    modified = {"model.img_labels"}
    assert run(["state:modified"], is_modified=modified.__contains__) == {"img_labels"}
    assert (
        run(["state:modified+"], is_modified=modified.__contains__)
        == {
            "img_labels",
            "images",
            "search_index",
            "report",
        }
        | IMAGE_TESTS
    )
    assert run(["state:modified"], is_modified=lambda uid: False) == set()


def test_state_modified_without_a_previous_manifest() -> None:
    with pytest.raises(SelectorError, match="previous run") as info:
        run(["state:modified+"])
    assert '"state:modified+"' in str(info.value)
    with pytest.raises(SelectorError, match="previous run"):
        run(None, ["state:modified"])


def test_state_is_not_consulted_for_other_selectors() -> None:
    assert run(["images"], is_modified=None) == {"images"} | IMAGE_TESTS


@pytest.mark.parametrize(
    ("select", "bad", "allowed"),
    [
        (["foo:bar"], '"foo" in "foo:bar"', "tag"),
        (["images foo:bar"], '"foo:bar"', "config.<key>"),
        (["config.:x"], '"config.:x"', "config.<key>"),
        ([":x"], '":x"', "resource_type"),
        (["++x"], '"++x"', "@"),
        (["x++"], '"x++"', "@"),
        (["@"], '"@"', "@"),
        (["+"], '"+"', "@"),
        (["1+"], '"1+"', "@"),
        (["a+b"], '"a+b"', "@"),
        (["@+images"], '"@+images"', '"@" cannot be combined with "+"'),
        (["@images+"], '"@images+"', '"@" cannot be combined with "+"'),
        (["@2+images"], '"@2+images"', '"@" cannot be combined with "+"'),
        (["tag:"], '"tag:"', "no value"),
        (["resource_type:snapshot"], '"resource_type:snapshot"', "model, seed, test"),
        (["state:new"], '"state:new"', "state:modified"),
        (["tag:a,"], '"tag:a,"', "commas"),
        (["tag:a,,tag:b"], '"tag:a,,tag:b"', "commas"),
        ([""], '""', "@"),
        (["   "], '"   "', "@"),
    ],
)
def test_bad_selectors_name_the_expression(select: list[str], bad: str, allowed: str) -> None:
    with pytest.raises(SelectorError) as info:
        run(select)
    assert bad in str(info.value)
    assert allowed in str(info.value)


def test_bad_exclude_is_an_error_too() -> None:
    with pytest.raises(SelectorError, match='"x\\+\\+"'):
        run(["images"], ["x++"])


@pytest.mark.parametrize(
    ("select", "exclude", "expected"),
    [
        (["tag:nope"], ["x"], '--select "tag:nope" --exclude "x"'),
        (["a  b", "c"], None, '--select "a b c"'),
        (None, ["x"], '--exclude "x"'),
        ("tag:a", None, '--select "tag:a"'),
        (None, None, "all nodes (no --select or --exclude)"),
        ([], [], "all nodes (no --select or --exclude)"),
    ],
)
def test_describe(select: list[str] | None, exclude: list[str] | None, expected: str) -> None:
    assert describe(select, exclude) == expected
