{{ config(materialized='table', tags=['imsearch']) }}
{#-
  Ground-truth relevance of every judged pair, from the sample's seeds/scene_truth.jsonl (docs/imsearch.md):
  a query's target is its seed image's largest object (by painted area, ties to the lower object_id) on the seed's
  background tone; an image is relevant when it has an object of that colour and shape on a background of that
  tone. The judge never sees this: it reads only the annotations.
-#}
{%- set folder = var('imsearch').image_seed -%}
with truth as (
    select substr(image_path, len('{{ folder }}/') + 1) as image_id, background.tone as tone, objects
    from {{ ref('scene_truth') }}
    where starts_with(image_path, '{{ folder }}/')
),
targets as (
    select p.query_id,
        any_value(t.tone) as tone,
        first(o.color order by o.area_px desc, o.object_id) as color,
        first(o.shape order by o.area_px desc, o.object_id) as shape
    from {{ ref('query_plan') }} as p
    join truth as t on t.image_id = p.seed_image_ids[1]
    cross join unnest(t.objects) as u(o)
    group by p.query_id
)
select
    q.query_id,
    q.image_id,
    q.candidate_rank,
    q.candidate_role,
    q.judge_status,
    g.color || ' ' || g.shape || ' on a ' || g.tone || ' background' as truth_target,
    q.relevance_label,
    (t.tone = g.tone and len(list_filter(t.objects, lambda o: o.color = g.color and o.shape = g.shape)) > 0)::INTEGER
        as truth_relevance,
    q.relevance_label = truth_relevance as agrees
from {{ ref('qrels') }} as q
join targets as g using (query_id)
join truth as t using (image_id)
order by q.query_id, q.candidate_rank
