"""Grounding accuracy at IoU >= 0.5 against the scene ground truth, as one SQL query shared by both pipelines'
quality models (grounding_quality, refexp_quality).

Each expression's text is parsed into the phrase key of dataproj.grounding.phrases (shape, colour, size,
position words) and resolved against the ground truth through grounding_truth_referents: its referents are the
true objects the text denotes. An expression is correct when it has exactly one box per referent and every
referent is covered by a box at IoU >= 0.5 (the objects never overlap, so a box covers at most one). Reported
per stage: expressions, resolved ones (the text denotes at least one true object), correct ones and accuracy;
box precision and referent recall at IoU >= 0.5; object coverage (true objects of the images with at least one
box at IoU >= 0.5 from an expression that denotes them) and the mean IoU of the matched boxes.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..compiler import relation_name
from .phrases import COLORS, POSITIONS, SHAPES, SIZES

IOU_THRESHOLD = 0.5


def _word(words: tuple[str, ...], suffix: str = "") -> str:
    return f"nullif(regexp_extract(lower(expression.text), '\\b({'|'.join(words)}){suffix}\\b', 1), '')"


def _iou(a: str, b: str) -> str:
    inter = (f"greatest(0, least({a}[3], {b}[3]) - greatest({a}[1], {b}[1])) "
             f"* greatest(0, least({a}[4], {b}[4]) - greatest({a}[2], {b}[2]))")
    area = "(({x}[3] - {x}[1]) * ({x}[4] - {x}[2]))"
    return f"({inter})::double / ({area.format(x=a)} + {area.format(x=b)} - {inter})"


def quality_sql(pipeline: str, stages: Mapping[str, str]) -> str:
    """The query: one row per stage, each stage a relation with image_id and expressions (unified schema)."""
    sources = "\n        union all\n        ".join(
        f"select '{stage}' as stage, {order} as stage_no, image_id, expressions from {relation_name(relation)}"
        for order, (stage, relation) in enumerate(stages.items()))
    truth = relation_name("grounding_truth_referents")
    return f"""
    with source as (
        {sources}
    ),

    parsed as (
        select
            source.stage, source.image_id, expression.expression_id, expression.instances,
            {_word(SHAPES, "s?")} as shape,
            {_word(COLORS)} as color,
            {_word(SIZES)} as size,
            {_word(POSITIONS)} as position
        from source, unnest(source.expressions) as expressions(expression)
    ),

    referents as (
        select parsed.stage, parsed.image_id, parsed.expression_id, truth.object_id, truth.bbox
        from parsed
        join {truth} as truth
            on truth.image_id = parsed.image_id and truth.shape = parsed.shape
            and truth.color is not distinct from parsed.color and truth.size is not distinct from parsed.size
            and truth.position is not distinct from parsed.position
    ),

    boxes as (
        select parsed.stage, parsed.image_id, parsed.expression_id, instance.bbox_id, instance.bbox
        from parsed, unnest(parsed.instances) as instances(instance)
    ),

    hits as (
        select *
        from (
            select
                boxes.stage, boxes.image_id, boxes.expression_id, boxes.bbox_id, referents.object_id,
                {_iou("boxes.bbox", "referents.bbox")} as iou
            from boxes
            join referents using (stage, image_id, expression_id)
        )
        where iou >= {IOU_THRESHOLD}
    ),

    per_expression as (
        select
            parsed.stage, parsed.image_id, parsed.expression_id,
            len(parsed.instances) as boxes,
            coalesce(named.referents, 0) as referents,
            coalesce(matched.referents, 0) as referents_matched,
            coalesce(matched.boxes, 0) as boxes_matched
        from parsed
        left join (
            select stage, image_id, expression_id, count(*) as referents from referents group by all
        ) as named using (stage, image_id, expression_id)
        left join (
            select stage, image_id, expression_id, count(distinct object_id) as referents,
                count(distinct bbox_id) as boxes
            from hits group by all
        ) as matched using (stage, image_id, expression_id)
    ),

    objects as (
        select images.stage, truth.image_id, truth.object_id
        from (select distinct stage, image_id from source) as images
        join {truth} as truth
            on truth.image_id = images.image_id
            and truth.color is null and truth.size is null and truth.position is null
    ),

    per_stage as (
        select
            stage,
            count(*) as expressions,
            count(*) filter (where referents > 0) as resolved_expressions,
            count(*) filter (where referents > 0 and boxes = referents and referents_matched = referents)
                as correct_expressions,
            sum(boxes)::bigint as boxes,
            sum(boxes_matched)::bigint as boxes_matched,
            sum(referents)::bigint as referents,
            sum(referents_matched)::bigint as referents_matched
        from per_expression
        group by stage
    )

    select
        '{pipeline}' as pipeline,
        stages.stage,
        stages.images,
        coalesce(per_stage.expressions, 0) as expressions,
        coalesce(per_stage.resolved_expressions, 0) as resolved_expressions,
        coalesce(per_stage.correct_expressions, 0) as correct_expressions,
        round(per_stage.correct_expressions / nullif(per_stage.expressions, 0), 4) as accuracy_iou50,
        coalesce(per_stage.boxes, 0) as boxes,
        round(per_stage.boxes_matched / nullif(per_stage.boxes, 0), 4) as box_precision_iou50,
        round(per_stage.referents_matched / nullif(per_stage.referents, 0), 4) as referent_recall_iou50,
        coverage.objects,
        coverage.objects_covered,
        round(coverage.objects_covered / nullif(coverage.objects, 0), 4) as object_coverage_iou50,
        round((select avg(iou) from hits where hits.stage = stages.stage), 4) as mean_iou_matched
    from (
        select stage, min(stage_no) as stage_no, count(distinct image_id) as images from source group by stage
    ) as stages
    left join per_stage using (stage)
    left join (
        select
            objects.stage,
            count(*) as objects,
            count(*) filter (where exists (
                select 1 from hits
                where hits.stage = objects.stage and hits.image_id = objects.image_id
                    and hits.object_id = objects.object_id
            )) as objects_covered
        from objects
        group by objects.stage
    ) as coverage using (stage)
    order by stages.stage_no
    """
