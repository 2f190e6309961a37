{{ config(materialized='view', tags=['grounding', 'image_referring_expression']) }}
-- One row per expression of image_referring_expression's output (for data tests and quality).
select
    annotations.image_id,
    expression.expression_id,
    annotations.image_id || '/' || expression.expression_id as expression_key,
    expression.text,
    len(expression.instances) as n_instances,
    expression.verified
from {{ ref('refexp_annotations') }} as annotations,
    unnest(annotations.expressions) as expressions(expression)
