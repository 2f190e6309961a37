{%- set selected = grounding_step('image_referring_expression', '2') == 'on' -%}
-- Step 2, grounding expressions, when selected: the regions of step 0 and the caption of step 1, merged by
-- image, go to one call per image that has regions; each answered expression with a text and boxes (at most
-- 10, pixels) becomes an expression, numbered per image (expressions and boxes). A failed call leaves the image
-- without expressions. Not selected: the seed's expressions (the resume input) pass through.
with merged as (
    select
        seeds.image_id,
        seeds.image_path,
        seeds.width,
        seeds.height,
        seeds.expressions,
        regions.regions,
        captions.caption
    from {{ ref('refexp_seed_records') }} as seeds
    join {{ ref('refexp_regions') }} as regions using (image_id)
    join {{ ref('refexp_captions') }} as captions using (image_id)
)
{% if selected %},

asked as (
    select
        image_id,
        refexp_ground_expressions(
            to_json(list_transform(regions, lambda region: {
                'description': region.description,
                'type': region.type,
                'color': region.color,
                'bbox_2d': {{ norm1000_box('region.bbox') }}
            }))::varchar,
            caption,
            image_path) as answer
    from merged
    where len(regions) > 0 and width is not null
),

answered as (
    select
        image_id,
        trim(expression.text) as text,
        list_transform(expression.bboxes[1:10], lambda box, i: {
            'bbox': box::integer[], 'bbox_score': expression.scores[i]::double}) as boxes,
        row_number() over (partition by image_id order by n) as n
    from (
        select image_id, unnest(answer.expressions) as expression, generate_subscripts(answer.expressions, 1) as n
        from asked
    )
    where trim(expression.text) <> '' and len(expression.bboxes) > 0
),

numbered as (
    select
        image_id,
        list({
            'expression_id': 'expr_' || lpad((n - 1)::varchar, 5, '0'),
            'text': text,
            'char_span': null::integer[],
            'noun_chunk': null::varchar,
            'instances': list_transform(boxes, lambda box, j: {
                'bbox_id': 'box_' || lpad((box_offset + j - 1)::varchar, 5, '0'),
                'bbox': box.bbox,
                'bbox_score': box.bbox_score
            }),
            'verified': null::boolean
        } order by n) as expressions
    from (
        select
            *,
            coalesce(sum(len(boxes)) over (partition by image_id order by n
                                           rows between unbounded preceding and 1 preceding), 0) as box_offset
        from answered
    )
    group by image_id
)

select
    merged.image_id,
    coalesce(numbered.expressions, []) as expressions,
    coalesce(asked.answer.status, 'no regions') as status,
    asked.answer.error
from merged
left join asked using (image_id)
left join numbered using (image_id)
{% else %}

select image_id, expressions, 'skipped' as status, null::varchar as error
from merged
{% endif %}
