"""Declaring functions: type hints and pydantic models as DuckDB types, and registration on every cursor."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import duckdb
import pyarrow as pa
import pytest
from conftest import MakeProject
from pydantic import BaseModel
from runtime_support import call_count, calls, udf_module

from dataproj.runtime.spec import build_spec
from dataproj.runtime.types import ImagePath, sql_type


class Point(BaseModel):
    x: int
    y: float


class Shape(BaseModel):
    name: str
    corners: list[Point]
    centre: Point
    note: str | None = None


@dataclasses.dataclass
class Pair:
    left: str
    right: Optional[int]  # noqa: UP045 - the old spelling must map too


@pytest.mark.parametrize(("hint", "sql"), [
    (str, "VARCHAR"),
    (int, "BIGINT"),
    (float, "DOUBLE"),
    (bool, "BOOLEAN"),
    (bytes, "BLOB"),
    (Optional[str], "VARCHAR"),  # noqa: UP045
    (int | None, "BIGINT"),
    (list[str], "VARCHAR[]"),
    (list[list[int]], "BIGINT[][]"),
    (list[float] | None, "DOUBLE[]"),
    (dict[str, int], "MAP(VARCHAR, BIGINT)"),
    (ImagePath, "VARCHAR"),
    (Optional[ImagePath], "VARCHAR"),  # noqa: UP045
    (Point, 'STRUCT("x" BIGINT, "y" DOUBLE)'),
    (Shape, 'STRUCT("name" VARCHAR, "corners" STRUCT("x" BIGINT, "y" DOUBLE)[], '
            '"centre" STRUCT("x" BIGINT, "y" DOUBLE), "note" VARCHAR)'),
    (Pair, 'STRUCT("left" VARCHAR, "right" BIGINT)'),
])
def test_type_hints_map_to_duckdb_types(hint: Any, sql: str) -> None:
    mapped = sql_type(hint, where="f(x)")
    assert mapped.sql == sql
    # The Arrow type is the one DuckDB itself uses for that SQL type.
    assert pa.types.is_struct(mapped.arrow) == sql.startswith("STRUCT")
    with duckdb.connect() as con:
        assert con.sql(f"select null::{sql} as v").to_arrow_table().schema.field("v").type == mapped.arrow


def test_image_path_is_marked_for_content_hashing() -> None:
    assert sql_type(ImagePath, where="f(p)").is_image
    assert not sql_type(str, where="f(p)").is_image


def test_a_type_without_sql_equivalent_names_function_and_argument() -> None:
    def bad(x: set[int]) -> str:
        return ""

    with pytest.raises(TypeError, match=r"bad\(x\).*no SQL equivalent"):
        build_spec(bad)


def test_missing_type_hints_are_errors() -> None:
    def untyped(x) -> str:  # noqa: ANN001
        return ""

    def no_return(x: int):  # noqa: ANN202
        return ""

    with pytest.raises(TypeError, match=r"untyped: argument 'x' needs a type hint"):
        build_spec(untyped)
    with pytest.raises(TypeError, match=r"no_return: needs a return type hint"):
        build_spec(no_return)


def test_struct_results_gain_status_error_and_raw_response() -> None:
    def parse(text: str) -> Point:
        return Point(x=1, y=2.0)

    spec = build_spec(parse)
    assert spec.result.arrow.names == ["x", "y", "status", "error", "raw_response"]
    assert spec.result.sql.endswith('"status" VARCHAR, "error" VARCHAR, "raw_response" VARCHAR)')


def test_batch_functions_take_and_return_lists_typed_by_element() -> None:
    def lengths(texts: list[str], factors: list[float]) -> list[int]:
        return []

    spec = build_spec(lengths, kind="batch")
    assert [(p.name, p.type.sql) for p in spec.params] == [("texts", "VARCHAR"), ("factors", "DOUBLE")]
    assert spec.result.sql == "BIGINT"

    def not_lists(text: str) -> int:
        return 0

    with pytest.raises(TypeError, match="list"):
        build_spec(not_lists, kind="batch")


TYPED_UDFS = udf_module('''\
    from typing import Optional

    from pydantic import BaseModel

    from dataproj import udf


    class Point(BaseModel):
        x: int
        y: float


    class Shape(BaseModel):
        name: str
        corners: list[Point]
        centre: Point
        note: Optional[str] = None


    @udf
    def as_shape(name: str, n: int) -> Shape:
        corners = [Point(x=i, y=i / 2) for i in range(n)]
        return Shape(name=name, corners=corners, centre=Point(x=n, y=0.5),
                     note=None if n % 2 else "even")


    @udf
    def words(text: Optional[str]) -> list[str]:
        log("words", text)
        return [] if text is None else text.split()


    @udf
    def maybe_len(text: Optional[str]) -> Optional[int]:
        return None if text is None else len(text)


    @udf
    def flags(n: int, ratio: float, on: bool) -> bool:
        return on and n * ratio > 1
''')


def test_udf_results_have_the_declared_column_types_and_values(make_project: MakeProject) -> None:
    project = make_project({
        "udfs/typed.py": TYPED_UDFS,
        "models/typed.sql": """\
            {{ config(materialized='table') }}
            select id, as_shape('s' || id, id) as shape, words(txt) as words, maybe_len(txt) as n,
                   flags(id, 0.75, true) as flag
            from (values (1, 'a b c'), (2, null), (3, 'hello')) t(id, txt)
            """,
    })
    project.ok("run")
    types = dict(project.rows("select column_name, data_type from information_schema.columns "
                              "where table_name = 'typed'"))
    assert types["shape"] == ('STRUCT("name" VARCHAR, corners STRUCT(x BIGINT, y DOUBLE)[], '
                              'centre STRUCT(x BIGINT, y DOUBLE), note VARCHAR, status VARCHAR, '
                              '"error" VARCHAR, raw_response VARCHAR)')
    assert (types["words"], types["n"], types["flag"]) == ("VARCHAR[]", "BIGINT", "BOOLEAN")
    rows = project.rows("select id, shape, words, n, flag from typed order by id")
    assert rows[0] == (1, {"name": "s1", "corners": [{"x": 0, "y": 0.0}], "centre": {"x": 1, "y": 0.5},
                           "note": None, "status": "ok", "error": None, "raw_response": None},
                       ["a", "b", "c"], 5, False)
    # Optional arguments receive NULL as None (the function runs), Optional results come back as NULL.
    assert rows[1][1]["note"] == "even" and rows[1][1]["corners"][1] == {"x": 1, "y": 0.5}
    assert rows[1][2:] == ([], None, True)
    assert rows[2][2:] == (["hello"], 5, True)
    assert call_count(project, "words") == 3
    # Nested fields are addressable in SQL like any struct.
    assert project.rows("select shape.centre.x, shape.corners[1].y from typed where id = 3") == [(3, 0.0)]


def test_pydantic_argument_is_passed_as_a_model_instance(make_project: MakeProject) -> None:
    project = make_project({
        "udfs/shapes.py": udf_module('''\
            from pydantic import BaseModel

            from dataproj import udf


            class Point(BaseModel):
                x: int
                y: int


            @udf
            def norm1(p: Point) -> int:
                log("norm1", type(p).__name__)
                return abs(p.x) + abs(p.y)
            '''),
    })
    result = project.cli("query", "select norm1({'x': -2, 'y': 3}) as n", "--format", "json")
    assert result.code == 0, result.text
    assert result.json_lines() == [{"n": 5}]
    assert calls(project, "norm1") == [["Point"]]


REGISTERED_UDFS = udf_module('''\
    from dataproj import udf


    @udf
    def twice(x: int) -> int:
        log("twice", x)
        return 2 * x
''')


def test_functions_are_registered_on_every_cursor_and_in_query(make_project: MakeProject) -> None:
    models = {f"models/m{i}.sql": f"{{{{ config(materialized='table') }}}}\nselect twice({i}) as v\n"
              for i in range(6)}
    project = make_project({
        "udfs/registered.py": REGISTERED_UDFS,
        **models,
        "models/downstream.sql": "select twice(v) as v from {{ ref('m1') }}\n",
        "models/py_model.py": "def model(ctx):\n    return ctx.sql('select twice(21) as v')\n",
    }, project_yml="name: demo\nthreads: 4\n")
    project.ok("run")
    assert project.statuses() == {**{f"m{i}": "success" for i in range(6)}, "downstream": "success",
                                  "py_model": "success"}
    assert [project.rows(f"select v from m{i}")[0][0] for i in range(6)] == [0, 2, 4, 6, 8, 10]
    assert project.rows("select v from py_model") == [(42,)]
    assert sorted(int(x) for x, in calls(project, "twice")) == [0, 1, 2, 3, 4, 5, 21]
    # `downstream` is a view that calls the function: only a cursor with it registered can read it.
    result = project.cli("query", "select v, twice(v) as w from downstream", "--format", "json")
    assert result.code == 0, result.text
    assert result.json_lines() == [{"v": 4, "w": 8}]
