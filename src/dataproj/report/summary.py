"""Writes the summary folder of the image-search benchmark: the reference's CSV tables and PNG plots.

The data comes from the warehouse tables the imsearch models build (qrels_with_score, annotations, images,
image_files, the quality models) and from the call ledger (dataproj_calls) for the cost summary. A table that
is not built is skipped, and the plots it feeds with it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import plots, tables
from .tables import quote, write_csv


@dataclass(frozen=True)
class SummarySettings:
    taxonomy_facets: tuple[str, ...]
    boolean_facets: tuple[str, ...] = ()
    similarity_column: str = "similarity_score"
    dpi: int = 120
    sample_images: int = 24
    random_seed: int = 42
    variables: dict[str, Any] = field(default_factory=dict)  # vars.imsearch, for config_values.csv

    @classmethod
    def from_vars(cls, imsearch: dict[str, Any]) -> SummarySettings:
        summary = imsearch.get("summary") or {}
        return cls(taxonomy_facets=tuple(imsearch.get("taxonomy_facets") or {}),
                   boolean_facets=tuple(imsearch.get("boolean_facets") or ()),
                   similarity_column=(imsearch.get("similarity") or {}).get("column", "similarity_score"),
                   dpi=int(summary.get("dpi", 120)), sample_images=int(summary.get("sample_images", 24)),
                   random_seed=int((imsearch.get("query_plan") or {}).get("random_seed") or 42),
                   variables=imsearch)


@dataclass
class _Context:
    con: Any
    out: Path
    settings: SummarySettings
    root: Path
    relations: set[str]
    written: list[Path] = field(default_factory=list)

    def csv(self, name: str, result: tuple[list[str], list[tuple[Any, ...]]]) -> None:
        self.written.append(write_csv(self.out / name, *result))

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return self.con.execute(sql).fetchall()

    def has(self, *names: str) -> bool:
        return all(n in self.relations for n in names)


def write_summary(con: Any, out_dir: Path, settings: SummarySettings, root: Path) -> list[Path]:
    """Write every table and plot the built tables allow; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    relations = {r[0] for r in con.execute(
        "select table_name from information_schema.tables where table_schema = 'main'").fetchall()}
    ctx = _Context(con, out_dir, settings, root, relations)
    qrels = "qrels_with_score" if ctx.has("qrels_with_score") else "qrels" if ctx.has("qrels") else None
    sections: list[Callable[[_Context, str], None]] = [
        _proportions, _relevance, _similarity, _confidence, _text, _dataset_stats, _quality]
    if qrels is not None:
        for section in sections:
            section(ctx, qrels)
    _sample_grid(ctx)
    _cost(ctx)
    ctx.csv("config_values.csv", tables.config_values(settings.variables))
    return ctx.written


def _proportions(ctx: _Context, qrels: str) -> None:
    if ctx.has("annotations"):
        panels = []
        for facet in ctx.settings.taxonomy_facets:
            rows = ctx.rows(f"select {quote(facet)}::VARCHAR, count(*) from annotations where status = 'ok' "
                            f"group by 1 order by 2 desc, 1")
            if rows:
                panels.append((facet, [r[0] for r in rows], [r[1] for r in rows]))
        if panels:
            ctx.written.append(plots.donuts(panels, ctx.out / "image_proportion_donuts.png", ctx.settings.dpi))
    if ctx.has("images"):
        rows = ctx.rows("select original_dataset_name, count(*) from images group by 1 order by 2 desc, 1")
        if rows:
            ctx.written.append(plots.donuts([("Source dataset", [r[0] for r in rows], [r[1] for r in rows])],
                                            ctx.out / "dataset_proportion_donuts.png", ctx.settings.dpi))


def _relevance(ctx: _Context, qrels: str) -> None:
    stats = tables.query_relevancy_stats(ctx.con, qrels)
    ctx.csv("query_relevancy_stats.csv", stats)
    if not stats[1]:
        return
    dpi = ctx.settings.dpi
    ctx.written.append(plots.relevancy_distribution([(r[0], float(r[3])) for r in stats[1]],
                                                    ctx.out / "query_relevancy_distribution.png", dpi))
    relevant, not_relevant = ctx.rows(f"select count_if(relevance_label = 1), count_if(relevance_label = 0) "
                                      f"from {qrels}")[0]
    ctx.written.append(plots.relevance_overview(relevant, not_relevant, ctx.out / "relevance_overview.png", dpi))
    for facet in ctx.settings.taxonomy_facets:  # as the reference: one plot per taxonomy facet
        rows = ctx.rows(f"select {quote(facet)}::VARCHAR, count_if(relevance_label = 1), count(relevance_label) "
                        f"from {qrels} where relevance_label is not null and {quote(facet)} is not null "
                        f"group by 1 order by 1")
        if rows:
            ctx.written.append(plots.relevance_by_facet(facet, rows, ctx.out / f"relevance_by_{facet}.png", dpi))


def _similarity(ctx: _Context, qrels: str) -> None:
    column = ctx.settings.similarity_column
    if qrels != "qrels_with_score":
        return
    scores = ctx.rows(f"select {quote(column)}, relevance_label from {qrels} where {quote(column)} is not null")
    if not scores:
        return
    for name, result in tables.score_stats(ctx.con, qrels, column).items():
        ctx.csv(f"{column}_{name}.csv", result)
    scorer = ", ".join(r[0] for r in ctx.rows(f"select distinct similarity_scorer from {qrels} order by 1"))
    dpi = ctx.settings.dpi
    ctx.written.append(plots.score_analysis(column, scorer, scores, ctx.out / f"{column}_analysis.png", dpi))
    means = ctx.rows(f"select query_id, avg({quote(column)}) from {qrels} where {quote(column)} is not null "
                     f"group by 1 order by 2 desc, 1")
    ctx.written.append(plots.score_by_query(column, means, ctx.out / f"{column}_by_query.png", dpi))


def _confidence(ctx: _Context, qrels: str) -> None:
    rows = ctx.rows(tables.confidence_rows(ctx.con, qrels) + " order by 1")
    if not rows:
        return
    for name, result in tables.confidence_stats(ctx.con, qrels).items():
        ctx.csv(f"{name}.csv", result)
    by_category: dict[str, list[float]] = {}
    for category, score, _ in rows:
        if score is not None:
            by_category.setdefault(category, []).append(score)
    dpi = ctx.settings.dpi
    ctx.written.append(plots.confidence_distributions(by_category, ctx.out / "confidence_distribution_by_category.png",
                                                      dpi))
    ctx.written.append(plots.confidence_boxplot(by_category, ctx.out / "confidence_by_category_boxplot.png", dpi))
    means = ctx.rows(f"select category, avg(confidence_score) filter (where relevance_label = 0), "
                     f"avg(confidence_score) filter (where relevance_label = 1) "
                     f"from ({tables.confidence_rows(ctx.con, qrels)}) group by 1 order by 1")
    ctx.written.append(plots.confidence_by_relevance(means, ctx.out / "confidence_by_category_and_relevance.png", dpi))


def _text(ctx: _Context, qrels: str) -> None:
    dpi = ctx.settings.dpi
    lengths = [r[0] for r in ctx.rows(f"select length(query_text) from (select distinct query_id, query_text "
                                      f"from {qrels} where query_text is not null)")]
    if lengths:
        ctx.written.append(plots.query_length_distribution(lengths, ctx.out / "query_text_length_distribution.png",
                                                           dpi))
    if not ctx.has("annotations"):
        return
    ctx.csv("top_tags.csv", tables.top_tags(ctx.con))
    words = ctx.rows("select word, count(*) from (select unnest(regexp_extract_all(lower(summary), '[a-z]+')) "
                     "as word from annotations where status = 'ok') where length(word) > 2 and word not in "
                     "('and', 'the', 'with', 'for', 'are', 'its') group by 1")
    if words:
        ctx.written.append(plots.word_cloud(dict(words), "Word cloud: image summaries",
                                            ctx.out / "wordcloud_summaries.png", dpi, "viridis"))
    tags = ctx.rows("select tag, count(*) from (select unnest(tags) as tag from annotations where status = 'ok') "
                    "group by 1")
    if tags:
        ctx.written.append(plots.word_cloud(dict(tags), "Word cloud: tags", ctx.out / "wordcloud_tags.png", dpi,
                                            "plasma"))


def _dataset_stats(ctx: _Context, qrels: str) -> None:
    ctx.csv("dataset_summary_stats.csv", tables.dataset_summary_stats(ctx.con, qrels, ctx.settings.taxonomy_facets))


def _quality(ctx: _Context, qrels: str) -> None:
    if ctx.has("imsearch_quality"):
        ctx.csv("relevance_quality.csv", tables.query(ctx.con, "select * from imsearch_quality"))
    if ctx.has("imsearch_query_quality"):
        ctx.csv("query_quality.csv", tables.query(ctx.con, "select * from imsearch_query_quality"))


def _sample_grid(ctx: _Context) -> None:
    if not ctx.has("image_files"):
        return
    used = "where image_id in (select image_id from qrels)" if ctx.has("qrels") else ""
    rows = ctx.rows(f"select image_id, path from image_files {used} "
                    f"order by hash('{ctx.settings.random_seed}:' || image_id), image_id "
                    f"limit {int(ctx.settings.sample_images)}")
    if rows:
        images = [(image_id, str(ctx.root / path)) for image_id, path in rows]
        ctx.written.append(plots.image_grid(images, ctx.out / "random_image_sample.png", ctx.settings.dpi))


def _cost(ctx: _Context) -> None:
    if not ctx.has("dataproj_calls"):
        return
    header, rows = tables.cost_summary(ctx.con)
    ctx.csv("cost_summary.csv", (header, rows))
    column = {name: header.index(name) for name in
              ("Total Input Tokens", "Total Output Tokens", "Total Cost (USD)", "Calls")}
    phases = [(r[0], int(r[column["Total Input Tokens"]] or 0), int(r[column["Total Output Tokens"]] or 0),
               float(r[column["Total Cost (USD)"]] or 0), int(r[column["Calls"]])) for r in rows if r[0] != "total"]
    if phases:
        ctx.written.append(plots.cost_bars(phases, ctx.out / "cost_summary.png", ctx.settings.dpi))
