"""image_referring_expression's legacy label files, when output_format is legacy or both: for each selected step
and image, warehouse/exports/grounding/image_referring_expression/labels/<stem>.txt.step<N> (regions, caption,
grounded expressions, checked expressions; dataproj.grounding.legacy). The folder is replaced as a whole, and
removed when output_format is jsonl. Returns one row per file written."""

config = {"materialized": "table", "tags": ["grounding", "image_referring_expression"]}


def model(ctx):
    from dataproj.grounding.exports import write_legacy_labels
    from dataproj.grounding.settings import grounding_vars

    settings = grounding_vars(ctx.var("grounding")).image_referring_expression
    outputs = {"0": ctx.ref("refexp_regions"), "1": ctx.ref("refexp_captions"), "2": ctx.ref("refexp_grounded"),
               "3": ctx.ref("refexp_checked")}
    chosen = {step: outputs[step] for step in settings.steps} if settings.output_format != "jsonl" else {}
    return write_legacy_labels(chosen, __file__, "image_referring_expression")
