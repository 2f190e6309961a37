{{ config(materialized='table', tags=['grounding', 'image_grounding']) }}
-- The caption records with every identifying field filled in: image_id from the file name, width and height
-- read from the image when the record lacks them (a missing or unreadable image keeps them null and says why).
with inputs as (
    select
        *,
        case when width is null or height is null then image_info(image_path) end as info
    from {{ ref('grounding_inputs') }}
)

select
    line_no,
    {{ image_record_columns() | indent(4) }},
    caption,
    cleaned_caption,
    expressions,
    info.error as image_error
from inputs
