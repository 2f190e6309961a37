{%- set selected = grounding_step('image_referring_expression', '1') == 'on' -%}
-- Step 1, image caption, when selected: one call per image. A failed call keeps the seed caption. Not selected:
-- the seed caption passes through. Independent of step 0 (refexp_regions): the two run at the same time.
with seeds as (
    select * from {{ ref('refexp_seed_records') }}
)
{% if selected %},

asked as (
    select image_id, refexp_caption_image(image_path) as answer
    from seeds
)

select
    seeds.image_id,
    coalesce(asked.answer.caption, seeds.caption) as caption,
    asked.answer.status,
    asked.answer.error
from seeds
join asked using (image_id)
{% else %}

select image_id, caption, 'skipped' as status, null::varchar as error
from seeds
{% endif %}
