{%- set selected = grounding_step('image_grounding', '1') == 'on' -%}
-- Step 1, phrase grounding, when selected: one call per image that has expressions, listing them all. Each
-- expression gets the boxes answered for exactly its text (the first answer with that text; at most 10 boxes,
-- already pixel xyxy clamped to the image by the prompt's box_fields), and box ids numbered per image.
-- Not selected: the expressions pass through as they are.
with extracted as (
    select
        extracted.image_id,
        extracted.expressions,
        images.image_path,
        images.width,
        images.height
    from {{ ref('grounding_extracted') }} as extracted
    join {{ ref('grounding_images') }} as images using (image_id)
)
{% if selected %},

asked as (
    select
        image_id,
        grounding_ground_phrases(to_json(list_transform(expressions, lambda e: e.text))::varchar,
                                 width, height, image_path) as answer
    from extracted
    where len(expressions) > 0
),

answered as (
    select image_id, grounding.text, grounding.bboxes, grounding.scores
    from (
        select image_id, unnest(answer.groundings) as grounding, generate_subscripts(answer.groundings, 1) as n
        from asked
    )
    qualify row_number() over (partition by image_id, grounding.text order by n) = 1
),

expressions as (
    select
        image_id,
        unnest(expressions) as expression,
        generate_subscripts(expressions, 1) as n
    from extracted
),

boxed as (
    select
        expressions.image_id,
        expressions.n,
        expressions.expression,
        coalesce(list_transform(answered.bboxes[1:10], lambda box, i: {
            'bbox': box::integer[], 'bbox_score': answered.scores[i]::double}), []) as boxes
    from expressions
    left join answered
        on answered.image_id = expressions.image_id and answered.text = expressions.expression.text
),

numbered as (
    select
        image_id,
        list(struct_update(expression, instances := list_transform(boxes, lambda box, j: {
            'bbox_id': 'box_' || lpad((box_offset + j - 1)::varchar, 5, '0'),
            'bbox': box.bbox,
            'bbox_score': box.bbox_score})) order by n) as expressions
    from (
        select
            *,
            coalesce(sum(len(boxes)) over (partition by image_id order by n
                                           rows between unbounded preceding and 1 preceding), 0) as box_offset
        from boxed
    )
    group by image_id
)

select
    extracted.image_id,
    coalesce(numbered.expressions, extracted.expressions) as expressions,
    coalesce(asked.answer.status, 'no expressions') as status,
    asked.answer.error
from extracted
left join numbered using (image_id)
left join asked using (image_id)
{% else %}

select image_id, expressions, 'skipped' as status, null::varchar as error
from extracted
{% endif %}
