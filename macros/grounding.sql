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

{# A pixel [x1, y1, x2, y2] box (1-based list) on the 0-1000 scale the grounding prompts declare. #}
{% macro norm1000_box(box, width='width', height='height') -%}
[round({{ box }}[1] * 1000.0 / {{ width }}), round({{ box }}[2] * 1000.0 / {{ height }}),
 round({{ box }}[3] * 1000.0 / {{ width }}), round({{ box }}[4] * 1000.0 / {{ height }})]::integer[]
{%- endmacro %}
