-- The reference's <task>_grouped.jsonl: one line per key (a source image and an instruction) with every
-- candidate's paths, instruction and unedited-area metrics; a metric that could not be computed is null and its
-- reason is in unedit_metrics. Exported to warehouse/exports/edit/<task>_grouped.jsonl.
{{ config(materialized='table', tags=['edit'], export=['jsonl'], export_path='edit/' ~ var('edit_task') ~ '_grouped') }}
select
    key,
    list({
        'source_image_path': source_image_path,
        'edited_image_path': edited_image_path,
        'instruction': instruction,
        'unedit_area': {'lpips': lpips, 'emd': emd, 'ssim': ssim}
    } order by item_key) as results
from {{ ref('unedit_metrics') }}
group by key
order by key
