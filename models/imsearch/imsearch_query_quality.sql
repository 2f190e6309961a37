{{ config(materialized='table', tags=['imsearch'], export=['jsonl'], export_path='summary/query_quality') }}
-- Per query: candidates, judged positives / negatives, ground-truth positives / negatives and agreement.
select
    q.query_id,
    any_value(q.query_text) as query_text,
    any_value(t.truth_target) as truth_target,
    count(*) as candidates,
    count_if(q.relevance_label = 1) as positives,
    count_if(q.relevance_label = 0) as negatives,
    count_if(t.truth_relevance = 1) as truth_positives,
    count_if(t.truth_relevance = 0) as truth_negatives,
    round(avg(t.agrees::INTEGER), 4) as agreement,
    any_value(q.judge_status) as judge_status
from {{ ref('qrels') }} as q
left join {{ ref('imsearch_relevance_truth') }} as t using (query_id, image_id)
group by q.query_id
order by q.query_id
