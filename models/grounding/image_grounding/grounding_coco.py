"""image_grounding's COCO export (warehouse/exports/grounding/image_grounding/coco.json): one annotation per
grounded box, with its expression; returns what was written."""

config = {"materialized": "table", "tags": ["grounding", "image_grounding"]}


def model(ctx):
    from dataproj.grounding.exports import write_coco_export

    return write_coco_export(ctx.ref("grounding_annotations"), __file__, "image_grounding")
