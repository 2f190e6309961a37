{%- set settings = (var('grounding', {}) or {}).get('image_referring_expression') or {} -%}
{%- set steps = settings.get('steps', ['0', '1', '2', '3']) | map('string') | list -%}
{%- set output_format = settings.get('output_format', 'jsonl') -%}
{%- set names = {'0': 'step0_region_expr', '1': 'step1_image_caption', '2': 'step2_grounding_expr',
                 '3': 'step3_double_check'} -%}
{%- set ran = [] -%}
{%- for step in ['0', '1', '2', '3'] if step in steps -%}{%- set _ = ran.append(names[step]) -%}{%- endfor -%}
{{ config(materialized='table', tags=['grounding', 'image_referring_expression'],
          export=(['jsonl'] if output_format in ('jsonl', 'both') else []),
          export_path='grounding/image_referring_expression/annotations') }}
-- image_referring_expression's output: one record per image in the unified annotation schema
-- (docs/grounding.md), in input order. pipeline_steps are the resume input's steps followed by the steps of this
-- run; `errors` lists the steps whose call failed for the image, with the reason. Exported as annotations.jsonl
-- when output_format is jsonl or both (legacy label files: refexp_legacy_labels).
select
    seeds.image_id,
    seeds.image_path,
    seeds.width,
    seeds.height,
    captions.caption,
    seeds.cleaned_caption,
    regions.regions,
    checked.expressions,
    'image_referring_expression' as source,
    seeds.pipeline_steps || list_filter(
        {{ ran }}::varchar[],
        lambda step: not list_contains(seeds.pipeline_steps, step)) as pipeline_steps,
    list_filter([
        {'step': 'image', 'error': seeds.image_error},
        {'step': 'step0_region_expr', 'error': regions.error},
        {'step': 'step1_image_caption', 'error': captions.error},
        {'step': 'step2_grounding_expr', 'error': grounded.error},
        {'step': 'step3_double_check', 'error': checked.error}
    ], lambda failure: failure.error is not null) as errors
from {{ ref('refexp_seed_records') }} as seeds
join {{ ref('refexp_regions') }} as regions using (image_id)
join {{ ref('refexp_captions') }} as captions using (image_id)
join {{ ref('refexp_grounded') }} as grounded using (image_id)
join {{ ref('refexp_checked') }} as checked using (image_id)
order by seeds.line_no
