{%- set selected = grounding_step('image_referring_expression', '3') == 'on' -%}
-- Step 3, double check, when selected: one call per image with expressions, which lists them (id, text, boxes
-- on the 0-1000 scale) and gets back keep, update or remove for each (by expression_id; the first check of an
-- id counts). keep: verified. update: verified, with the checked text and boxes; a box keeps the id and score of
-- the original box it overlaps most, and an update never adds boxes. remove (or an update without boxes): the
-- expression is dropped. An expression the answer does not mention, or whose call failed, stays with
-- verified = false. Not selected: the expressions pass through.
with grounded as (
    select grounded.image_id, grounded.expressions, seeds.image_path, seeds.width, seeds.height
    from {{ ref('refexp_grounded') }} as grounded
    join {{ ref('refexp_seed_records') }} as seeds using (image_id)
)
{% if selected %},

asked as (
    select
        image_id,
        refexp_double_check(
            to_json(list_transform(expressions, lambda expression: {
                'expression_id': expression.expression_id,
                'text': expression.text,
                'bboxes': list_transform(expression.instances, lambda instance: {{ norm1000_box('instance.bbox') }})
            }))::varchar,
            image_path) as answer
    from grounded
    where len(expressions) > 0 and width is not null
),

checks as (
    select image_id, "check".expression_id, "check".action, "check".text, "check".bboxes
    from (
        select image_id, unnest(answer.checks) as "check", generate_subscripts(answer.checks, 1) as n
        from asked
    )
    qualify row_number() over (partition by image_id, "check".expression_id order by n) = 1
),

expressions as (
    select image_id, unnest(expressions) as expression, generate_subscripts(expressions, 1) as n
    from grounded
),

update_boxes as (
    select
        expressions.image_id,
        expressions.expression.expression_id,
        expressions.expression.instances as originals,
        unnest(checks.bboxes[1:len(expressions.expression.instances)])::integer[] as box,
        generate_subscripts(checks.bboxes[1:len(expressions.expression.instances)], 1) as j
    from expressions
    join checks
        on checks.image_id = expressions.image_id and checks.expression_id = expressions.expression.expression_id
    where checks.action = 'update'
),

updated as (
    select
        image_id,
        expression_id,
        list({'bbox_id': original.bbox_id, 'bbox': box, 'bbox_score': original.bbox_score} order by j) as instances
    from (
        select *, originals[list_position(overlap_areas, list_max(overlap_areas))] as original
        from (
            select
                *,
                list_transform(originals, lambda o:
                    greatest(0, least(box[3], o.bbox[3]) - greatest(box[1], o.bbox[1]))
                    * greatest(0, least(box[4], o.bbox[4]) - greatest(box[2], o.bbox[2]))) as overlap_areas
            from update_boxes
        )
    )
    group by image_id, expression_id
),

checked as (
    select
        expressions.image_id,
        expressions.n,
        case checks.action
            when 'keep' then struct_update(expressions.expression, verified := true)
            when 'update' then struct_update(expressions.expression, text := checks.text, verified := true,
                                             instances := updated.instances)
            else struct_update(expressions.expression, verified := false)
        end as expression
    from expressions
    left join checks
        on checks.image_id = expressions.image_id and checks.expression_id = expressions.expression.expression_id
    left join updated
        on updated.image_id = expressions.image_id and updated.expression_id = expressions.expression.expression_id
    where checks.action is null or checks.action = 'keep' or (checks.action = 'update' and len(checks.bboxes) > 0)
)

select
    grounded.image_id,
    coalesce((select list(checked.expression order by checked.n) from checked
              where checked.image_id = grounded.image_id), []) as expressions,
    coalesce(asked.answer.status, 'no expressions') as status,
    asked.answer.error
from grounded
left join asked using (image_id)
{% else %}

select image_id, expressions, 'skipped' as status, null::varchar as error
from grounded
{% endif %}
