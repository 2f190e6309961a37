{{ config(materialized='table', tags=['imsearch'], export=['jsonl', 'parquet'], export_path='qrels') }}
{#-
  qrels.jsonl of the reference: one row per (query, candidate) with query_text and relevance_label, then the
  candidate's annotation columns. The judge is called once per query with the seed and candidate annotations
  (no rights, no sources). Its judgments must name each candidate exactly once (an output check of the prompt,
  prompts/imsearch/relevance_judge): an answer that misses, adds or repeats an image is asked again with the
  problem named, and after the backend's last attempt the call fails. The query is kept with judge_status
  'failed', null labels and the reason in judge_error, and `dataproj run --retry-failed` asks again for those
  queries only. Queries whose plan failed keep their seed rows with that error.
-#}
{%- set im = var('imsearch') -%}
{%- set facets = (im.taxonomy_facets | list) + (im.boolean_facets or []) -%}
with plan as (
    select query_id, seed_image_ids, candidate_image_ids, candidate_roles, plan_status, plan_error
    from {{ ref('query_plan') }}
),
candidate_rows as (
    select query_id, len(seed_image_ids) as n_seeds,
        unnest(candidate_image_ids) as image_id,
        unnest(candidate_roles) as candidate_role,
        generate_subscripts(candidate_image_ids, 1) as candidate_rank
    from plan
),
records as (  -- what the judge reads of an image
    select image_id, struct_pack(image_id := image_id, summary := summary,
        {%- for f in facets %} "{{ f }}" := "{{ f }}",{% endfor %} tags := tags) as record
    from {{ ref('annotations') }}
),
payload as (
    select c.query_id,
        to_json(list(r.record order by c.candidate_rank) filter (where c.candidate_rank <= c.n_seeds)) as seed_images,
        to_json(list(r.record order by c.candidate_rank)) as candidates
    from candidate_rows as c
    join records as r using (image_id)
    join plan as p using (query_id)
    where p.plan_status = 'ok'
    group by c.query_id
),
judged as materialized (  -- one call per query, however many columns read its answer
    select query_id, imsearch_relevance_judge(query_id, seed_images, candidates) as r from payload
),
verdicts as (
    select query_id, r.query_text as query_text, r.judgments as judgments, r.status as judge_status,
        r.error as judge_error, case when r.status <> 'ok' then r.raw_response end as judge_raw_response
    from judged
)
select
    c.query_id,
    v.query_text,
    c.image_id,
    list_filter(v.judgments, lambda j: j.image_id = c.image_id)[1].relevance_label as relevance_label,
    a.confidence,
    a.summary,
    a.tags,
    {%- for f in facets %}
    a."{{ f }}",
    {%- endfor %}
    a.license,
    a.doi,
    c.candidate_rank,
    c.candidate_role,
    coalesce(v.judge_status, 'failed') as judge_status,
    case when p.plan_status <> 'ok' then p.plan_error else v.judge_error end as judge_error,
    v.judge_raw_response
from candidate_rows as c
join plan as p using (query_id)
left join verdicts as v using (query_id)
left join {{ ref('annotations') }} as a using (image_id)
order by c.query_id, c.candidate_rank
