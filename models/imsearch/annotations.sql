{{ config(materialized='incremental', unique_key='image_id', tags=['imsearch'], export=['jsonl', 'parquet'],
          export_path='annotations') }}
{#-
  annotations.jsonl of the reference: image_id, summary, one column per taxonomy and boolean facet, tags,
  confidence {facet: 0..1}, license, doi. The vision annotation function sees the image, the chosen metadata
  columns and the annotation spec built from vars.imsearch; its output schema is rendered from the same vars
  (prompts/imsearch/vision_annotation), so the API enforces the allowed values, the tag vocabulary and bounds,
  and every answer is validated against it (and its tags checked for repeats) before it is kept. An answer that
  breaks them is asked again and then fails the row: status 'failed', the reason in `error`, the raw answer kept,
  and `dataproj run --retry-failed` asks again.
  Incremental: a run annotates only images that are new, whose file changed, or whose last answer was not ok
  (with the call cache, an unchanged failure is replayed unless --retry-failed).
-#}
{%- set im = var('imsearch') -%}
{%- set facets = (im.taxonomy_facets | list) + (im.boolean_facets or []) -%}
{%- set spec = {'taxonomy': im.taxonomy_facets, 'booleans': im.boolean_facets or [],
                'tags': {'vocabulary': im.tags.vocabulary, 'min': im.tags.min, 'max': im.tags.max}} -%}
{%- set meta_columns = im.vision_metadata_columns or [] -%}
with todo as (
    select
        f.image_id,
        f.path,
        f.content_hash,
        i.license,
        i.doi,
        {% if meta_columns %}to_json(struct_pack(
            {%- for c in meta_columns %}"{{ c }}" := i."{{ c }}"{{ ', ' if not loop.last }}{% endfor %})){% else %}'{}'{% endif %} as metadata
    from {{ ref('image_files') }} as f
    join {{ ref('images') }} as i using (image_id)
    {%- if is_incremental() %}
    where not exists (
        select 1 from {{ this }} as t
        where t.image_id = f.image_id and t.content_hash = f.content_hash and t.status = 'ok')
    {%- endif %}
),
answered as (
    select *, imsearch_vision_annotation(path, metadata, '{{ spec | tojson }}') as r
    from todo
)
select
    image_id,
    r.summary as summary,
    {%- for f in facets %}
    r."{{ f }}" as "{{ f }}",
    {%- endfor %}
    coalesce(r.tags, []) as tags,
    case when r.status = 'ok' then r.confidence end as confidence,
    license,
    doi,
    r.status as status,
    r.error as error,
    case when r.status <> 'ok' then r.raw_response end as raw_response,
    content_hash
from answered
order by image_id
