{# One row per grounded box of a unified-annotations relation, with its image's size (for data tests). #}
{% macro grounded_instances(annotations_relation) %}
with expressions as (
    select annotations.image_id, annotations.width, annotations.height, unnest(annotations.expressions) as expression
    from {{ annotations_relation }} as annotations
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
{% endmacro %}
