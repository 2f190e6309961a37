-- Preference pairs as the reference's train-pairs builds them from grouped results: Elite_vs_Failure (A-C),
-- Normal_vs_Failure (B-C) and Elite_vs_Normal (A-B, global z margin >= elite_normal_margin); a pair is kept
-- when the winner's primary metric is not worse and, if secondary constraints are configured, their votes
-- favour it. head_tail keeps only A-C. The winner is put first or second by a hash salted with the seed
-- (the reference draws from one random.Random(42) stream), and gpt_response is the reference's exact text.
-- At most max_groups groups contribute, in key order. Exported to warehouse/exports/edit/<task>_train_pairs.jsonl.
{{ config(materialized='table', tags=['edit'], export=['jsonl'], export_path='edit/' ~ var('edit_task') ~ '_train_pairs') }}
with settings as (
    select * from {{ ref('edit_config') }}
),
tiered as (
    select * from {{ ref('edit_tiers') }} where z_valid
),
strategies as (
    select * from (values
        ('A', 'C', 'Elite_vs_Failure', false),
        ('B', 'C', 'Normal_vs_Failure', false),
        ('A', 'B', 'Elite_vs_Normal', true)
    ) as s(winner_tier, loser_tier, pair_type, needs_margin)
),
raw_pairs as (
    select
        w.key,
        st.pair_type,
        w.item_key as chosen_item_key,
        l.item_key as rejected_item_key,
        w.instruction,
        w.source_image_path,
        w.edited_image_path as chosen_path,
        l.edited_image_path as rejected_path,
        w.global_z_score - l.global_z_score as z_margin,
        s.primary_direction * (w.primary_value - l.primary_value) as primary_gain,
        -- secondary constraints: +1 / -1 / 0 per configured metric (the reference's 1e-6 tolerance), null
        -- where the metric is not constrained or either value is missing
        [
            {%- for metric in ['lpips', 'emd', 'ssim'] %}
            case when s.{{ metric }}_constraint is not null and w.{{ metric }} is not null and l.{{ metric }} is not null
                then case
                    when s.{{ metric }}_constraint * (w.{{ metric }} - l.{{ metric }}) > 1e-6 then 1
                    when s.{{ metric }}_constraint * (w.{{ metric }} - l.{{ metric }}) < -1e-6 then -1
                    else 0
                end
            end{{ ',' if not loop.last }}
            {%- endfor %}
        ] as votes,
        (s.lpips_constraint is not null)::int + (s.emd_constraint is not null)::int
            + (s.ssim_constraint is not null)::int as constraints,
        s.filt_out_strategy,
        s.pair_seed,
        s.max_groups
    from tiered as w
    join tiered as l on l.key = w.key and l.item_key <> w.item_key
    join strategies as st on st.winner_tier = w.tier and st.loser_tier = l.tier
    cross join settings as s
    where w.global_z_score - l.global_z_score >= case when st.needs_margin then s.elite_normal_margin else 0.0 end
),
robust as (
    select *
    from raw_pairs
    where primary_gain >= -1e-6
      and (constraints = 0
           or (len(list_filter(votes, lambda v: v is not null)) > 0 and list_sum(list_filter(votes, lambda v: v is not null)) > 0))
      and (filt_out_strategy = 'three_tiers' or pair_type = 'Elite_vs_Failure')
),
capped as (
    select *, dense_rank() over (order by key) as group_number
    from robust
),
ordered as (
    select
        *,
        hash(pair_seed::varchar || ':' || chosen_item_key || ':' || rejected_item_key) % 2 = 0 as chosen_first
    from capped
    where group_number <= max_groups
)
select
    case when chosen_first then [chosen_path, rejected_path] else [rejected_path, chosen_path] end
        as edited_image_paths,
    instruction,
    source_image_path,
    '```json' || chr(10) || '{' || chr(10) || '    "winner": "' || (case when chosen_first then 'Image A' else 'Image B' end)
        || '"' || chr(10) || '}' || chr(10) || '```' || chr(10) as gpt_response,
    case when chosen_first then 'Image A' else 'Image B' end as winner,
    key,
    pair_type,
    chosen_item_key,
    rejected_item_key,
    z_margin
from ordered
order by key, chosen_item_key, rejected_item_key
