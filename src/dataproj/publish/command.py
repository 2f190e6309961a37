"""`dataproj publish hf` and `dataproj publish trec`: the built benchmark as a Hugging Face dataset or TREC files."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..report.built import built_project
from . import huggingface, trec


@dataclass(frozen=True)
class HubPublication:
    out_dir: Path
    rows: int
    failed_rows: int
    missing_images: int
    repo_id: str | None = None
    commit_url: str | None = None
    files: list[str] = field(default_factory=list)


def publish_hf(project_dir: Path, cli_vars: dict[str, Any] | None = None, *, repo_id: str | None = None,
               private: bool | None = None, out_dir: Path | None = None) -> HubPublication:
    """Build and save the dataset (and its card); push it when a repo id is given (HF_TOKEN is then required)."""
    with built_project(project_dir, cli_vars) as built:
        settings = huggingface.HubSettings.from_vars(built.imsearch)
        target = repo_id or settings.repo_id
        token = huggingface.hf_token() if target else None
        rows = huggingface.benchmark_rows(built.con, built.root)
        quality = _records(built.con, "imsearch_quality")
        scorers = [r[0] for r in _rows(built.con, "select distinct similarity_scorer from qrels_with_score "
                                                  "order by 1")]
    huggingface.quiet_progress_bars()
    dataset = huggingface.build_dataset(rows.rows)
    card = huggingface.dataset_card(dataset, settings, rows, quality, scorers)
    out = out_dir or built.exports / "hf_dataset"
    huggingface.save(dataset, card, rows, out)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    if not target:
        return HubPublication(out, len(rows.rows), rows.failed_rows, rows.missing_images, files=files)
    extra = {f"summary/{p.name}": p for p in sorted((built.exports / "summary").glob("*")) if p.is_file()}
    if (built.exports / "annotations.jsonl").is_file():
        extra["annotations.jsonl"] = built.exports / "annotations.jsonl"
    commit = huggingface.push(out, target, token=token or "",
                              private=settings.private if private is None else private, extra_files=extra)
    return HubPublication(out, len(rows.rows), rows.failed_rows, rows.missing_images, target,
                          str(commit.commit_url), files)


def publish_trec(project_dir: Path, cli_vars: dict[str, Any] | None = None,
                 out_dir: Path | None = None) -> list[trec.TrecWrite]:
    """qrels.trec and qrels_with_score.run in the exports folder (or out_dir)."""
    with built_project(project_dir, cli_vars) as built:
        column = (built.imsearch.get("similarity") or {}).get("column", "similarity_score")
        return trec.export_trec(built.con, out_dir or built.exports, column)


def _rows(con: Any, sql: str) -> list[tuple[Any, ...]]:
    import duckdb

    try:
        return con.execute(sql).fetchall()
    except duckdb.CatalogException:  # the table is not built: nothing to report
        return []


def _records(con: Any, table: str) -> list[dict[str, Any]]:
    import duckdb

    try:
        cursor = con.execute(f'select * from main."{table}"')
    except duckdb.CatalogException:
        return []
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
