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

{#
  The config of a grounding step model (a table tagged with its pipeline; force_reprocess refreshes its cached
  calls; vars.grounding.vlm_backend picks the backend), and whether the step is among the pipeline's selected
  steps: renders 'on' or 'off'. Use: {%- set selected = grounding_step('image_grounding', '0') == 'on' -%}
#}
{% macro grounding_step(pipeline, step) -%}
{%- set grounding = var('grounding', {}) or {} -%}
{%- set settings = grounding.get(pipeline) or {} -%}
{%- set all_steps = {'image_grounding': ['0', '1'], 'image_referring_expression': ['0', '1', '2', '3']} -%}
{{- config(materialized='table', tags=['grounding', pipeline],
           refresh_cache=settings.get('force_reprocess', false), vlm_backend=grounding.get('vlm_backend')) -}}
{{- 'on' if step in (settings.get('steps', all_steps[pipeline]) | map('string') | list) else 'off' -}}
{%- endmacro %}

{#
  The identifying columns of an input record, from a relation with image_id, image_path, width, height and
  `info` (image_info(image_path) where a size is missing): image_id defaults to the file name without its
  extension, as the reference's pipelines name images. Call it with `| indent(N)` for the caller's indentation.
#}
{% macro image_record_columns() -%}
coalesce(image_id, regexp_extract(image_path, '([^/]+?)(\.[^./]*)?$', 1)) as image_id,
image_path,
coalesce(width, info.width)::integer as width,
coalesce(height, info.height)::integer as height
{%- endmacro %}
