{{ config(export=['jsonl', 'parquet']) }}
-- The sample images joined with their ground truth: the input every pipeline starts from.
select
    truth.image_path,
    truth.source,
    image.extension as file_format,
    image.size_bytes,
    image.content_hash,
    truth.width,
    truth.height,
    truth.background.kind as background_kind,
    truth.background.tone as background_tone,
    len(truth.objects) as n_objects,
    list_distinct(list_transform(truth.objects, lambda o: o.shape)) as shapes,
    list_distinct(list_transform(truth.objects, lambda o: o.color)) as colors
from {{ ref('scene_truth') }} as truth
join {{ ref('scenes') }} as image
    on image.path = 'seeds/' || truth.image_path
order by truth.image_path
