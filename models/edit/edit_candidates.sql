-- One row per candidate edit of the selected task's pool (var edit_task): the reference's item key
-- `<key>_model_<editor>`, grouped by `key` (a source image and an instruction). Groups with fewer than two
-- candidates are dropped, as the reference drops them. Image sizes come from the built-in image_info().
{{ config(materialized='table', tags=['edit']) }}
with pool as (
    select * from {{ ref(var('edit_task')) }}
),
meta as (
    select pool.edit_task, item.key, item.instruction, item.image_path as source_image_path
    from pool, unnest(pool.meta_info) as meta_items(item)
),
results as (
    select editor.name as model_name, result.key, result.image_path as edited_image_path
    from pool, unnest(pool.models) as editors(editor), unnest(editor.results) as editor_results(result)
),
candidates as (
    select
        meta.edit_task,
        meta.key || '_model_' || results.model_name as item_key,
        meta.key,
        results.model_name,
        meta.instruction,
        meta.source_image_path,
        results.edited_image_path,
        count(*) over (partition by meta.key) as group_size
    from meta
    join results using (key)
),
facts as (
    select
        candidates.*,
        image_info(source_image_path) as source_info,
        image_info(edited_image_path) as edited_info
    from candidates
    where group_size >= 2
)
select
    edit_task,
    item_key,
    key,
    model_name,
    instruction,
    source_image_path,
    edited_image_path,
    source_info.width as source_width,
    source_info.height as source_height,
    edited_info.width as edited_width,
    edited_info.height as edited_height,
    coalesce(source_info.error, edited_info.error) as image_error
from facts
order by item_key
