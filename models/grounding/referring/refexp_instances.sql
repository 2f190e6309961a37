{{ config(materialized='view', tags=['grounding', 'image_referring_expression']) }}
-- One row per grounded box of image_referring_expression's output, with the size of its image (for data tests).
{{ grounded_instances(ref('refexp_annotations')) }}
