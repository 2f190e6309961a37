-- The objects each instruction edits, named by the instruction-parser prompt (edit/instruction_parser): one
-- call per distinct instruction, cached.
{{ config(materialized='table', tags=['edit']) }}
with instructions as (
    select distinct key, instruction from {{ ref('edit_candidates') }}
),
parsed as (
    select key, instruction, edit_parse_instruction(instruction) as parse
    from instructions
)
select
    key,
    instruction,
    parse.edit_action,
    coalesce(parse.edited_objects, []) as edited_objects,
    parse.status as parse_status,
    parse.error as parse_error
from parsed
order by key
