{{ config(materialized='table', tags=['imsearch'], export=['jsonl', 'parquet'], export_path='qrels_with_score') }}
{#-
  qrels_with_score.jsonl of the reference: qrels plus one similarity column (vars.imsearch.similarity.column)
  between query_text and the image, null where it failed. clip_scorer() says what produces it: open_clip with the
  configured model and pretrained tag when those weights are in the local caches, else the configured fallback
  (scene_match: the query's colours, shapes and background read against the scene analysis of the pixels).
  Which one it was is in similarity_scorer, on every row. Scores are cached per (text, image content, scorer).
-#}
{%- set sim = var('imsearch').similarity -%}
with scorer as (
    select clip_scorer('{{ sim.model }}', '{{ sim.pretrained }}', '{{ sim.fallback | default("") }}') as scorer
),
pairs as (
    select distinct q.query_text, f.path
    from {{ ref('qrels') }} as q
    join {{ ref('image_files') }} as f using (image_id)
    where q.query_text is not null
),
scored as materialized (
    select p.query_text, p.path, clip_similarity(p.query_text, p.path, s.scorer) as r
    from pairs as p cross join scorer as s
)
select
    q.*,
    s.r.score as "{{ sim.column | default('similarity_score') }}",
    coalesce(s.r.scorer, (select scorer from scorer)) as similarity_scorer,
    s.r.error as similarity_error
from {{ ref('qrels') }} as q
join {{ ref('image_files') }} as f using (image_id)
left join scored as s on s.query_text = q.query_text and s.path = f.path
order by q.query_id, q.candidate_rank
