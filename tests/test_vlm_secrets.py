"""API keys reach the server and nowhere else: after a run (--log-format json), an export and queries, no
file of the project (warehouse, target, exports, cache, state) and no output of any command holds a key,
whether it came from OPENAI_API_KEY, GOOGLE_API_KEY or a backend's `_api_key` in project.yml."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from conftest import MakeProject, subprocess_env
from vlm_support import GOOGLE_SECRET, LABEL_ASSET, OPENAI_SECRET, copy_scene, label_model, project_yml

from dataproj.vlm.local_server import LocalVLMServer, ParsedRequest

INLINE_SECRET = "sk-inline-INLINE-5d21a0c4-do-not-leak"
SECRETS = (OPENAI_SECRET, GOOGLE_SECRET, INLINE_SECRET)


def _forms(secret: str) -> list[bytes]:
    """The key as it could be written: UTF-8, UTF-16, base64, and its distinctive middle alone."""
    middle = secret.split("-")[3]
    return [secret.encode(), secret.encode("utf-16-le"), base64.b64encode(secret.encode()), middle.encode()]


def _leaks(data: bytes) -> list[str]:
    return [secret for secret in SECRETS if any(form in data for form in _forms(secret))]


def _answer(request: ParsedRequest) -> str:
    if "expert judge" in request.system:
        return '{"winner": "image_a", "reasoning": "fine"}'
    if request.texts[0] == "Note: bad":
        return "this is not JSON"  # a failed row: its error and raw response are stored too
    return '{"label": "cat", "count": 2}'


def _dump_duckdb(path: Path) -> str:
    """Every value of every table and view in a DuckDB file, as text (compressed storage hides nothing)."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = con.execute("select database_name, schema_name, table_name from duckdb_tables() "
                             "union all select database_name, schema_name, view_name from duckdb_views() "
                             "where not internal").fetchall()
        text = []
        for database, schema, table in tables:
            text.append(repr(con.execute(f'select * from "{database}"."{schema}"."{table}"').fetchall()))
        return "\n".join(text)
    finally:
        con.close()


def test_api_keys_never_leak(make_project: MakeProject, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_SECRET)
    monkeypatch.setenv("GOOGLE_API_KEY", GOOGLE_SECRET)
    outputs: list[str] = []
    with LocalVLMServer(_answer, cached_tokens=2) as server:
        inline = (f'gx: {{type: openai, base_url: "{server.openai_base_url}", model: gx-model, '
                  f'_api_key: "{INLINE_SECRET}", api_key_env: NO_SUCH_VARIABLE}}')
        project = make_project({
            "project.yml": project_yml(server, backends=inline, extra=(
                "prices:\n  gpt-test: {input: 1, output: 1}\n  gem-test: {input: 1, output: 1}\n")),
            "prompts/test/label/v1.yaml": LABEL_ASSET,
            "models/a.sql": label_model(config="export=['jsonl', 'parquet'], failure_budget=1",
                                        rows=[("good", "images/scene.png"), ("bad", "images/scene.png")]),
            "models/b.sql": label_model("label_image__gm(note, image)", config="export=['jsonl']"),
            "models/c.sql": """\
                {{ config(materialized='table', export=['jsonl']) }}
                select pairwise_judge__gx('add a red circle', 'images/scene.png', 'images/scene.png',
                                          'images/scene.png') as j
                """,
        })
        copy_scene(project)
        # the CLI, run as its own process (all it prints, from any library, is captured) for each command
        commands = [["run", "--log-format", "json"], ["export", "--format", "jsonl", "parquet"],
                    ["query", "select * from dataproj_calls", "--format", "json"]]
        script = ("import sys\nfrom dataproj.cli import main\n"
                  f"for args in {commands!r}:\n"
                  f"    code = main(args + ['--project-dir', {str(project.root)!r}])\n"
                  "    print(f'exit {code}', flush=True)\n")
        done = subprocess.run([sys.executable, "-c", script], env=subprocess_env(), capture_output=True, timeout=120)
        outputs += [done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")]
        assert done.returncode == 0 and outputs[0].count("exit 0") == len(commands), outputs
        for args in (["query", "select * from a, b, c", "--format", "csv"], ["show", "a"], ["ls", "--output", "json"],
                     ["cache", "stats"], ["compile"]):
            result = project.ok(*args)
            outputs += [result.out, result.err]
        received = {request.api_key for request in server.requests}

    # the keys did reach the server, each from where it was configured
    assert received == set(SECRETS)
    # the run really wrote what is searched
    files = sorted(p for p in project.root.rglob("*") if p.is_file())
    names = {p.relative_to(project.root).as_posix() for p in files}
    assert {"warehouse/dataproj.duckdb", "warehouse/cache/calls.duckdb", "warehouse/target/run_results.json",
            "warehouse/target/manifest.json", "warehouse/exports/a.jsonl", "warehouse/exports/a.parquet",
            "warehouse/exports/c.jsonl"} <= names
    assert '"status":"failed"' in project.path("warehouse/exports/a.jsonl").read_text()  # a failed row too
    assert any('"event": "node_finished"' in out for out in outputs)  # JSON logs were captured
    # the search finds a key where one is meant to be
    assert _leaks(project.path("project.yml").read_bytes()) == [INLINE_SECRET]

    leaks = {rel: found for rel in sorted(names - {"project.yml"})
             if (found := _leaks(project.path(rel).read_bytes()))}
    assert leaks == {}
    for database in ("warehouse/dataproj.duckdb", "warehouse/cache/calls.duckdb"):
        dump = _dump_duckdb(project.path(database))
        assert "cat" in dump and "this is not JSON" in dump
        assert _leaks(dump.encode()) == [], database
    parquet = duckdb.sql(f"select * from read_parquet('{project.path('warehouse/exports/a.parquet')}')").fetchall()
    assert _leaks(repr(parquet).encode()) == []
    assert [(i, _leaks(out.encode())) for i, out in enumerate(outputs) if _leaks(out.encode())] == []
