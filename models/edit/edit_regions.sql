-- The edited region of each candidate: the grounder prompt (edit/grounder) boxes the parsed objects on the
-- edited image (add tasks: the new object is only there) or on the source (vars.edit.<task>.ground_on). The
-- grounder answers bbox_2d on 0-1000; the engine converts them to pixels of the grounded image, and here they
-- are scaled to source pixels. One call per distinct (image, objects): a group's candidates that ground on the
-- same source share it. region_reason says why a candidate has no boxes.
{{ config(materialized='table', tags=['edit']) }}
with settings as (
    select ground_on from {{ ref('edit_config') }}
),
candidates as (
    select
        c.*,
        i.edited_objects,
        i.parse_status,
        i.parse_error,
        case when s.ground_on = 'edited' then c.edited_image_path else c.source_image_path end as grounding_image,
        case when s.ground_on = 'edited' then c.source_width / c.edited_width else 1.0 end as scale_x,
        case when s.ground_on = 'edited' then c.source_height / c.edited_height else 1.0 end as scale_y
    from {{ ref('edit_candidates') }} as c
    join {{ ref('edit_instructions') }} as i using (key)
    cross join settings as s
),
requests as (
    select distinct grounding_image, edited_objects
    from candidates
    where parse_status = 'ok' and len(edited_objects) > 0 and image_error is null
),
groundings as (
    select grounding_image, edited_objects, edit_ground_objects(grounding_image, edited_objects) as grounding
    from requests
),
located as (
    select
        c.*,
        g.grounding,
        case
            when c.image_error is not null then 'failed call: ' || c.image_error
            when c.parse_status is distinct from 'ok'
                then 'failed call: instruction parser: ' || coalesce(c.parse_error, 'no answer')
            when len(c.edited_objects) = 0 then 'no edited object named'
            when g.grounding.status = 'failed' then 'failed call: grounder: ' || coalesce(g.grounding.error, 'no answer')
            when len(g.grounding.objects) = 0 then 'no box found'
        end as region_reason
    from candidates as c
    left join groundings as g
        on g.grounding_image = c.grounding_image and g.edited_objects = c.edited_objects
)
select
    item_key,
    key,
    model_name,
    instruction,
    source_image_path,
    edited_image_path,
    grounding_image,
    edited_objects,
    case when region_reason is null then list_transform(grounding.objects, lambda o: [
        o.bbox_2d[1] * scale_x, o.bbox_2d[2] * scale_y, o.bbox_2d[3] * scale_x, o.bbox_2d[4] * scale_y
    ]) end as boxes,
    region_reason
from located
order by item_key
