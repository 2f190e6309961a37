{{ config(materialized='table', tags=['imsearch'], export=['jsonl', 'parquet'], export_path='qrels') }}
{#-
  qrels.jsonl of the reference: one row per (query, candidate) with query_text and relevance_label, then the
  candidate's annotation columns. The judge is called once per query with the seed and candidate annotations
  (no rights, no sources). Its judgments must cover exactly the candidates: an answer that misses, adds or
  repeats an image is asked again (vars.imsearch.judge_attempts in all), and after the last attempt the query is
  kept with judge_status 'failed', null labels and the reason in judge_error; raising judge_attempts retries only
  those queries. Queries whose plan failed keep their seed rows with that error.
-#}
{%- set im = var('imsearch') -%}
{%- set facets = (im.taxonomy_facets | list) + (im.boolean_facets or []) -%}
{%- set attempts = im.judge_attempts | default(2) -%}
{%- macro judged(r) -%}list_transform({{ r }}.judgments, lambda j: j.image_id){%- endmacro -%}
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
{%- for attempt in range(1, attempts + 1) %}
answer_{{ attempt }} as materialized (
    select query_id, seed_images, candidates,
        imsearch_relevance_judge(query_id, seed_images, candidates, {{ attempt }}) as r, {{ attempt }} as attempt
    from {% if attempt == 1 %}payload{% else %}checked_{{ attempt - 1 }} where not covered{% endif %}
),
checked_{{ attempt }} as (
    select a.*, p.candidate_image_ids,
        a.r.status = 'ok' and list_sort({{ judged('a.r') }}) = list_sort(p.candidate_image_ids) as covered
    from answer_{{ attempt }} as a join plan as p using (query_id)
),
{%- endfor %}
final as (
    select * from (
        {%- for attempt in range(1, attempts + 1) %}
        select * from checked_{{ attempt }}{{ ' union all' if not loop.last }}
        {%- endfor %}
    )
    qualify row_number() over (partition by query_id order by covered desc, attempt desc) = 1
),
verdicts as (
    select query_id, attempt, covered, r.query_text as query_text, r.judgments as judgments,
        case when covered then 'ok' else 'failed' end as judge_status,
        case
            when r.status <> 'ok' then r.error
            when not covered then 'judgments cover ' || len(list_intersect({{ judged('r') }}, candidate_image_ids))
                || ' of ' || len(candidate_image_ids) || ' candidates after ' || attempt || ' attempt(s)'
                || coalesce('; missing: ' || nullif(array_to_string(list_filter(candidate_image_ids,
                       lambda c: not list_contains({{ judged('r') }}, c)), ', '), ''), '')
                || coalesce('; not candidates: ' || nullif(array_to_string(list_filter({{ judged('r') }},
                       lambda j: not list_contains(candidate_image_ids, j)), ', '), ''), '')
                || case when len({{ judged('r') }}) > len(list_distinct({{ judged('r') }}))
                        then '; some judged twice' else '' end
        end as judge_error,
        case when not covered then r.raw_response end as judge_raw_response
    from final
)
select
    c.query_id,
    v.query_text,
    c.image_id,
    case when v.covered then list_filter(v.judgments, lambda j: j.image_id = c.image_id)[1].relevance_label
    end as relevance_label,
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
    v.attempt as judge_attempts,
    v.judge_raw_response
from candidate_rows as c
join plan as p using (query_id)
left join verdicts as v using (query_id)
left join {{ ref('annotations') }} as a using (image_id)
order by c.query_id, c.candidate_rank
