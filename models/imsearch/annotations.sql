{{ config(materialized='incremental', unique_key='image_id', tags=['imsearch'], export=['jsonl', 'parquet'],
          export_path='annotations') }}
{#-
  annotations.jsonl of the reference: image_id, summary, one column per taxonomy and boolean facet, tags,
  confidence {facet: 0..1}, license, doi. The vision annotation function sees the image, the chosen metadata
  columns and the annotation spec built from vars.imsearch; every answer is checked here against that spec
  (allowed values, every facet answered once, tags from the vocabulary within the count bounds, confidences in
  [0, 1]). A row that fails the check keeps its answer with status 'invalid' and the reasons in `error`.
  Incremental: a run annotates only images that are new, whose file changed, or whose last answer was not ok
  (with the call cache, an unchanged failure is replayed unless --retry-failed).
-#}
{%- set im = var('imsearch') -%}
{%- set taxonomy = im.taxonomy_facets -%}
{%- set booleans = im.boolean_facets or [] -%}
{%- set vocab = im.tags.vocabulary -%}
{%- set spec = {'taxonomy': taxonomy, 'booleans': booleans,
                'tags': {'vocabulary': vocab, 'min': im.tags.min, 'max': im.tags.max}} -%}
{%- set meta_columns = im.vision_metadata_columns or [] -%}
{%- macro sql_list(values) -%}[{% for v in values %}'{{ v }}'{{ ', ' if not loop.last }}{% endfor %}]::VARCHAR[]{%- endmacro -%}
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
answered as materialized (
    select *, imsearch_vision_annotation(path, metadata, '{{ spec | tojson }}') as r
    from todo
),
unpacked as (
    select *,
        {%- for f in taxonomy %}
        list_filter(r.taxonomy, lambda x: x.facet = '{{ f }}') as t_{{ loop.index0 }},
        {%- endfor %}
        {%- for f in booleans %}
        list_filter(r.flags, lambda x: x.facet = '{{ f }}') as b_{{ loop.index0 }},
        {%- endfor %}
        list_filter(r.tags, lambda t, i: list_position(r.tags, t) = i) as distinct_tags,
        list_filter(list_transform(r.taxonomy, lambda x: x.facet), lambda f: not list_contains({{ sql_list(taxonomy | list) }}, f))
            || list_filter(list_transform(r.flags, lambda x: x.facet), lambda f: not list_contains({{ sql_list(booleans) }}, f))
            as extra_facets
    from answered
),
checked as (
    select *,
        list_filter([
            {%- for f, allowed in taxonomy.items() %}
            {%- set t = 't_' ~ loop.index0 %}
            case when len({{ t }}) = 0 then '{{ f }}: not answered'
                 when len({{ t }}) > 1 then '{{ f }}: answered ' || len({{ t }}) || ' times'
                 when not list_contains({{ sql_list(allowed) }}, {{ t }}[1].value)
                     then '{{ f }}: ' || to_json({{ t }}[1].value) || ' is not one of {{ allowed | join(", ") }}' end,
            {%- endfor %}
            {%- for f in booleans %}
            {%- set b = 'b_' ~ loop.index0 %}
            case when len({{ b }}) = 0 then '{{ f }}: not answered'
                 when len({{ b }}) > 1 then '{{ f }}: answered ' || len({{ b }}) || ' times' end,
            {%- endfor %}
            case when len(extra_facets) > 0 then 'facets outside the spec: ' || array_to_string(extra_facets, ', ') end,
            case when len(list_filter(r.tags, lambda t: not list_contains({{ sql_list(vocab) }}, t))) > 0
                 then 'tags outside the vocabulary: '
                      || array_to_string(list_filter(r.tags, lambda t: not list_contains({{ sql_list(vocab) }}, t)), ', ') end,
            case when len(distinct_tags) < len(r.tags) then 'repeated tags' end,
            case when len(distinct_tags) not between {{ im.tags.min }} and {{ im.tags.max }}
                 then len(distinct_tags) || ' tags, expected {{ im.tags.min }} to {{ im.tags.max }}' end
        ], lambda p: p is not null) as problems
    from unpacked
)
select
    a.image_id,
    a.r.summary as summary,
    {%- for f in taxonomy %}
    a.t_{{ loop.index0 }}[1].value as "{{ f }}",
    {%- endfor %}
    {%- for f in booleans %}
    a.b_{{ loop.index0 }}[1].value as "{{ f }}",
    {%- endfor %}
    coalesce(a.distinct_tags, []) as tags,
    case when a.r.status = 'ok' then struct_pack(
        {%- for f in taxonomy %}"{{ f }}" := a.t_{{ loop.index0 }}[1].confidence{{ ', ' if not loop.last or booleans }}{% endfor %}
        {%- for f in booleans %}"{{ f }}" := a.b_{{ loop.index0 }}[1].confidence{{ ', ' if not loop.last }}{% endfor %}) end as confidence,
    a.license,
    a.doi,
    case when a.r.status <> 'ok' then 'failed' when len(a.problems) > 0 then 'invalid' else 'ok' end as status,
    case when a.r.status <> 'ok' then a.r.error when len(a.problems) > 0 then array_to_string(a.problems, '; ') end as error,
    case when a.r.status <> 'ok' or len(a.problems) > 0 then a.r.raw_response end as raw_response,
    a.content_hash
from checked as a
order by a.image_id
