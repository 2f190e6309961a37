{{ config(materialized='table', tags=['imsearch'], export=['jsonl', 'parquet'], export_path='images') }}
{#-
  images.jsonl of the reference: image_id, image_url, mime_type, license, doi, original_dataset_name, then the
  columns of seeds/imsearch/metadata.jsonl merged by image_id. Rights come from seeds/imsearch/rights_map.json:
  the exact file entry, else the longest matching prefix (the first listed among equally long ones), else the
  default; an empty license or doi falls back to the default's; a missing, empty or UNKNOWN dataset name becomes
  the part of image_id before its first '/' (UNKNOWN when there is none).
-#}
{%- set im = var('imsearch') -%}
{%- set mime = {'jpg': 'image/jpeg', 'jpeg': 'image/jpeg', 'png': 'image/png', 'webp': 'image/webp',
                'gif': 'image/gif', 'bmp': 'image/bmp', 'tif': 'image/tiff', 'tiff': 'image/tiff'} -%}
{%- set rule_type = '{"license": "VARCHAR", "doi": "VARCHAR", "dataset_name": "VARCHAR"}' -%}
with rights as (
    select to_json(r) as doc from {{ ref('rights_map') }} as r
),
rules as (
    select
        json_transform(doc -> '$.default', '{{ rule_type }}') as fallback,
        coalesce(json_transform(doc -> '$.files',
            '"MAP(VARCHAR, STRUCT(license VARCHAR, doi VARCHAR, dataset_name VARCHAR))"'), map()) as files,
        coalesce(json_transform(doc -> '$.prefixes',
            '[{"prefix": "VARCHAR", "license": "VARCHAR", "doi": "VARCHAR", "dataset_name": "VARCHAR"}]'), []) as prefixes
    from rights
),
checked as (
    select * from rules
    where case when fallback is null then error('seeds/imsearch/rights_map.json: the "default" entry '
        || '{"license", "doi", "dataset_name"} is missing; add it (use "UNKNOWN" where unknown)') else true end
),
prefix_rules as (
    select unnest(prefixes) as rule, generate_subscripts(prefixes, 1) as position from checked
),
longest_prefix as (
    select f.image_id, first(p.rule order by len(p.rule.prefix) desc, p.position) as rule
    from {{ ref('image_files') }} as f
    join prefix_rules as p on p.rule.prefix <> '' and starts_with(f.image_id, p.rule.prefix)
    group by f.image_id
),
resolved as (
    select
        f.image_id,
        f.extension,
        c.fallback,
        coalesce(
            c.files[f.image_id],
            case when lp.rule is not null then struct_pack(license := lp.rule.license, doi := lp.rule.doi,
                                                           dataset_name := lp.rule.dataset_name) end,
            c.fallback) as rule
    from {{ ref('image_files') }} as f
    cross join checked as c
    left join longest_prefix as lp using (image_id)
)
select
    r.image_id,
    rtrim('{{ im.image_base_url }}', '/') || '/' || ltrim(r.image_id, '/') as image_url,
    case r.extension
        {%- for ext, kind in mime.items() %}
        when '{{ ext }}' then '{{ kind }}'
        {%- endfor %}
        else 'application/octet-stream'
    end as mime_type,
    coalesce(nullif(r.rule.license, ''), r.fallback.license) as license,
    coalesce(nullif(r.rule.doi, ''), r.fallback.doi) as doi,
    case when coalesce(r.rule.dataset_name, '') in ('', 'UNKNOWN')
        then coalesce(nullif(split_part(r.image_id, '/', 1), r.image_id), 'UNKNOWN')
        else r.rule.dataset_name end as original_dataset_name,
    m.* exclude (image_id)
from resolved as r
left join {{ ref('metadata') }} as m using (image_id)
order by r.image_id
