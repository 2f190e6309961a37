"""qrels in TREC format (`qid 0 docid rel`) and the similarity scores as a TREC run, beside the other exports:
warehouse/exports/qrels.trec and qrels_with_score.run. Returns one row per file written."""

import pyarrow as pa

config = {"tags": ["imsearch"]}


def model(ctx):
    from dataproj.publish.trec import export_trec

    ctx.ref("qrels")
    ctx.ref("qrels_with_score")
    settings = ctx.var("imsearch") or {}
    column = (settings.get("similarity") or {}).get("column", "similarity_score")
    written = export_trec(ctx.con, ctx.exports_dir, column)
    return pa.table({"file": [w.path.name for w in written], "lines": [w.lines for w in written],
                     "skipped_ids": [w.skipped for w in written]})
