{{ config(materialized='table', tags=['grounding', 'image_grounding', 'image_referring_expression']) }}
-- What each phrase of the sample scenes' grammar denotes in the ground truth, for the quality models: one row
-- per (phrase key, object). A key is a shape with an optional colour, size and position word; the colour,
-- shape and size filter the objects of the image and a position keeps the one(s) farthest that way by box
-- centre (dataproj.grounding.phrases.resolve follows the same rules on the analysed pixels).
with objects as (
    select
        regexp_extract(truth.image_path, '([^/]+?)(\.[^./]*)?$', 1) as image_id,
        object.object_id,
        object.color,
        object.shape,
        object.size,
        object.bbox,
        (object.bbox[1] + object.bbox[3]) / 2.0 as cx,
        (object.bbox[2] + object.bbox[4]) / 2.0 as cy
    from {{ ref('scene_truth') }} as truth,
        unnest(truth.objects) as objects(object)
),

keyed as (
    select
        objects.image_id,
        objects.object_id,
        objects.shape,
        objects.bbox,
        objects.cx,
        objects.cy,
        case when colors.said then objects.color end as color,
        case when sizes.said then objects.size end as size,
        positions.position
    from objects
    cross join (values (true), (false)) as colors(said)
    cross join (values (true), (false)) as sizes(said)
    cross join (values (null::varchar), ('left'), ('right'), ('top'), ('bottom')) as positions(position)
),

ranked as (
    select
        *,
        rank() over (
            partition by image_id, shape, color, size, position
            order by case position when 'left' then cx when 'right' then -cx when 'top' then cy
                                   when 'bottom' then -cy end
        ) as place
    from keyed
)

select image_id, shape, color, size, position, object_id, bbox
from ranked
where position is null or place = 1
