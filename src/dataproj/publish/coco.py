"""COCO JSON from unified grounding annotation records: images, one annotation per grounded box with its box as
[x, y, width, height], and categories; readable by pycocotools.

A record is one image of the unified schema (docs/grounding.md): image_id, image_path, width, height, caption,
cleaned_caption, regions [{bbox, type, ...}] and expressions [{expression_id, text, char_span, noun_chunk,
instances [{bbox_id, bbox, bbox_score}], verified}], boxes pixel [x1, y1, x2, y2]. COCO ids are integers, so
images and annotations are numbered from 1 in record order and the record's own ids ride along
(`image_name`, `expression_id`, `bbox_id`). A box's category is its expression's core noun, else the type of
the region it covers (IoU >= 0.5), else "object". An expression's char_span becomes `tokens_positive`, as in
the MDETR / GLIP grounding annotations.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

REGION_IOU = 0.5  # a box takes the type of a region it overlaps this much
FALLBACK_CATEGORY = "object"


def coco_document(records: Iterable[Mapping[str, Any]], *, description: str = "") -> dict[str, Any]:
    """The COCO dictionary (info, licenses, images, annotations, categories) of `records`."""
    images: list[dict[str, Any]] = []
    pending: list[tuple[str, dict[str, Any]]] = []  # (category name, annotation without category_id)
    for number, record in enumerate(records, start=1):
        images.append(_image(number, record))
        regions = record.get("regions") or []
        for expression in record.get("expressions") or []:
            for instance in expression.get("instances") or []:
                pending.append((category_name(expression, instance, regions),
                                _annotation(len(pending) + 1, number, expression, instance)))
    names = sorted({name for name, _ in pending})
    ids = {name: index for index, name in enumerate(names, start=1)}
    annotations = [{**annotation, "category_id": ids[name]} for name, annotation in pending]
    return {"info": {"description": description, "version": "1.0"}, "licenses": [], "images": images,
            "annotations": annotations,
            "categories": [{"id": ids[name], "name": name, "supercategory": FALLBACK_CATEGORY} for name in names]}


def write_coco(records: Iterable[Mapping[str, Any]], path: Path, *, description: str = "") -> dict[str, Any]:
    """Write the COCO JSON of `records` to `path` (aside, then renamed: readers never see half a file)."""
    document = coco_document(records, description=description)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    os.replace(partial, path)
    return document


def xywh(box: Sequence[float]) -> list[float]:
    """Pixel [x1, y1, x2, y2] (x2/y2 exclusive) as COCO's [x, y, width, height]."""
    x1, y1, x2, y2 = box
    return [x1, y1, x2 - x1, y2 - y1]


def category_name(expression: Mapping[str, Any], instance: Mapping[str, Any],
                  regions: Sequence[Mapping[str, Any]]) -> str:
    noun = (expression.get("noun_chunk") or "").strip().lower()
    if noun:
        return noun
    scored = [(_iou(instance["bbox"], region["bbox"]), region) for region in regions if region.get("bbox")]
    best = max(scored, key=lambda pair: pair[0], default=(0.0, None))
    kind = (best[1] or {}).get("type") if best[0] >= REGION_IOU else None
    return (kind or "").strip().lower() or FALLBACK_CATEGORY


def _image(number: int, record: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": number, "file_name": record["image_path"], "width": record.get("width"),
            "height": record.get("height"), "image_name": record.get("image_id"),
            "caption": record.get("cleaned_caption") or record.get("caption")}


def _annotation(number: int, image: int, expression: Mapping[str, Any], instance: Mapping[str, Any]) -> dict[str, Any]:
    box = xywh(instance["bbox"])
    annotation = {"id": number, "image_id": image, "bbox": box, "area": box[2] * box[3], "iscrowd": 0,
                  "score": instance.get("bbox_score"), "bbox_id": instance.get("bbox_id"),
                  "expression_id": expression.get("expression_id"), "text": expression.get("text"),
                  "verified": expression.get("verified")}
    span = expression.get("char_span")
    if span:
        annotation["tokens_positive"] = [list(span)]
    return annotation


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
