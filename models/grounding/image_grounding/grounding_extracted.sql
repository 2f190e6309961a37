{%- set selected = grounding_step('image_grounding', '0') == 'on' -%}
-- Step 0, expression extraction, when selected: each caption cleaned and its referring expressions (text, char
-- span in the cleaned caption, core noun), numbered per image. A span that does not hold the text is replaced
-- by the text's first occurrence (null when it does not occur). Not selected: the input's cleaned caption and
-- expressions pass through.
{% if selected %}
with asked as (
    select
        image_id,
        grounding_extract_expressions(caption, image_path) as answer
    from {{ ref('grounding_images') }}
)

select
    image_id,
    answer.cleaned_caption,
    coalesce(list_transform(answer.expressions, lambda expression, i: {
        'expression_id': 'expr_' || lpad((i - 1)::varchar, 5, '0'),
        'text': expression.text,
        'char_span': (case
            when substr(answer.cleaned_caption, expression.char_span[1] + 1,
                        expression.char_span[2] - expression.char_span[1]) = expression.text
                then expression.char_span
            when instr(answer.cleaned_caption, expression.text) > 0
                then [instr(answer.cleaned_caption, expression.text) - 1,
                      instr(answer.cleaned_caption, expression.text) - 1 + length(expression.text)]
        end)::integer[],
        'noun_chunk': expression.noun_chunk,
        'instances': []::struct(bbox_id varchar, bbox integer[], bbox_score double)[],
        'verified': null::boolean
    }), []) as expressions,
    answer.status,
    answer.error
from asked
{% else %}
select
    image_id,
    coalesce(cleaned_caption, caption) as cleaned_caption,
    expressions,
    'skipped' as status,
    null::varchar as error
from {{ ref('grounding_images') }}
{% endif %}
