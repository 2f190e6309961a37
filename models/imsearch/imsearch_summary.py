"""The benchmark's summary (the reference's `postprocess summary`): CSV tables and PNG plots written to
warehouse/exports/summary/ by dataproj.report. Returns one row per file written.

The cost tables read the call ledger (dataproj_calls), which the engine publishes at the end of each run: during
a build they cover the calls recorded up to the previous run; `dataproj report` rewrites the summary afterwards
with the complete ledger."""

import pyarrow as pa

config = {"tags": ["imsearch"]}


def model(ctx):
    from dataproj.report import SummarySettings, write_summary

    ctx.ref("images")
    ctx.ref("image_files")
    ctx.ref("annotations")
    ctx.ref("qrels_with_score")
    ctx.ref("imsearch_quality")
    ctx.ref("imsearch_query_quality")
    settings = SummarySettings.from_vars(ctx.var("imsearch") or {})
    written = write_summary(ctx.con, ctx.exports_dir / "summary", settings, ctx.project_dir)
    return pa.table({"file": [p.name for p in written], "bytes": [p.stat().st_size for p in written]})
