"""image_grounding input: caption records from vars.grounding.image_grounding.input_jsonl (or, by default, the
seed grounding_captions), validated line by line, with image_root put in front of relative image paths.

A record needs image_path and caption; image_id, width and height are filled in by grounding_images when
missing. A record may also carry cleaned_caption and expressions (the unified schema), which the pipeline
passes through when step 0 is not selected.
"""

config = {"materialized": "table", "tags": ["grounding", "image_grounding"]}


def model(ctx):
    from dataproj.grounding.paths import project_root, resolve_in
    from dataproj.grounding.records import CaptionLine, captions_table, jsonl_objects, validated
    from dataproj.grounding.settings import grounding_vars

    settings = grounding_vars(ctx.var("grounding")).image_grounding
    if settings.input_jsonl:
        shown = settings.input_jsonl
        rows = jsonl_objects(resolve_in(project_root(__file__), shown), shown)
    else:
        shown = "seeds/grounding/grounding_captions.jsonl"
        seed = ctx.ref("grounding_captions")
        rows = ((number, dict(zip(seed.columns, values, strict=True)))
                for number, values in enumerate(seed.fetchall(), start=1))
    return captions_table(validated(CaptionLine, rows, shown), settings.image_root)
