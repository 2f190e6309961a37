-- lpips, emd and ssim of each candidate's unedited area (mask 1 outside every grounded box), as the
-- reference defines them (docs/edit.md), from the unedit_area() SQL function. A metric that is NULL has its
-- reason: no box found, weights unavailable, not configured, no patch qualifies, or failed call: <error>.
{{ config(materialized='table', tags=['edit']) }}
with settings as (
    select metrics, metric_weights from {{ ref('edit_config') }}
),
regions as (
    select * from {{ ref('edit_regions') }}
),
measured as (
    select
        r.item_key,
        unedit_area(r.source_image_path, r.edited_image_path, r.boxes, s.metrics, s.metric_weights) as area
    from regions as r
    cross join settings as s
    where r.boxes is not null
)
select
    r.item_key,
    r.key,
    r.model_name,
    r.instruction,
    r.source_image_path,
    r.edited_image_path,
    r.boxes,
    m.area.lpips,
    m.area.emd,
    m.area.ssim,
    coalesce(r.region_reason, m.area.lpips_reason,
             case when m.area.lpips is null then 'failed call: ' || coalesce(m.area.error, 'no result') end)
        as lpips_reason,
    coalesce(r.region_reason, m.area.emd_reason,
             case when m.area.emd is null then 'failed call: ' || coalesce(m.area.error, 'no result') end)
        as emd_reason,
    coalesce(r.region_reason, m.area.ssim_reason,
             case when m.area.ssim is null then 'failed call: ' || coalesce(m.area.error, 'no result') end)
        as ssim_reason,
    case when r.region_reason is not null then 'skipped' else m.area.status end as metric_status,
    m.area.error as metric_error
from regions as r
left join measured as m using (item_key)
order by r.item_key
