"""image_grounding's grounding accuracy at IoU >= 0.5 against the scene ground truth (one row; the query is
dataproj.grounding.quality, shared with refexp_quality)."""

config = {"materialized": "table", "tags": ["grounding", "image_grounding"], "export": ["jsonl"],
          "export_path": "grounding/image_grounding/quality"}


def model(ctx):
    from dataproj.grounding.quality import quality_sql

    ctx.ref("grounding_truth_referents")
    ctx.ref("grounding_annotations")
    return ctx.sql(quality_sql("image_grounding", {"final": "grounding_annotations"}))
