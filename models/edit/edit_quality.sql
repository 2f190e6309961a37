-- How well the pipeline does on the sample, against the generator's truth (seeds/edits/edit_truth.jsonl):
-- every group has a faithful edit, one that also shifts the background and one that failed to edit.
--   grounding_accuracy: the grounded region matches the edited object (IoU >= 0.5 of the boxes' hull), or no box
--     is found where there is none (a failed add);
--   faithful_first_by_metrics: the faithful edit is strictly best by the primary unedited-area metric;
--   faithful_over_shift_by_metrics: it beats the background-shifted edit by that metric;
--   faithful_first_by_<judge>: it wins both its pairwise verdicts / has the highest viescore;
--   faithful_first_by_judges_then_metrics: first when the judges rank (viescore if configured, else pairwise
--     wins) and the unedited-area metric breaks their ties.
-- Unedited-area metrics cannot see a failed edit on a removal or recolouring (nothing changed outside the
-- box): that is what the judges are for (docs/edit.md).
{{ config(materialized='table', tags=['edit']) }}
with settings as (
    select * from {{ ref('edit_config') }}
),
truth as (
    select t.*
    from {{ ref('edit_truth') }} as t
    join settings as s on t.edit_task = s.edit_task
),
measured as (
    select
        m.*,
        t.variant,
        t.edit_box,
        s.primary_direction * case s.primary_key when 'lpips' then m.lpips when 'emd' then m.emd else m.ssim end
            as directed
    from {{ ref('unedit_metrics') }} as m
    join truth as t using (item_key)
    cross join settings as s
),
hulls as (
    select
        item_key,
        variant,
        edit_box,
        ssim_reason,
        list_min(list_transform(boxes, lambda b: b[1])) as x1,
        list_min(list_transform(boxes, lambda b: b[2])) as y1,
        list_max(list_transform(boxes, lambda b: b[3])) as x2,
        list_max(list_transform(boxes, lambda b: b[4])) as y2
    from measured
),
box_overlap as (
    select
        hulls.*,
        greatest(0, least(x2, edit_box[3]) - greatest(x1, edit_box[1]))
            * greatest(0, least(y2, edit_box[4]) - greatest(y1, edit_box[2])) as intersection,
        (x2 - x1) * (y2 - y1) + (edit_box[3] - edit_box[1]) * (edit_box[4] - edit_box[2]) as area_sum
    from hulls
),
grounding as (
    select
        item_key,
        case
            -- a failed add leaves nothing to find on the edited image: "no box found" is the right answer
            when x1 is null then variant = 'no_edit' and ssim_reason = 'no box found' and s.ground_on = 'edited'
            else intersection / (area_sum - intersection) >= 0.5
        end as grounding_correct
    from box_overlap
    cross join settings as s
),
faithful as (
    select key, directed as faithful_directed, item_key as faithful_item
    from measured
    where variant = 'faithful'
),
metric_rank as (
    select
        f.key,
        f.faithful_directed is not null
            and coalesce(bool_and(m.directed is null or m.directed < f.faithful_directed)
                         filter (where m.variant <> 'faithful'), true) as faithful_first,
        f.faithful_directed is not null
            and coalesce(bool_and(m.directed is null or m.directed < f.faithful_directed)
                         filter (where m.variant = 'background_shift'), true) as faithful_over_shift
    from faithful as f
    join measured as m using (key)
    group by f.key, f.faithful_directed
),
judge_scores as (
    -- per candidate: its viescore, and how many of its pairwise verdicts it won
    select
        m.key,
        m.item_key,
        m.variant,
        m.directed,
        max(case when j.item_key_a = m.item_key then j.viescore_a else j.viescore_b end) as viescore,
        sum(case when (j.item_key_a = m.item_key and j.pairwise_winner = 'Image A')
                   or (j.item_key_b = m.item_key and j.pairwise_winner = 'Image B') then 1 else 0 end) as pairwise_wins
    from measured as m
    join {{ ref('judged') }} as j on j.key = m.key and m.item_key in (j.item_key_a, j.item_key_b)
    group by m.key, m.item_key, m.variant, m.directed
),
combined_rank as (
    -- the judges decide whether the instruction was followed, the unedited-area metric breaks their ties
    select
        key,
        variant,
        row_number() over (partition by key order by coalesce(viescore, pairwise_wins) desc nulls last,
                           directed desc nulls last, item_key) as position,
        count(*) over (partition by key, coalesce(viescore, pairwise_wins), directed) as tied
    from judge_scores
),
judge_rank as (
    select
        f.key,
        bool_and(case when j.item_key_a = f.faithful_item then j.pairwise_winner = 'Image A'
                      else j.pairwise_winner = 'Image B' end) as pairwise_first,
        bool_and(case when j.item_key_a = f.faithful_item then j.viescore_winner = 'Image A'
                      else j.viescore_winner = 'Image B' end) as viescore_first
    from faithful as f
    join {{ ref('judged') }} as j
        on j.key = f.key and f.faithful_item in (j.item_key_a, j.item_key_b)
    group by f.key
)
select
    (select edit_task from settings) as edit_task,
    (select count(distinct key) from measured) as groups,
    (select count(*) from measured) as candidates,
    (select avg(grounding_correct::int) from grounding) as grounding_accuracy,
    (select avg(faithful_first::int) from metric_rank) as faithful_first_by_metrics,
    (select avg(faithful_over_shift::int) from metric_rank) as faithful_over_shift_by_metrics,
    (select avg(pairwise_first::int) from judge_rank) as faithful_first_by_pairwise_judge,
    (select avg(viescore_first::int) from judge_rank) as faithful_first_by_viescore,
    (select avg((position = 1 and tied = 1)::int) from combined_rank where variant = 'faithful')
        as faithful_first_by_judges_then_metrics,
    (select primary_key from settings) as primary_metric,
    (select avg(ssim) from measured where variant = 'faithful') as mean_ssim_faithful,
    (select avg(ssim) from measured where variant = 'background_shift') as mean_ssim_background_shift,
    (select avg(ssim) from measured where variant = 'no_edit') as mean_ssim_no_edit,
    (select avg(lpips) from measured where variant = 'faithful') as mean_lpips_faithful,
    (select avg(lpips) from measured where variant = 'background_shift') as mean_lpips_background_shift,
    (select count(*) from measured where lpips is null) as lpips_null,
    (select count(*) from measured where emd is null) as emd_null,
    (select count(*) from {{ ref('train_pairs') }}) as train_pairs
