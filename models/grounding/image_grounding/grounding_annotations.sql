{%- set settings = (var('grounding', {}) or {}).get('image_grounding') or {} -%}
{%- set steps = settings.get('steps', ['0', '1']) | map('string') | list -%}
{{ config(materialized='table', tags=['grounding', 'image_grounding'], export=['jsonl'],
          export_path='grounding/image_grounding/annotations') }}
-- image_grounding's output: one record per input image in the unified annotation schema (docs/grounding.md),
-- in input order. `errors` lists the steps whose call failed for the image, with the reason.
select
    images.image_id,
    images.image_path,
    images.width,
    images.height,
    images.caption,
    extracted.cleaned_caption,
    []::struct(bbox integer[], "type" varchar, color varchar, description varchar)[] as regions,
    grounded.expressions,
    'image_grounding' as source,
    {{ [] + (['step0_extract'] if '0' in steps else []) + (['step1_ground'] if '1' in steps else []) }}::varchar[]
        as pipeline_steps,
    list_filter([
        {'step': 'image', 'error': images.image_error},
        {'step': 'step0_extract', 'error': extracted.error},
        {'step': 'step1_ground', 'error': grounded.error}
    ], lambda failure: failure.error is not null) as errors
from {{ ref('grounding_images') }} as images
join {{ ref('grounding_extracted') }} as extracted using (image_id)
join {{ ref('grounding_grounded') }} as grounded using (image_id)
order by images.line_no
