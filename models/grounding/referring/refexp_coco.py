"""image_referring_expression's COCO export (warehouse/exports/grounding/image_referring_expression/coco.json):
one annotation per grounded box, with its expression; returns what was written."""

config = {"materialized": "table", "tags": ["grounding", "image_referring_expression"]}


def model(ctx):
    from dataproj.grounding.exports import write_coco_export

    return write_coco_export(ctx.ref("refexp_annotations"), __file__, "image_referring_expression")
