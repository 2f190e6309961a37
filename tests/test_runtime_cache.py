"""The durable call cache: what a key is made of, reruns that pay nothing, images keyed by content,
--refresh-cache, and the cache outliving the warehouse."""

from __future__ import annotations

import hashlib
import shutil

from conftest import MakeProject, ProjectDir
from runtime_support import cache_rows, call_count, calls, ledger, node_result, udf_module, write_png

MIXED_UDFS = udf_module('''\
    from dataproj import udf


    @udf(cached=True)
    def label(i: int, tags: list[str] | None, weight: float | None) -> str:
        log("label", i)
        return f"{i}:{'+'.join(tags or [])}:{weight}"


    @udf(cached=True, kind="io")
    def remote(i: int) -> int:
        log("remote", i)
        return i * 3


    @udf(cached=True, kind="batch", batch_size=16)
    def bulk(xs: list[int]) -> list[int]:
        log("bulk", len(xs))
        return [x + 1 for x in xs]
''')

MIXED_MODEL = """\
    {{ config(materialized='table') }}
    select i,
           label(i % 50, case when i % 3 = 0 then null else ['a', (i % 7)::varchar] end,
                 case when i % 5 = 0 then null else (i % 50) / 4 end) as l,
           remote(i % 40) as r,
           bulk(i % 30) as b
    from range(5000) t(i)
    """


def test_a_rerun_makes_no_calls(make_project: MakeProject) -> None:
    project = make_project({"udfs/mixed.py": MIXED_UDFS, "models/mixed.sql": MIXED_MODEL})
    project.ok("run")
    first = {name: call_count(project, name) for name in ("label", "remote", "bulk")}
    assert first["remote"] == 40
    assert sum(int(n) for n, in calls(project, "bulk")) == 30  # each distinct input once across all batches
    labels_paid = len(set(project.rows("select distinct l from mixed")))
    assert first["label"] == labels_paid
    before = project.rows("select * from mixed order by i")
    ledger_rows = len(ledger(project))
    assert ledger_rows > 0

    project.ok("run")
    assert {name: call_count(project, name) for name in ("label", "remote", "bulk")} == first
    assert project.rows("select * from mixed order by i") == before
    assert len(ledger(project)) == ledger_rows  # cache hits are not in the call ledger
    result = node_result(project, "mixed")
    assert (result["calls"], result["cache_hits"], result["failed_calls"]) == (0, 3 * 5000, 0)


IMAGE_UDFS = udf_module('''\
    from dataproj import ImagePath, udf


    @udf(cached=True)
    def image_bytes(path: ImagePath, scale: int) -> int:
        log("image_bytes", path)
        with open(path, "rb") as handle:
            return len(handle.read()) * scale
''')


def image_project(make_project: MakeProject) -> ProjectDir:
    project = make_project({
        "udfs/images.py": IMAGE_UDFS,
        "models/sized.sql": "{{ config(materialized='table') }}\n"
                            "select image_bytes('{{ var(\"img\") }}', 2) as n\n",
    })
    write_png(project.path("images/a.png"))
    return project


def test_an_image_argument_is_keyed_by_content_not_path(make_project: MakeProject) -> None:
    project = image_project(make_project)
    original = project.path("images/a.png")
    project.ok("run", "--vars", "{img: images/a.png}")
    assert [p for p, in calls(project, "image_bytes")] == [str(original)]  # relative to the project root
    expected = 2 * original.stat().st_size
    assert project.rows("select n from sized") == [(expected,)]
    # The cache stores the file's content hash in place of its path.
    digest = hashlib.sha256(original.read_bytes()).hexdigest()
    assert [(r["in_path"], r["in_scale"], r["value"]) for r in cache_rows(project, "image_bytes")] == [
        (digest, 2, expected)]

    project.path("elsewhere").mkdir()
    shutil.copyfile(original, project.path("elsewhere/copy.png"))
    project.ok("run", "--vars", "{img: elsewhere/copy.png}")
    assert call_count(project, "image_bytes") == 1  # same bytes, other path: a cache hit
    assert project.rows("select n from sized") == [(expected,)]

    write_png(project.path("elsewhere/copy.png"), size=(9, 9))  # new content at the same path
    project.ok("run", "--vars", "{img: elsewhere/copy.png}")
    assert call_count(project, "image_bytes") == 2
    assert project.rows("select n from sized") == [(2 * project.path("elsewhere/copy.png").stat().st_size,)]
    project.ok("run", "--vars", "{img: images/a.png}")
    assert call_count(project, "image_bytes") == 2  # the original content is still cached


def test_a_missing_image_given_to_a_cached_function_fails_only_its_row(make_project: MakeProject) -> None:
    project = make_project({
        "udfs/images.py": IMAGE_UDFS,
        "models/sized.sql": "{{ config(materialized='table') }}\nselect p, image_bytes(p, 1) as n\n"
                            "from (values ('images/a.png'), ('images/gone.png')) t(p)\n",
    })
    write_png(project.path("images/a.png"))
    project.ok("run")
    assert project.rows("select p, n from sized order by p") == [
        ("images/a.png", project.path("images/a.png").stat().st_size), ("images/gone.png", None)]
    assert node_result(project, "sized")["failed_calls"] == 1


def versioned_udfs(version: str, model: str, scale: int = 1) -> str:
    return udf_module(f'''\
        from dataproj import udf


        @udf(cached=True, version="{version}", config={{"model": "{model}", "temperature": 0}})
        def caption(i: int) -> str:
            log("caption", i)
            return "{model}/v{version}/" + str(i * {scale})


        @udf(cached=True)
        def steady(i: int) -> int:
            log("steady", i)
            return i
        ''')


VERSIONED_MODEL = "{{ config(materialized='table') }}\nselect i, caption(i) as c, steady(i) as s from range(5) t(i)\n"


def test_a_new_version_or_config_recomputes_and_the_old_entries_stay(make_project: MakeProject) -> None:
    project = make_project({"udfs/versioned.py": versioned_udfs("1", "small"), "models/captions.sql": VERSIONED_MODEL})
    project.ok("run")
    assert (call_count(project, "caption"), call_count(project, "steady")) == (5, 5)

    # The body changed but neither version nor config did: the cached answers stand (by design).
    project.write({"udfs/versioned.py": versioned_udfs("1", "small", scale=2)})
    project.ok("run")
    assert call_count(project, "caption") == 5
    assert project.rows("select c from captions where i = 3") == [("small/v1/3",)]

    project.write({"udfs/versioned.py": versioned_udfs("2", "small")})
    project.ok("run")
    assert (call_count(project, "caption"), call_count(project, "steady")) == (10, 5)
    assert project.rows("select c from captions where i = 3") == [("small/v2/3",)]

    project.write({"udfs/versioned.py": versioned_udfs("2", "large")})
    project.ok("run")
    assert (call_count(project, "caption"), call_count(project, "steady")) == (15, 5)
    assert project.rows("select c from captions where i = 3") == [("large/v2/3",)]

    # Back to the first version and config: its results were never thrown away.
    project.write({"udfs/versioned.py": versioned_udfs("1", "small")})
    project.ok("run")
    assert (call_count(project, "caption"), call_count(project, "steady")) == (15, 5)
    assert project.rows("select c from captions where i = 3") == [("small/v1/3",)]


GENERATION_UDFS = udf_module('''\
    from dataproj import udf

    _GEN = _CALLS.parent / "generation.txt"


    def generation():
        return _GEN.read_text().strip() if _GEN.exists() else "1"


    @udf(cached=True)
    def stamp(i: int) -> str:
        log("stamp", i)
        return f"{i}@{generation()}"


    @udf(cached=True, kind="io")
    def other_stamp(i: int) -> str:
        log("other_stamp", i)
        return f"{i}@{generation()}"
''')


def test_refresh_cache_recomputes_all_or_the_named_functions(make_project: MakeProject) -> None:
    project = make_project({
        "udfs/generations.py": GENERATION_UDFS,
        "models/stamps.sql": "{{ config(materialized='table') }}\n"
                             "select i, stamp(i) as a, other_stamp(i) as b from range(4) t(i)\n",
    })
    project.ok("run")
    project.write({"generation.txt": "2"})
    project.ok("run")
    assert (call_count(project, "stamp"), call_count(project, "other_stamp")) == (4, 4)
    assert project.rows("select distinct a[-1:], b[-1:] from stamps") == [("1", "1")]

    project.ok("run", "--refresh-cache", "STAMP")  # SQL names are case-insensitive
    assert (call_count(project, "stamp"), call_count(project, "other_stamp")) == (8, 4)
    assert project.rows("select distinct a[-1:], b[-1:] from stamps") == [("2", "1")]
    assert node_result(project, "stamps")["calls"] == 4

    # The refreshed result is the one later runs use.
    project.write({"generation.txt": "3"})
    project.ok("run")
    assert (call_count(project, "stamp"), call_count(project, "other_stamp")) == (8, 4)
    assert project.rows("select distinct a[-1:], b[-1:] from stamps") == [("2", "1")]

    project.ok("run", "--refresh-cache")
    assert (call_count(project, "stamp"), call_count(project, "other_stamp")) == (12, 8)
    assert project.rows("select distinct a[-1:], b[-1:] from stamps") == [("3", "3")]

    project.ok("run", "--refresh-cache", "other_stamp", "stamp")
    assert (call_count(project, "stamp"), call_count(project, "other_stamp")) == (16, 12)


def test_refresh_cache_pays_each_input_once_per_run(make_project: MakeProject) -> None:
    project = make_project({
        "udfs/generations.py": GENERATION_UDFS,
        "models/many.sql": "{{ config(materialized='table') }}\nselect stamp(i % 3) as a from range(10000) t(i)\n",
    })
    project.ok("run")
    assert call_count(project, "stamp") == 3
    project.ok("run", "--refresh-cache")
    assert call_count(project, "stamp") == 6


def test_the_cache_outlives_the_warehouse(make_project: MakeProject) -> None:
    project = make_project({"udfs/generations.py": GENERATION_UDFS,
                            "models/stamps.sql": "{{ config(materialized='table') }}\n"
                                                 "select i, stamp(i) as a from range(3) t(i)\n"})
    project.ok("run")
    project.ok("clean", "--warehouse")
    assert not project.warehouse.exists()
    project.ok("run")
    assert call_count(project, "stamp") == 3
    assert node_result(project, "stamps")["cache_hits"] == 3
    assert project.rows("select a from stamps order by i") == [("0@1",), ("1@1",), ("2@1",)]


WEIGHTS_UDFS = udf_module('''\
    from dataproj import udf

    _WEIGHTS = _CALLS.parent / "weights.bin"


    @udf(cached=True, kind="batch", store_if=lambda score: score is not None)
    def score(xs: list[int]) -> list[float | None]:
        """NULL for even inputs while the weights are missing (not an answer worth keeping); odd ones fail."""
        log("score", *xs)
        if any(x % 4 == 1 for x in xs):
            raise ValueError("broken input")
        return [x / 10 if _WEIGHTS.exists() or x % 2 else None for x in xs]
''')


def test_results_store_if_rejects_are_returned_but_computed_again_later(make_project: MakeProject) -> None:
    project = make_project({
        "udfs/weights.py": WEIGHTS_UDFS,
        "models/scores.sql": "{{ config(materialized='table', failure_budget=0.5) }}\n"
                             "select i, score(i) as s from range(8) t(i)\n",
    })
    called = lambda: sorted(int(x) for line in calls(project, "score") for x in line)  # noqa: E731
    project.ok("run")
    assert project.rows("select i, s from scores order by i") == [
        (0, None), (1, None), (2, None), (3, 0.3), (4, None), (5, None), (6, None), (7, 0.7)]
    first = called()
    assert set(first) == set(range(8))
    # Stored: the odd results and the failures (1 and 5); not the NULLs of 0, 2, 4, 6.
    assert sorted(r["in_xs"] for r in cache_rows(project, "score")) == [1, 3, 5, 7]

    project.ok("run")  # only the rejected results are computed again
    assert sorted(called()) == sorted(first + [0, 2, 4, 6])

    project.write({"weights.bin": "ok"})
    project.ok("run")
    assert project.rows("select i, s from scores where i % 2 = 0 order by i") == [
        (0, 0.0), (2, 0.2), (4, 0.4), (6, 0.6)]
    before = len(called())
    project.ok("run")
    assert len(called()) == before  # everything is stored now: no call
    assert sorted(r["in_xs"] for r in cache_rows(project, "score")) == [0, 1, 2, 3, 4, 5, 6, 7]
