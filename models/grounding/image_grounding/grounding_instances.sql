{{ config(materialized='view', tags=['grounding', 'image_grounding']) }}
-- One row per grounded box of image_grounding's output, with the size of its image (for data tests).
{{ grounded_instances(ref('grounding_annotations')) }}
