{{ config(materialized='table', tags=['imsearch'], export=['jsonl', 'parquet'], export_path='query_plan') }}
{#-
  The candidate pool of every query, in SQL: the reference's TagOverlap plan (REFERENCE.md §1), plus positives
  and neutrals, which its docs describe and its code lacks. Per query, in this order, never picking an image twice:
    seeds      the query's seed images (candidates start with them)
    positive   all core facets equal the seed profile, best tag-Jaccard first          (pos_total)
    neutral    exactly one core facet differs, best tag-Jaccard first                   (neutral_total)
    hard       all core facets equal, best Jaccard first, at most 6 per diversity key;
               too few: relax to the first n-1, n-2, ... core facets (each level counts its cap afresh)
    nearmiss   equal on the core facets but one off facet, differing on it, at most 5 per diversity key;
               too few: match only the first core facet
    easy       differs on >= max(2, n_core // 2) core facets and Jaccard <= 0.10, in the query's seeded random
               order; too few: random others ("random")
    random     top-up when the negatives still fall short of neg_total
  Ranking ties go to the smaller image_id. Jaccard is computed on tag bitmasks (one UBIGINT per 64 vocabulary
  tags), and the ranking key packs floor(Jaccard * 2^24) above the image ordinal, so every top-k is a plain
  max(key, k) aggregate. The seeded random order of a query is the order of hash(seed:image_id), rotated to
  start at hash(seed:query_id) mod N: a scan of a window of it replaces shuffling the whole pool.
-#}
{%- set im = var('imsearch') -%}
{%- set qp = im.query_plan -%}
{%- set core = qp.core_facets or [] -%}
{%- set off = qp.off_facets or core -%}
{%- set div = qp.diversity_facets or [] -%}
{%- set booleans = im.boolean_facets or [] -%}
{%- set vocab = im.tags.vocabulary -%}
{%- set words = (vocab | length + 63) // 64 -%}
{%- set H = qp.neg_hard -%}
{%- set NM = qp.neg_nearmiss -%}
{%- set E = qp.neg_easy -%}
{%- set TOTAL = qp.neg_total -%}
{%- set POS = qp.pos_total | default(0) -%}
{%- set NEU = qp.neutral_total | default(0) -%}
{%- set HARD_CAP = qp.hard_per_diversity_key | default(6) -%}
{%- set NEAR_CAP = qp.nearmiss_per_diversity_key | default(5) -%}
{%- set SEED = (qp.random_seed | default(42)) or 42 -%}
{%- set EASY_DIFF = [2, (core | length) // 2] | max -%}
{%- set WINDOW = qp.easy_window | default(4096) -%}
{%- set tag_enum = "ENUM(" ~ (vocab | map('tojson') | join(', ')) | replace('"', "'") ~ ")" -%}
{%- set off_is_core = (off | list) == (core | list) -%}
{%- set HARD_K = POS + (HARD_CAP if div else H) -%}
{%- set EXCLUDED_MAX = POS + NEU + H + NM -%}

{%- macro inter(a, p) -%}
({% for w in range(words) %}bit_count({{ a }}.w{{ w }} & {{ p }}.w{{ w }})::BIGINT{{ ' + ' if not loop.last }}{% endfor %})
{%- endmacro -%}

{%- macro rank_key(a, p) -%}
((({{ inter(a, p) }}::BIGINT << 24) // greatest(1, {{ a }}.nt + {{ p }}.nt - {{ inter(a, p) }})) << 32) | (4294967295 - {{ a }}.ord)
{%- endmacro -%}

{%- macro same(cols, a='a', p='p') -%}
{% for i in cols %}{{ a }}.c{{ i }} = {{ p }}.c{{ i }}{{ ' and ' if not loop.last }}{% endfor %}{% if not cols %}true{% endif %}
{%- endmacro -%}

{#- Top `k` keys per (query, diversity key) of the images that satisfy `condition` against the query profile. -#}
{%- macro top_keys(name, profiles, condition, k) -%}
{{ name }} as materialized (
    select qn, divkey, unnest(keys) as key from (
        select p.qn, a.divkey, max({{ rank_key('a', 'p') }}, {{ [k, 1] | max }}) as keys
        from {{ profiles }} as p
        join ann as a on {{ condition }}
        where a.ord <> p.seed_ord and (p.seed_ords_count = 1 or not list_contains(p.seed_ords, a.ord))
        group by p.qn, a.divkey
    )
),
{%- endmacro -%}

{#- Rows of `candidates` not yet picked, at most `cap` per diversity key, then the best `need` per query. -#}
{%- macro pick(name, candidates, picked, cap, need) -%}
{{ name }} as (
    select qn, ord, key from (
        select c.qn, 4294967295 - (c.key & 4294967295) as ord, c.key, c.divkey
        from {{ candidates }} as c
        anti join {{ picked }} as x on x.qn = c.qn and x.ord = 4294967295 - (c.key & 4294967295)
        {% if cap %}qualify row_number() over (partition by c.qn, c.divkey order by c.key desc) <= {{ cap }}{% endif %}
    ) as c
    join {{ need }} as n using (qn)
    qualify row_number() over (partition by c.qn order by c.key desc) <= n.need
),
{%- endmacro -%}

{#- In each query's seeded random order: the first `need` images satisfying `condition`, a window first, then the
    rest of the order for the queries the window left short. -#}
{%- macro random_pick(name, need, picked, condition) -%}
{{ name }}_window as (
    select o.qn, o.offset_, a.ord from (
        select n.qn, n.need, n.st, n.n_images, p.w0{% for w in range(1, words) %}, p.w{{ w }}{% endfor %}, p.nt,
            p.seed_ords{%- for i in range(core | length) %}, p.c{{ i }}{% endfor %},
            unnest(range(least(n.n_images, {{ WINDOW }}))) as offset_
        from {{ need }} as n join planned as p using (qn)
    ) as o
    join ann as a on a.pp = (o.st + o.offset_) % o.n_images
    anti join {{ picked }} as x on x.qn = o.qn and x.ord = a.ord
    where not list_contains(o.seed_ords, a.ord) and {{ condition }}
    qualify row_number() over (partition by o.qn order by o.offset_) <= o.need
),
{{ name }}_rest_need as (
    select n.qn, n.st, n.n_images, n.need - count(w.ord) as need
    from {{ need }} as n left join {{ name }}_window as w using (qn)
    where n.n_images > {{ WINDOW }}
    group by n.qn, n.st, n.n_images, n.need having n.need - count(w.ord) > 0
),
{{ name }}_rest as (
    select o.qn, o.offset_, a.ord from (
        select n.qn, n.need, n.st, n.n_images, p.w0{% for w in range(1, words) %}, p.w{{ w }}{% endfor %}, p.nt,
            p.seed_ords{%- for i in range(core | length) %}, p.c{{ i }}{% endfor %},
            unnest(range({{ WINDOW }}, n.n_images)) as offset_
        from {{ name }}_rest_need as n join planned as p using (qn)
    ) as o
    join ann as a on a.pp = (o.st + o.offset_) % o.n_images
    anti join {{ picked }} as x on x.qn = o.qn and x.ord = a.ord
    where not list_contains(o.seed_ords, a.ord) and {{ condition }}
    qualify row_number() over (partition by o.qn order by o.offset_) <= o.need
),
{{ name }} as (
    select qn, ord, offset_ as key from {{ name }}_window
    union all
    select qn, ord, offset_ from {{ name }}_rest
),
{%- endmacro -%}

{%- macro need_after(name, target, picks) -%}
{{ name }} as (
    select p.qn, p.st, p.n_images, {{ target }} - count(x.ord) as need
    from planned as p left join ({{ picks }}) as x using (qn)
    group by all having {{ target }} - count(x.ord) > 0
),
{%- endmacro -%}

{%- if not core %}
select error('vars.imsearch.query_plan.core_facets: list at least one facet (project.yml)')
{%- elif H + NM + E != TOTAL %}
select error('vars.imsearch.query_plan: neg_hard ({{ H }}) + neg_nearmiss ({{ NM }}) + neg_easy ({{ E }}) must add up to neg_total ({{ TOTAL }}) (project.yml)')
{%- else %}
with
annotated as (
    select a.*
    from {{ ref('annotations') }} as a
    semi join {{ ref('images') }} as i on i.image_id = a.image_id
    where a.status = 'ok'
),
coded as (
    select *,
        list_transform(tags, lambda t: enum_code(try_cast(t as {{ tag_enum }}))) as codes  -- null: not a vocabulary tag
    from annotated
),
ann as materialized (
    select *, {% for w in range(words) %}bit_count(w{{ w }})::BIGINT{{ ' + ' if not loop.last }}{% endfor %} as nt
    from (
    select
        row_number() over (order by image_id) as ord,
        image_id,
        {%- for f in core %}
        "{{ f }}" as c{{ loop.index0 }},
        {%- endfor %}
        {%- for f in off if f not in core %}
        "{{ f }}" as x{{ loop.index0 }},
        {%- endfor %}
        {% if div %}dense_rank() over (order by {% for f in div %}"{{ f }}"::varchar{{ ', ' if not loop.last }}{% endfor %}){% else %}0{% endif %} as divkey,
        {%- for w in range(words) %}
        list_reduce(list_transform(codes, lambda c: case when c // 64 = {{ w }} then 1::UBIGINT << (c % 64)
                                                         else 0::UBIGINT end),
                    lambda x, y: x | y, 0::UBIGINT) as w{{ w }},
        {%- endfor %}
        row_number() over (order by hash('{{ SEED }}:' || image_id), image_id) - 1 as pp
    from coded
    )
),
n_images as (
    select count(*) as n_images from ann
),
queries as (
    select row_number() over (order by query_id) as qn, query_id, seed_image_ids
    from {{ ref('query_seeds') }}
),
seed_rows as (
    select qn, unnest(seed_image_ids) as image_id, generate_subscripts(seed_image_ids, 1) as seed_pos
    from queries
),
seed_ann as materialized (
    select r.qn, r.seed_pos, r.image_id, a.* exclude (image_id)
    from seed_rows as r left join ann as a using (image_id)
),
{%- for f in core if f not in booleans %}
{%- set i = core.index(f) %}
vote_{{ i }} as (  -- majority over the seeds; ties go to the value that sorts first
    select qn, first(v order by n desc, v) as v
    from (select qn, c{{ i }} as v, count(*) as n from seed_ann where c{{ i }} is not null group by all)
    group by qn
),
{%- endfor %}
profile as materialized (
    select q.qn, q.query_id,
        {%- for f in core %}
        {%- set i = loop.index0 %}
        {%- if f in booleans %}
        2 * count_if(s.c{{ i }}) > count(*) as c{{ i }},  -- rounded mean; exactly half is false
        {%- else %}
        coalesce(any_value(v{{ i }}.v), 'unknown') as c{{ i }},
        {%- endif %}
        {%- endfor %}
        {%- for w in range(words) %}
        coalesce(bit_or(s.w{{ w }}), 0)::UBIGINT as w{{ w }},
        {%- endfor %}
        coalesce(list(s.ord) filter (where s.ord is not null), []) as seed_ords,
        list(s.image_id order by s.seed_pos) filter (where s.ord is null) as unannotated
    from queries as q
    join seed_ann as s using (qn)
    {%- for f in core if f not in booleans %}
    left join vote_{{ core.index(f) }} as v{{ core.index(f) }} using (qn)
    {%- endfor %}
    group by q.qn, q.query_id
),
planned as materialized (
    select p.*, {% for w in range(words) %}bit_count(p.w{{ w }})::BIGINT{{ ' + ' if not loop.last }}{% endfor %} as nt,
        coalesce(p.seed_ords[1], -1) as seed_ord, len(p.seed_ords) as seed_ords_count,
        hash('{{ SEED }}:' || p.query_id) % n.n_images as st, n.n_images
    from profile as p, n_images as n
    where p.unannotated is null
),
constant_needs as (
    select qn, {{ POS }} as pos, {{ NEU }} as neu, {{ H }} as hard, {{ NM }} as near from planned
),
pos_need as (select qn, pos as need from constant_needs),
neu_need as (select qn, neu as need from constant_needs),
hard_need as (select qn, hard as need from constant_needs),
near_need as (select qn, near as need from constant_needs),
nothing as (select 0::BIGINT as qn, 0::BIGINT as ord where false),
{#- ---- positives and hard negatives: all core facets equal ---------------------------------------------------- #}
{{ top_keys('bucket_top', 'planned', same(range(core | length)), HARD_K) }}
{{ pick('pos', 'bucket_top', 'nothing', none, 'pos_need') }}
{#- ---- neutrals (and near misses when the off facets are the core ones): exactly one core facet differs ------- #}
{%- for f in core %}
{%- set i = loop.index0 %}
{%- set others = range(core | length) | reject('equalto', i) | list %}
{{ top_keys('oneoff_top_' ~ i, 'planned', same(others) ~ ' and a.c' ~ i ~ ' is distinct from p.c' ~ i, (NEAR_CAP if div else NM) + NEU + H) }}
{%- endfor %}
oneoff_top as (
    {%- for f in core %}
    select * from oneoff_top_{{ loop.index0 }}{{ ' union all' if not loop.last }}
    {%- endfor %}
),
picked_0 as (select qn, ord from pos),
{{ pick('neu', 'oneoff_top', 'picked_0', none, 'neu_need') }}
picked_1 as (select qn, ord from picked_0 union all select qn, ord from neu),
{{ pick('hard_0', 'bucket_top', 'picked_1', HARD_CAP if div else none, 'hard_need') }}
{#- ---- hard relaxation: the first n-1, n-2, ... core facets -------------------------------------------------- #}
{%- set hard_levels = range((core | length) - 1, 0, -1) | list %}
hard_picked_0 as (select qn, ord, key, 0 as level from hard_0),
{%- for level in hard_levels %}
{%- set step = loop.index %}
{{ need_after('hard_need_' ~ step, H, 'select qn, ord from hard_picked_' ~ (step - 1)) }}
hard_short_{{ step }} as (select p.* from planned as p semi join hard_need_{{ step }} using (qn)),
{{ top_keys('hard_top_' ~ step, 'hard_short_' ~ step, same(range(level)), (HARD_CAP if div else H) + EXCLUDED_MAX) }}
hard_excluded_{{ step }} as (select qn, ord from picked_1 union all select qn, ord from hard_picked_{{ step - 1 }}),
{{ pick('hard_' ~ step, 'hard_top_' ~ step, 'hard_excluded_' ~ step, HARD_CAP if div else none, 'hard_need_' ~ step) }}
hard_picked_{{ step }} as (select * from hard_picked_{{ step - 1 }} union all select qn, ord, key, {{ step }} from hard_{{ step }}),
{%- endfor %}
hard as (select * from hard_picked_{{ hard_levels | length }}),
picked_2 as (select qn, ord from picked_1 union all select qn, ord from hard),
{#- ---- near misses: equal on the core facets but one off facet ------------------------------------------------- #}
{%- if off_is_core %}
near_top as (select * from oneoff_top),
{%- else %}
{%- for f in off %}
{%- set j = loop.index0 %}
{%- if f in core %}
{%- set i = core.index(f) %}
{{ top_keys('near_top_' ~ j, 'planned', same(range(core | length) | reject('equalto', i) | list) ~ ' and a.c' ~ i ~ ' is distinct from p.c' ~ i, (NEAR_CAP if div else NM) + EXCLUDED_MAX) }}
{%- else %}
{{ top_keys('near_top_' ~ j, 'planned', same(range(core | length)) ~ ' and a.x' ~ off.index(f) ~ ' is not null', (NEAR_CAP if div else NM) + EXCLUDED_MAX) }}
{%- endif %}
{%- endfor %}
near_top as (
    select distinct * from (
        {%- for f in off %}
        select * from near_top_{{ loop.index0 }}{{ ' union all' if not loop.last }}
        {%- endfor %}
    )
),
{%- endif %}
{{ pick('near_0', 'near_top', 'picked_2', NEAR_CAP if div else none, 'near_need') }}
{{ need_after('near_need_1', NM, 'select qn, ord from near_0') }}
near_short as (select p.* from planned as p semi join near_need_1 using (qn)),
{{ top_keys('near_relax_top', 'near_short', same([0]), (NEAR_CAP if div else NM) + EXCLUDED_MAX) }}
near_excluded as (select qn, ord from picked_2 union all select qn, ord from near_0),
{{ pick('near_1', 'near_relax_top', 'near_excluded', NEAR_CAP if div else none, 'near_need_1') }}
near as (select qn, ord, key, 0 as level from near_0 union all select qn, ord, key, 1 from near_1),
picked_3 as (select qn, ord from picked_2 union all select qn, ord from near),
{#- ---- easy negatives, then random ones ------------------------------------------------------------------------- #}
{%- set differs %}({% for i in range(core | length) %}(a.c{{ i }} is distinct from o.c{{ i }})::int{{ ' + ' if not loop.last }}{% endfor %}) >= {{ EASY_DIFF }}{% endset %}
{{ need_after('easy_need', E, 'select qn, ord from nothing') }}
{{ random_pick('easy', 'easy_need', 'picked_3', differs ~ ' and 10 * ' ~ inter('a', 'o') ~ ' <= a.nt + o.nt - ' ~ inter('a', 'o')) }}
picked_4 as (select qn, ord from picked_3 union all select qn, ord from easy),
{{ need_after('easy_fallback_need', E, 'select qn, ord from easy') }}
{{ random_pick('easy_fallback', 'easy_fallback_need', 'picked_4', 'true') }}
picked_5 as (select qn, ord from picked_4 union all select qn, ord from easy_fallback),
{{ need_after('topup_need', TOTAL, 'select qn, ord from hard union all select qn, ord from near union all select qn, ord from easy union all select qn, ord from easy_fallback') }}
{{ random_pick('topup', 'topup_need', 'picked_5', 'true') }}
candidates as (
    select qn, ord, 1 as stage, 0 as level, key, 'positive' as role from pos
    union all select qn, ord, 2, 0, key, 'neutral' from neu
    union all select qn, ord, 3, level, key, 'hard' from hard
    union all select qn, ord, 4, level, key, 'nearmiss' from near
    union all select qn, ord, 5, 0, -key, 'easy' from easy
    union all select qn, ord, 6, 0, -key, 'random' from easy_fallback
    union all select qn, ord, 7, 0, -key, 'random' from topup
),
ordered as (
    select s.qn, s.image_id, 0 as stage, 0 as level, -s.seed_pos as key, 'seed' as role
    from seed_ann as s
    union all
    select c.qn, a.image_id, c.stage, c.level, c.key, c.role
    from candidates as c join ann as a using (ord)
)
select
    q.query_id,
    q.seed_image_ids,
    list(o.image_id order by o.stage, o.level, o.key desc) as candidate_image_ids,
    list(o.role order by o.stage, o.level, o.key desc) as candidate_roles,
    case when p.unannotated is null then 'ok' else 'failed' end as plan_status,
    case when p.unannotated is not null
        then 'seed images without a usable annotation: ' || array_to_string(p.unannotated, ', ') end as plan_error
from queries as q
join profile as p using (qn)
join ordered as o using (qn)
group by q.qn, q.query_id, q.seed_image_ids, p.unannotated
order by q.query_id
{%- endif %}
