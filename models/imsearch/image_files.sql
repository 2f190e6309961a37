{{ config(materialized='view', tags=['imsearch']) }}
-- The benchmark's image files. image_id is the POSIX path relative to the image folder (vars.imsearch.image_seed),
-- as in the reference; like its preprocessing, ids containing '%' are left out (they do not survive URLs).
select
    relative_path as image_id,
    path,
    content_hash,
    size_bytes,
    lower(extension) as extension
from {{ ref(var('imsearch').image_seed) }}
where relative_path not like '%\%%' escape '\'
