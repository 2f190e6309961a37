{{ config(materialized='view', tags=['grounding', 'image_grounding']) }}
-- One row per grounded box of image_grounding's output, with the size of its image (for data tests).
with expressions as (
    select annotations.image_id, annotations.width, annotations.height, unnest(annotations.expressions) as expression
    from {{ ref('grounding_annotations') }} as annotations
)

select
    image_id,
    expression.expression_id,
    image_id || '/' || expression.expression_id as expression_key,
    instance.bbox_id,
    image_id || '/' || instance.bbox_id as bbox_key,
    instance.bbox,
    instance.bbox_score,
    width,
    height
from expressions,
    unnest(expression.instances) as instances(instance)
