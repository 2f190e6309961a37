"""The summary's CSV tables, each computed by one SQL query on the warehouse (names as in the reference)."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PHASES = (("vision", "imsearch_vision_annotation"), ("judge", "imsearch_relevance_judge"),
          ("similarity", "clip_similarity"))


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows([_cell(v) for v in row] for row in rows)
    return path


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict | list):
        return json.dumps(value)
    return value


def query(con: Any, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    cursor = con.execute(sql)
    return [d[0] for d in cursor.description], cursor.fetchall()


def query_relevancy_stats(con: Any, qrels: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    return query(con, f"""
        select query_id, sum(relevance_label) as sum, count(relevance_label) as count,
            sum(relevance_label) / count(relevance_label) as relevance_rate
        from {qrels} where relevance_label is not null
        group by query_id order by relevance_rate desc, query_id""")


def top_tags(con: Any, limit: int = 50) -> tuple[list[str], list[tuple[Any, ...]]]:
    return query(con, f"""
        select tag as "Tag", count(*) as "Count"
        from (select unnest(tags) as tag from annotations where status = 'ok')
        group by tag order by count(*) desc, tag limit {int(limit)}""")


def score_stats(con: Any, qrels: str, column: str) -> dict[str, tuple[list[str], list[tuple[Any, ...]]]]:
    """Overall, by relevance and by query statistics of the similarity column."""
    col = quote(column)
    overall = query(con, f"""
        select * from (
            select count({col}) as "Total Rows", avg({col}) as "Mean", median({col}) as "Median",
                stddev_samp({col}) as "Std Dev", min({col}) as "Min", max({col}) as "Max",
                quantile_cont({col}, 0.25) as "25th Percentile", quantile_cont({col}, 0.75) as "75th Percentile",
                avg({col}) filter (where relevance_label = 1) as "Mean (Relevant)",
                avg({col}) filter (where relevance_label = 0) as "Mean (Not Relevant)"
            from {qrels}) unpivot ("Value" for "Metric" in (columns(*)))""")
    by_relevance = query(con, f"""
        select case relevance_label when 1 then 'Relevant' else 'Not Relevant' end as "Relevance Label",
            count({col}) as "Count", avg({col}) as "Mean", median({col}) as "Median",
            stddev_samp({col}) as "Std Dev", min({col}) as "Min", max({col}) as "Max"
        from {qrels} where relevance_label is not null and {col} is not null
        group by relevance_label order by relevance_label""")
    by_query = query(con, f"""
        select query_id as "Query ID", avg({col}) as "Mean Score", stddev_samp({col}) as "Std Dev",
            count({col}) as "Count"
        from {qrels} where {col} is not null
        group by query_id order by "Mean Score" desc, query_id""")
    return {"overall_stats": overall, "stats_by_relevance": by_relevance, "by_query_stats": by_query}


def confidence_rows(con: Any, qrels: str) -> str:
    """SQL of (category, confidence_score, relevance_label): one row per facet confidence of every qrels row."""
    return f"""
        select c.key as category, try_cast(c.value as DOUBLE) as confidence_score, relevance_label
        from (select unnest(map_entries(json_transform(to_json(confidence), '"MAP(VARCHAR, DOUBLE)"'))) as c,
                     relevance_label
              from {qrels} where confidence is not null)"""


def confidence_stats(con: Any, qrels: str) -> dict[str, tuple[list[str], list[tuple[Any, ...]]]]:
    rows = confidence_rows(con, qrels)
    overall = query(con, f"""
        select * from (
            select count(*) as "Total Confidence Scores", avg(confidence_score) as "Mean Confidence (Overall)",
                median(confidence_score) as "Median Confidence (Overall)",
                stddev_samp(confidence_score) as "Std Dev (Overall)", min(confidence_score) as "Min Confidence",
                max(confidence_score) as "Max Confidence",
                quantile_cont(confidence_score, 0.25) as "25th Percentile",
                quantile_cont(confidence_score, 0.75) as "75th Percentile"
            from ({rows})) unpivot ("Value" for "Metric" in (columns(*)))""")
    by_category = query(con, f"""
        select category as "Category", count(*) as "Count", avg(confidence_score) as "Mean",
            median(confidence_score) as "Median", stddev_samp(confidence_score) as "Std Dev",
            min(confidence_score) as "Min", max(confidence_score) as "Max"
        from ({rows}) group by category order by "Mean" desc, category""")
    return {"confidence_overall_stats": overall, "confidence_stats_by_category": by_category}


def dataset_summary_stats(con: Any, qrels: str, facets: Sequence[str]) -> tuple[list[str], list[tuple[Any, ...]]]:
    distinct = "".join(f', count(distinct {quote(f)})::VARCHAR as "Unique {f} values"' for f in facets)
    return query(con, f"""
        select * from (
            select count(*)::VARCHAR as "Total Qrel Rows", count(distinct query_id)::VARCHAR as "Unique Queries",
                count(distinct image_id)::VARCHAR as "Unique Images",
                count_if(relevance_label = 1)::VARCHAR as "Relevant Pairs",
                count_if(relevance_label = 0)::VARCHAR as "Not Relevant Pairs",
                printf('%.2f%%', 100 * avg(relevance_label)) as "Relevance Rate",
                count(distinct query_id) filter (where judge_status <> 'ok')::VARCHAR as "Failed Queries"
                {distinct}
            from {qrels}) unpivot ("Value" for "Metric" in (columns(*)))""")


def cost_summary(con: Any) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Tokens and cost per phase and in total, from the call ledger (dataproj_calls): real calls only."""
    phase = "case " + " ".join(f"when function like '{prefix}%' then '{name}'" for name, prefix in PHASES) + " end"
    return query(con, f"""
        with calls as (
            select {phase} as phase, * from dataproj_calls
        ),
        phases as (
            select coalesce(phase, 'total') as "Phase", sum(input_tokens) as "Total Input Tokens",
                sum(cached_input_tokens) as "Total Cached Tokens",
                sum(input_tokens - cached_input_tokens) as "Total Uncached Input Tokens",
                sum(output_tokens) as "Total Output Tokens", round(sum(cost_usd), 6) as "Total Cost (USD)",
                sum(rows) as "Num Items", count(*) as "Calls", count_if(status <> 'ok') as "Failed Calls",
                round(sum(cost_usd) / nullif(sum(rows), 0), 8) as "Cost Per Item (USD)",
                round(sum(cost_usd) / nullif(sum(input_tokens + output_tokens), 0), 10) as "Cost Per Token (USD)",
                grouping(phase) as is_total
            from calls where phase is not null
            group by rollup (phase)
        )
        select * exclude (is_total) from phases order by is_total, "Phase" """)


def config_values(settings: dict[str, Any]) -> tuple[list[str], list[tuple[Any, ...]]]:
    """vars.imsearch flattened to dotted keys; keys starting with '_' (secrets) are left out."""
    rows: list[tuple[Any, ...]] = []

    def walk(value: Any, prefix: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if not str(key).startswith("_"):
                    walk(item, f"{prefix}.{key}" if prefix else str(key))
        else:
            rows.append((prefix, json.dumps(value) if isinstance(value, list | dict) else value))

    walk(settings, "")
    return ["key", "value"], rows
