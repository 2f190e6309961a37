"""TREC files of the image-search benchmark: qrels (`qid 0 docid rel`) and a run of the similarity scores
(`qid Q0 docid rank score tag`), as ir_measures, pytrec_eval and trec_eval read them.

TREC fields are separated by whitespace, so an id that contains whitespace cannot be written: those rows are
left out and counted, never silently mangled.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

QRELS_SQL = """
select query_id, image_id, relevance_label
from {qrels}
where relevance_label is not null
order by query_id, candidate_rank
"""

RUN_SQL = """
select query_id, image_id, "{column}" as score, similarity_scorer
from {table}
where "{column}" is not null
order by query_id, "{column}" desc, candidate_rank
"""


@dataclass(frozen=True)
class TrecWrite:
    path: Path
    lines: int
    skipped: list[str]  # ids that contain whitespace


def _has_space(*values: str) -> bool:
    return any(any(c.isspace() for c in v) or not v for v in values)


def _write_lines(path: Path, lines: Iterable[str]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    count = 0
    with partial.open("w", encoding="utf-8") as handle:
        for line in lines:
            handle.write(line + "\n")
            count += 1
    os.replace(partial, path)
    return count


def write_qrels(rows: Iterable[tuple[str, str, int]], path: Path) -> TrecWrite:
    """`qid 0 docid rel` per judged pair."""
    skipped: list[str] = []

    def lines() -> Iterable[str]:
        for query_id, image_id, label in rows:
            if _has_space(query_id, image_id):
                skipped.append(f"{query_id} {image_id}")
                continue
            yield f"{query_id} 0 {image_id} {int(label)}"

    return TrecWrite(path, _write_lines(path, lines()), skipped)


def write_run(rows: Iterable[tuple[str, str, float, str]], path: Path, tag: str | None = None) -> TrecWrite:
    """`qid Q0 docid rank score tag`, ranks from 1 per query in the order given (best first)."""
    skipped: list[str] = []

    def lines() -> Iterable[str]:
        rank, current = 0, None
        for query_id, image_id, score, scorer in rows:
            if _has_space(query_id, image_id):
                skipped.append(f"{query_id} {image_id}")
                continue
            rank = rank + 1 if query_id == current else 1
            current = query_id
            name = "".join(c if c.isalnum() or c in "-_.:/" else "_" for c in (tag or scorer or "run"))
            yield f"{query_id} Q0 {image_id} {rank} {score:.6f} {name}"

    return TrecWrite(path, _write_lines(path, lines()), skipped)


def export_trec(con: Any, out_dir: Path, similarity_column: str, *, qrels_table: str = "qrels",
                scored_table: str | None = "qrels_with_score") -> list[TrecWrite]:
    """qrels.trec from the qrels table and, when scores exist, qrels_with_score.run from the similarity column."""
    written = [write_qrels(con.execute(QRELS_SQL.format(qrels=qrels_table)).fetchall(), out_dir / "qrels.trec")]
    if scored_table is not None:
        rows = con.execute(RUN_SQL.format(table=scored_table, column=similarity_column)).fetchall()
        written.append(write_run(rows, out_dir / f"{scored_table}.run"))
    return written
