"""4. Seeds: CSV, JSON, JSONL and Parquet files load as tables, with per-seed column types; image folders.

Malformed seed rows are covered in test_engine_errors.py.
"""

from __future__ import annotations

import hashlib
import io

import pyarrow as pa
import pyarrow.parquet as pq
from conftest import MakeProject, ProjectDir


def _parquet_bytes() -> bytes:
    table = pa.table({"sku": ["a-1", "b-2"], "price": pa.array([9.5, 20.0], pa.float64()),
                      "sizes": [[36, 38], [40]]})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def _types(project: ProjectDir, table: str) -> dict[str, str]:
    return {name: kind for name, kind, *_ in project.rows(f'describe "{table}"')}


def test_csv_json_jsonl_and_parquet_seeds_load_as_tables(make_project: MakeProject) -> None:
    project = make_project({
        "seeds/people.csv": "id,name,score\n1,Ann,3.5\n2,Bob,4\n",
        "seeds/cities.json": '[{"city": "Oslo", "pop": 700000}, {"city": "Rome", "pop": 2800000}]\n',
        "seeds/events.jsonl": ('{"id": 1, "tags": ["a", "b"], "meta": {"k": 1, "v": "x"}}\n'
                               '{"id": 2, "tags": [], "meta": {"k": 2, "v": "y"}}\n'),
        "seeds/products.parquet": _parquet_bytes(),
        "models/unused.sql": "select 1 as x\n",
    })
    result = project.ok("seed")
    assert "people" in result.out
    # `dataproj seed` loads the seeds and nothing else.
    assert project.relations() == {"cities": "BASE TABLE", "events": "BASE TABLE", "people": "BASE TABLE",
                                   "products": "BASE TABLE"}
    assert project.rows("select * from people order by id") == [(1, "Ann", 3.5), (2, "Bob", 4.0)]
    assert _types(project, "people") == {"id": "BIGINT", "name": "VARCHAR", "score": "DOUBLE"}
    assert project.rows("select * from cities order by city") == [("Oslo", 700000), ("Rome", 2800000)]
    assert project.rows("select * from events order by id") == [
        (1, ["a", "b"], {"k": 1, "v": "x"}), (2, [], {"k": 2, "v": "y"})]
    assert project.rows("select * from products order by sku") == [("a-1", 9.5, [36, 38]), ("b-2", 20.0, [40])]
    assert {r["name"]: r["rows"] for r in project.run_results()["results"]} == {
        "people": 2, "cities": 2, "events": 2, "products": 2}


def test_seed_exports(make_project: MakeProject) -> None:
    project = make_project({"seeds/people.csv": "id,name\n1,Ann\n"},
                           project_yml="name: s\nseeds:\n  +export: [jsonl]\n")
    project.ok("seed")
    assert project.path("warehouse/exports/people.jsonl").read_text().strip() == '{"id":1,"name":"Ann"}'


def test_reseeding_replaces_the_table_with_the_file_contents(make_project: MakeProject) -> None:
    project = make_project({"seeds/people.csv": "id,name\n1,Ann\n2,Bob\n"})
    project.ok("seed")
    project.write({"seeds/people.csv": "id,name\n3,Cy\n"})
    project.ok("seed")
    assert project.rows("select * from people") == [(3, "Cy")]


def test_column_types_from_project_yml(make_project: MakeProject) -> None:
    project = make_project({"seeds/zips.csv": "zip,amount,day\n01234,1.5,2024-01-02\n98765,2.25,2024-02-03\n"},
                           project_yml="""\
        name: s
        seeds:
          zips:
            +column_types:
              zip: VARCHAR
              amount: DECIMAL(6,2)
        """)
    project.ok("seed")
    assert _types(project, "zips") == {"zip": "VARCHAR", "amount": "DECIMAL(6,2)", "day": "DATE"}
    assert project.rows("select zip, cast(amount as varchar) from zips order by zip") == [
        ("01234", "1.50"), ("98765", "2.25")]


def test_column_types_from_a_seed_properties_file(make_project: MakeProject) -> None:
    project = make_project({
        "seeds/codes.csv": "code,label\n007,bond\n042,answer\n",
        "seeds/schema.yml": """\
            seeds:
              - name: codes
                description: Codes with leading zeros.
                config:
                  column_types: {code: VARCHAR}
                columns:
                  - name: code
                    tests: [unique]
            """,
    })
    project.ok("build")
    assert project.rows("select code from codes order by code") == [("007",), ("042",)]
    assert project.statuses() == {"codes": "success", "unique_codes_code": "pass"}
    assert project.manifest()["nodes"]["seed.codes"]["description"] == "Codes with leading zeros."


PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(40))
JPG = b"\xff\xd8\xff\xe0" + b"jpeg-bytes" * 5


def test_image_folder_seed_gives_one_row_per_file(make_project: MakeProject) -> None:
    project = make_project({
        "seeds/photos/a.png": PNG,
        "seeds/photos/sub/b.jpg": JPG,
        "seeds/photos/notes.txt": "not an image\n",
        "models/photo_count.sql": "select count(*) as n, sum(size_bytes) as total from {{ ref('photos') }}\n",
    }, project_yml="name: img\nseeds:\n  photos:\n    +format: images\n")
    project.ok("build")
    rows = project.rows("select relative_path, bytes, content_hash from photos order by relative_path")
    assert rows == [
        ("a.png", PNG, hashlib.sha256(PNG).hexdigest()),
        ("sub/b.jpg", JPG, hashlib.sha256(JPG).hexdigest()),
    ]
    assert project.rows("select n, total from photo_count") == [(2, len(PNG) + len(JPG))]
    assert project.manifest()["nodes"]["seed.photos"]["language"] == "images"
