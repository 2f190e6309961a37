{{ config(materialized='view', tags=['grounding', 'image_grounding']) }}
-- One row per expression of image_grounding's output (for data tests and quality).
select
    annotations.image_id,
    expression.expression_id,
    annotations.image_id || '/' || expression.expression_id as expression_key,
    expression.text,
    expression.char_span,
    expression.noun_chunk,
    len(expression.instances) as n_instances,
    annotations.cleaned_caption
from {{ ref('grounding_annotations') }} as annotations,
    unnest(annotations.expressions) as expressions(expression)
