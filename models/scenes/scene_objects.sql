-- One row per drawn object of the sample scenes, with its ground-truth box in pixels (x2, y2 exclusive).
select
    truth.image_path,
    truth.source,
    object.object_id,
    object.shape,
    object.color,
    object.size,
    object.bbox,
    object.area_px
from {{ ref('scene_truth') }} as truth,
    unnest(truth.objects) as objects(object)
order by truth.image_path, object.object_id
