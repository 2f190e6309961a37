{{ config(materialized='table', tags=['imsearch'], export=['jsonl', 'parquet'], export_path='seeds') }}
-- seeds.jsonl of the reference: num_seeds queries over the sorted image ids, seed i = ids[int(i * N / num_seeds)],
-- ids query_001, query_002, ... (the step is a float, as in the reference, so the same images are chosen).
{%- set qp = var('imsearch').query_plan %}
with ids as (
    select image_id, row_number() over (order by image_id) - 1 as position, count(*) over () as n
    from {{ ref('images') }}
),
total as (
    select case when max(n) >= {{ qp.num_seeds }} then max(n)
        else error('vars.imsearch.query_plan.num_seeds is {{ qp.num_seeds }} but there are only '
                   || coalesce(max(n), 0) || ' images: lower num_seeds in project.yml or add images') end as n
    from ids
)
select
    printf('%s%03d', '{{ qp.seed_prefix | default("query_") }}', k + 1) as query_id,
    [ids.image_id] as seed_image_ids
from range({{ qp.num_seeds }}) as s(k)
cross join total
join ids on ids.position = floor(k * (total.n::DOUBLE / {{ qp.num_seeds }}))
order by k
