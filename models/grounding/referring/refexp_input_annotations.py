"""image_referring_expression's resume input: the unified annotation records of
vars.grounding.image_referring_expression.input_annotations_jsonl, validated line by line (the reference's
`text`/`bbox_score` and its docs' `expression`/`score` both accepted; missing ids filled in). No rows when the
setting is empty: the pipeline then starts from the images and their KITTI labels."""

config = {"materialized": "table", "tags": ["grounding", "image_referring_expression"]}


def model(ctx):
    from dataproj.grounding.paths import project_root, resolve_in
    from dataproj.grounding.records import AnnotationLine, annotations_table, jsonl_objects, validated
    from dataproj.grounding.settings import grounding_vars

    shown = grounding_vars(ctx.var("grounding")).image_referring_expression.input_annotations_jsonl
    if not shown:
        return annotations_table([])
    records = validated(AnnotationLine, jsonl_objects(resolve_in(project_root(__file__), shown), shown), shown)
    return annotations_table(records)
