-- The judges between candidates of the same source and instruction (vars.edit.<task>.judges): pairwise_judge
-- on every pair of a group (A = the earlier item key), and viescore per candidate, the pair's viescore winner
-- derived from the two scores (so each candidate is scored once, not once per pair). 'Failed' is the judges'
-- soft failure; the error is kept.
{%- set task_config = var('edit', {}).get(var('edit_task'), {}) or {} %}
{%- set judges = task_config.get('judges', {}) or {} %}
{%- set pairwise = ((judges.get('pairwise_judge') or {}).get('function') or 'pairwise_judge')
      if 'pairwise_judge' in judges else none %}
{%- set vie = ((judges.get('viescore') or {}).get('function') or 'viescore') if 'viescore' in judges else none %}
{{ config(materialized='table', tags=['edit']) }}
with candidates as (
    select item_key, key, instruction, source_image_path, edited_image_path
    from {{ ref('edit_candidates') }}
    where image_error is null
),
pairs as (
    select
        a.key,
        a.instruction,
        a.source_image_path,
        a.item_key as item_key_a,
        b.item_key as item_key_b,
        a.edited_image_path as image_a,
        b.edited_image_path as image_b
    from candidates as a
    join candidates as b on a.key = b.key and a.item_key < b.item_key
),
verdicts as (
    select
        pairs.*,
        {% if pairwise -%}
        {{ pairwise }}(instruction, source_image_path, image_a, image_b)
        {%- else -%}
        null::struct(value varchar, error varchar)
        {%- endif %} as verdict
    from pairs
),
scores as (
    select
        item_key,
        {% if vie -%}
        {{ vie }}(instruction, source_image_path, [edited_image_path])
        {%- else -%}
        null::struct(value varchar, error varchar, meta struct(vie_score double[]))
        {%- endif %} as score
    from candidates
)
select
    v.key,
    v.instruction,
    v.source_image_path,
    v.item_key_a,
    v.item_key_b,
    v.image_a,
    v.image_b,
    v.verdict.value as pairwise_winner,
    v.verdict.error as pairwise_error,
    sa.score.meta.vie_score[1] as viescore_a,
    sb.score.meta.vie_score[1] as viescore_b,
    case
        when sa.score is null or sb.score is null then null
        when sa.score.value = 'Failed' or sb.score.value = 'Failed' then 'Failed'
        when sa.score.meta.vie_score[1] > sb.score.meta.vie_score[1] then 'Image A'
        when sa.score.meta.vie_score[1] < sb.score.meta.vie_score[1] then 'Image B'
        else 'Tie'
    end as viescore_winner,
    coalesce(sa.score.error, sb.score.error) as viescore_error
from verdicts as v
left join scores as sa on sa.item_key = v.item_key_a
left join scores as sb on sb.item_key = v.item_key_b
order by v.key, v.item_key_a, v.item_key_b
