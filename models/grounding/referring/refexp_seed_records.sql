{{ config(materialized='table', tags=['grounding', 'image_referring_expression']) }}
-- The records the steps start from, one per image: the resume input when it has records, otherwise one per
-- image of image_dir with its KITTI boxes as regions (type from the label, colour and description unknown yet).
-- Width and height are read from the image when missing; boxes are rounded, clamped to the image, and dropped
-- when that leaves them empty.
with resumed as (
    select line_no, image_id, image_path, width, height, caption, cleaned_caption, regions, expressions,
        pipeline_steps
    from {{ ref('refexp_input_annotations') }}
),

labelled as (
    select
        image_id,
        list({
            'bbox': [round(x1), round(y1), round(x2), round(y2)]::integer[],
            'type': "type",
            'color': null::varchar,
            'description': null::varchar
        } order by label_no) as regions
    from {{ ref('refexp_kitti_labels') }}
    group by image_id
),

from_images as (
    select
        images.file_no as line_no,
        images.image_id,
        images.image_path,
        null::integer as width,
        null::integer as height,
        null::varchar as caption,
        null::varchar as cleaned_caption,
        coalesce(labelled.regions, []) as regions,
        []::struct(expression_id varchar, text varchar, char_span integer[], noun_chunk varchar,
                   instances struct(bbox_id varchar, bbox integer[], bbox_score double)[], verified boolean)[]
            as expressions,
        []::varchar[] as pipeline_steps
    from {{ ref('refexp_images') }} as images
    left join labelled using (image_id)
    where not exists (select 1 from resumed)
),

chosen as (
    select * from resumed
    union all by name
    select * from from_images
),

sized as (
    select
        *,
        case when width is null or height is null then image_info(image_path) end as info
    from chosen
),

complete as (
    select
        line_no,
        {{ image_record_columns() | indent(8) }},
        caption,
        cleaned_caption,
        regions,
        expressions,
        pipeline_steps,
        info.error as image_error
    from sized
)

select
    * replace (
        list_filter(
            list_transform(regions, lambda region: struct_update(region, bbox := [
                greatest(0, least(width, region.bbox[1])), greatest(0, least(height, region.bbox[2])),
                greatest(0, least(width, region.bbox[3])), greatest(0, least(height, region.bbox[4]))])),
            lambda region: width is null or (region.bbox[1] < region.bbox[3] and region.bbox[2] < region.bbox[4])
        ) as regions
    )
from complete
