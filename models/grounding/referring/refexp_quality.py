"""image_referring_expression's grounding accuracy at IoU >= 0.5 against the scene ground truth: after step 2
(grounding) and after the whole pipeline (step 3 double check), one row each (dataproj.grounding.quality)."""

config = {"materialized": "table", "tags": ["grounding", "image_referring_expression"], "export": ["jsonl"],
          "export_path": "grounding/image_referring_expression/quality"}


def model(ctx):
    from dataproj.grounding.quality import quality_sql

    ctx.ref("grounding_truth_referents")
    ctx.ref("refexp_grounded")
    ctx.ref("refexp_annotations")
    return ctx.sql(quality_sql("image_referring_expression",
                               {"step2_grounding_expr": "refexp_grounded", "final": "refexp_annotations"}))
