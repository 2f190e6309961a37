{{ config(materialized='table', tags=['imsearch'], export=['jsonl'], export_path='summary/relevance_quality') }}
-- Agreement of the judge's relevance labels with the ground truth (imsearch_relevance_truth), over every judged
-- pair and per candidate role: accuracy, precision / recall / F1 of 'relevant', and Cohen's kappa.
with judged as (
    select * from {{ ref('imsearch_relevance_truth') }} where relevance_label is not null
),
scoped as (
    select 'all' as scope, 0 as scope_order, * from judged
    union all
    select candidate_role, 1, * from judged
),
counts as (
    select scope, min(scope_order) as scope_order, count(*) as pairs,
        count_if(relevance_label = 1 and truth_relevance = 1) as tp,
        count_if(relevance_label = 1 and truth_relevance = 0) as fp,
        count_if(relevance_label = 0 and truth_relevance = 1) as fn,
        count_if(relevance_label = 0 and truth_relevance = 0) as tn
    from scoped
    group by scope
)
select
    scope,
    pairs,
    tp + fn as truth_relevant,
    tp + fp as judged_relevant,
    round((tp + tn) / pairs, 4) as agreement,
    round(tp / nullif(tp + fp, 0), 4) as precision,
    round(tp / nullif(tp + fn, 0), 4) as recall,
    round(2 * tp / nullif(2 * tp + fp + fn, 0), 4) as f1,
    round(((tp + tn) / pairs - ((tp + fp) * (tp + fn) + (fn + tn) * (fp + tn)) / (pairs * pairs))
          / nullif(1 - ((tp + fp) * (tp + fn) + (fn + tn) * (fp + tn)) / (pairs * pairs), 0), 4) as kappa
from counts
order by scope_order, scope
