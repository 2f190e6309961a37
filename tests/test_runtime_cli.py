"""The runtime from the command line: `dataproj cache stats|clear`, built-in image functions in `dataproj query`,
and clear errors for broken or clashing udfs/*.py."""

from __future__ import annotations

import hashlib
import re

import pytest
from conftest import MakeProject, ProjectDir
from runtime_support import call_count, node_result, udf_module, write_png

CACHED_UDFS = udf_module('''\
    from dataproj import udf


    @udf(cached=True)
    def alpha(i: int) -> int:
        log("alpha", i)
        if i == 0:
            raise ZeroDivisionError("no zero")
        return i


    @udf(cached=True, kind="io")
    def beta(i: int) -> str:
        log("beta", i)
        return str(i)
''')


def cached_project(make_project: MakeProject) -> ProjectDir:
    return make_project({
        "udfs/cached.py": CACHED_UDFS,
        "models/both.sql": "{{ config(materialized='table') }}\n"
                           "select alpha(i) as a, beta(i) as b from range(5) t(i)\n",
    })


def stats_rows(project: ProjectDir) -> dict[str, list[str]]:
    """`dataproj cache stats` as {function: [cached results, failed, ledger calls, cost usd]}."""
    out = project.ok("cache", "stats").out
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃|]", line) if c.strip()]
        if len(cells) == 5 and cells[0] != "function":
            rows[cells[0]] = cells[1:]
    return rows


def test_cache_stats_and_cache_clear_one_function_or_all(make_project: MakeProject) -> None:
    project = cached_project(make_project)
    assert stats_rows(project) == {}  # nothing cached yet
    project.ok("run")
    stats = stats_rows(project)
    assert {name: cells[:2] for name, cells in stats.items()} == {"alpha": ["5", "1"], "beta": ["5", "0"]}
    assert stats["beta"][2] == "5"

    result = project.ok("cache", "clear", "alpha")
    assert "removed 5 cached results of alpha" in result.out
    assert set(stats_rows(project)) == {"beta"}
    project.ok("run")
    assert (call_count(project, "alpha"), call_count(project, "beta")) == (10, 5)
    assert node_result(project, "both")["cache_hits"] == 5

    assert "removed 10 cached results" in project.ok("cache", "clear").out
    assert stats_rows(project) == {}
    project.ok("run")
    assert (call_count(project, "alpha"), call_count(project, "beta")) == (15, 10)


def test_cache_clear_of_an_unknown_function_removes_nothing(make_project: MakeProject) -> None:
    project = cached_project(make_project)
    project.ok("run")
    assert "removed 0 cached results of alph" in project.ok("cache", "clear", "alph").out
    assert {name: cells[0] for name, cells in stats_rows(project).items()} == {"alpha": "5", "beta": "5"}


def image_query(project: ProjectDir, sql: str) -> list[dict]:
    result = project.cli("query", sql, "--format", "json")
    assert result.code == 0, result.text
    return result.json_lines()


def test_image_info_and_file_hash_in_query(make_project: MakeProject) -> None:
    project = make_project()
    png = write_png(project.path("images/cat.png"), size=(12, 7))
    digest = hashlib.sha256(png.read_bytes()).hexdigest()
    rows = image_query(project, "select image_info('images/cat.png') as info, file_hash('images/cat.png') as h, "
                                f"image_info('{png}').width as w")
    assert rows == [{"info": {"width": 12, "height": 7, "mime_type": "image/png", "content_hash": digest,
                              "status": "ok", "error": None, "raw_response": None}, "h": digest, "w": 12}]


def test_image_info_on_a_missing_or_corrupt_file_is_a_failed_row_naming_the_file(make_project: MakeProject) -> None:
    project = make_project()
    write_png(project.path("images/ok.png"))
    project.write({"images/garbage.png": b"this is not a png"})
    whole = write_png(project.path("images/whole.png"), size=(64, 64)).read_bytes()
    project.write({"images/truncated.png": whole[: len(whole) // 2]})
    rows = image_query(project, """
        select p, image_info(p) as info, file_hash(p) as h
        from (values ('images/ok.png'), ('images/gone.png'), ('images/garbage.png'), ('images/truncated.png')) t(p)
        order by p""")
    by_path = {r["p"]: r for r in rows}
    assert by_path["images/ok.png"]["info"]["status"] == "ok"
    for name in ("gone.png", "garbage.png", "truncated.png"):
        info = by_path[f"images/{name}"]["info"]
        assert info["status"] == "failed"
        assert info["width"] is None and info["content_hash"] is None
        assert name in info["error"] and "ImageError" in info["error"]
    assert "missing file" in by_path["images/gone.png"]["info"]["error"]
    assert by_path["images/gone.png"]["h"] is None  # file_hash of a missing file: NULL
    assert by_path["images/garbage.png"]["h"] == hashlib.sha256(b"this is not a png").hexdigest()


def test_image_info_failures_in_a_model_do_not_fail_the_node(make_project: MakeProject) -> None:
    project = make_project({
        "models/facts.sql": "{{ config(materialized='table') }}\n"
                            "select p, image_info(p) as info from (values ('a.png'), ('missing.png')) t(p)\n",
    })
    write_png(project.path("a.png"), size=(3, 4))
    project.ok("run")
    assert project.rows("select p, info.status, info.width from facts order by p") == [
        ("a.png", "ok", 3), ("missing.png", "failed", None)]
    assert node_result(project, "facts")["failed_calls"] == 1


@pytest.mark.parametrize(("source", "line", "message"), [
    ("from dataproj import udf\n\nimport not_a_module_xyz\n", 3,
     "ModuleNotFoundError: No module named 'not_a_module_xyz'"),
    ("from dataproj import udf\n\n\n@udf\ndef f(x: int) -> int:\n    return x\n\n\nCONFIG = 1 / 0\n", 9,
     "ZeroDivisionError: division by zero"),
    ("from dataproj import udf\n\ndef broken(:\n    pass\n", 3, "SyntaxError"),
    ("from dataproj import udf\n\n\n@udf\ndef f(x: set[int]) -> int:\n    return 1\n", 4, "no SQL equivalent"),
])
def test_a_udf_module_that_fails_to_import_names_its_file_and_line(make_project: MakeProject, source: str,
                                                                    line: int, message: str) -> None:
    project = make_project({
        "udfs/good.py": "from dataproj import udf\n\n\n@udf\ndef fine(x: int) -> int:\n    return x\n",
        "udfs/broken.py": source,
        "udfs/_private_helpers.py": "import also_not_a_module\n",  # underscore files are not UDF modules
        "models/m.sql": "select 1 as x\n",
    })
    for command in (["run"], ["query", "select 1"]):
        result = project.cli(*command)
        assert result.code == 2, result.text
        assert f"udfs/broken.py:{line}: cannot import UDF module" in result.err
        assert message in result.err
        assert "Traceback" not in result.err


def test_two_functions_with_the_same_name_are_an_error_naming_both(make_project: MakeProject) -> None:
    project = make_project({
        "udfs/first.py": "from dataproj import udf\n\n\n@udf\ndef clean(x: str) -> str:\n    return x\n",
        "udfs/second.py": "from dataproj import udf\n\n\n\n@udf(name='CLEAN')\ndef tidy(x: str) -> str:\n"
                          "    return x\n",
        "models/m.sql": "select clean('x') as x\n",
    })
    result = project.cli("run")
    assert result.code == 2
    assert "SQL function 'CLEAN' is defined twice" in result.err
    assert f"{project.path('udfs/first.py')}:4" in result.err
    assert f"{project.path('udfs/second.py')}:5" in result.err


def test_a_function_clashing_with_a_built_in_is_an_error_naming_both(make_project: MakeProject) -> None:
    project = make_project({
        "udfs/mine.py": "from dataproj import udf\n\n\n@udf\ndef image_info(p: str) -> str:\n    return p\n",
    })
    result = project.cli("query", "select 1")
    assert result.code == 2
    assert "SQL function 'image_info' is defined twice" in result.err
    assert "dataproj/runtime/builtins.py" in result.err and f"{project.path('udfs/mine.py')}:4" in result.err


def test_a_function_named_like_a_sql_keyword_is_a_clear_error(make_project: MakeProject) -> None:
    project = make_project({
        "udfs/words.py": "from dataproj import udf\n\n\n@udf\ndef describe(x: int) -> str:\n    return str(x)\n",
    })
    result = project.cli("query", "select 1")
    assert result.code == 2, result.text
    assert "describe" in result.err and "udfs/words.py" in result.err
