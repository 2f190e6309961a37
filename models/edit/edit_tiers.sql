-- The reference's train-pairs tiers: per group, the candidates whose primary metric is known, its direction
-- applied (vars.edit.<task>.train_pairs), z-scored against the group (population standard deviation); tier C
-- when z <= threshold_failure, A when z > threshold_elite, else B. A group whose z-scores are all undefined
-- (fewer than two candidates, or no spread) has no valid z and makes no pairs.
{{ config(materialized='table', tags=['edit']) }}
with settings as (
    select * from {{ ref('edit_config') }}
),
scored as (
    select
        m.item_key,
        m.key,
        m.instruction,
        m.source_image_path,
        m.edited_image_path,
        m.lpips,
        m.emd,
        m.ssim,
        case s.primary_key when 'lpips' then m.lpips when 'emd' then m.emd else m.ssim end as primary_value,
        s.primary_direction,
        s.threshold_failure,
        s.threshold_elite
    from {{ ref('unedit_metrics') }} as m
    cross join settings as s
),
known as (
    select *, primary_direction * primary_value as directed
    from scored
    where primary_value is not null and not isnan(primary_value)
),
spread as (
    select key, count(*) as group_candidates, avg(directed) as group_mean, stddev_pop(directed) as group_std
    from known
    group by key
),
z as (
    select
        known.*,
        spread.group_candidates,
        spread.group_std >= 1e-6 as z_valid,
        case when spread.group_std >= 1e-6 then (known.directed - spread.group_mean) / spread.group_std else 0.0 end
            as z_unedit_area
    from known
    join spread using (key)
)
select
    item_key,
    key,
    instruction,
    source_image_path,
    edited_image_path,
    lpips,
    emd,
    ssim,
    primary_value,
    group_candidates,
    z_valid,
    z_unedit_area,
    z_unedit_area as global_z_score,
    case
        when z_unedit_area <= threshold_failure then 'C'
        when z_unedit_area > threshold_elite then 'A'
        else 'B'
    end as tier
from z
order by key, item_key
