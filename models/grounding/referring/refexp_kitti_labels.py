"""image_referring_expression: every line of the KITTI label files in
vars.grounding.image_referring_expression.kitti_label_dir (<image stem>.txt), read by DuckDB's CSV reader:
`type truncated occluded alpha x1 y1 x2 y2 h w l x y z rotation_y`, pixel boxes. A malformed line stops the
run naming its file and line."""

config = {"materialized": "table", "tags": ["grounding", "image_referring_expression"]}


def model(ctx):
    from dataproj.grounding.folders import kitti_labels
    from dataproj.grounding.paths import project_root, resolve_in
    from dataproj.grounding.settings import grounding_vars

    settings = grounding_vars(ctx.var("grounding")).image_referring_expression
    folder = resolve_in(project_root(__file__), settings.kitti_label_dir)
    return kitti_labels(ctx.con, folder, settings.kitti_label_dir)
