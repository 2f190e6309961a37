{%- set selected = grounding_step('image_referring_expression', '0') == 'on' -%}
-- Step 0, region expressions, when selected: one call per image with boxes, which lists them (type and box on
-- the 0-1000 scale the prompt declares) and gets back each box's type, colour and description; the answer's
-- boxes come back as pixels. A failed call keeps the seed regions. Not selected: the seed regions pass through.
-- Independent of step 1 (refexp_captions): the runner executes the two at the same time.
with seeds as (
    select * from {{ ref('refexp_seed_records') }}
)
{% if selected %},

asked as (
    select
        image_id,
        refexp_describe_regions(
            to_json(list_transform(regions, lambda region: {
                'type': region.type,
                'bbox_2d': {{ norm1000_box('region.bbox') }}
            }))::varchar,
            image_path) as answer
    from seeds
    where len(regions) > 0 and width is not null
)

select
    seeds.image_id,
    case when asked.answer.status = 'ok' then list_transform(asked.answer.regions, lambda region: {
        'bbox': region.bbox_2d::integer[],
        'type': region.type,
        'color': region.color,
        'description': region.description
    }) else seeds.regions end as regions,
    coalesce(asked.answer.status, 'no boxes') as status,
    asked.answer.error
from seeds
left join asked using (image_id)
{% else %}

select image_id, regions, 'skipped' as status, null::varchar as error
from seeds
{% endif %}
