"""image_referring_expression: the images of vars.grounding.image_referring_expression.image_dir (.jpg, .jpeg,
.png, recursively), one row each; image_id is the file stem, which names the image's KITTI label file."""

config = {"materialized": "table", "tags": ["grounding", "image_referring_expression"]}


def model(ctx):
    from dataproj.grounding.folders import image_files
    from dataproj.grounding.paths import project_root, resolve_in
    from dataproj.grounding.settings import grounding_vars

    settings = grounding_vars(ctx.var("grounding")).image_referring_expression
    root = project_root(__file__)
    return image_files(root, resolve_in(root, settings.image_dir), settings.image_dir)
