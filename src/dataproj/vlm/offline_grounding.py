"""Offline answers for the 2D grounding prompts (prompts/grounding/): expression extraction and phrase grounding
(image_grounding), region expressions, image caption, grounding expressions and double check
(image_referring_expression).

Each answer reads the data the prompt carries (a caption, expressions, boxes: one labelled JSON value per
line, e.g. ``Caption: "..."``) and measures the image with the scene analysis. The boxes a prompt shows are
[x1, y1, x2, y2] on a 0-1000 scale (the SQL models render them so, and the prompts say so); the boxes an answer
gives are in the box convention the prompt asset declares. The phrases follow dataproj.grounding.phrases.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from ..grounding.phrases import (
    COLORS,
    NUMBER_WORDS,
    SHAPES,
    background_phrase,
    clean_caption,
    describe,
    find_mentions,
    group_phrase,
    groups,
    join_phrases,
    parse_phrase,
    resolve,
)
from .boxes import from_pixels, to_pixels
from .offline import OfflineQuery, analysis, family
from .offline_analysis import COLOR_RGB, SceneAnalysis, SceneObject, box_iou

SHOWN_BOXES = "norm1000_xyxy"  # how the SQL models render the boxes a prompt shows
MAX_INSTANCES = 10  # boxes per expression, as the reference asks
ON_OBJECT_IOU = 0.3  # a box overlapping an object this much is meant for it (if poorly aligned)
TIGHT_IOU = 0.9  # a box this close to its object is kept as it is; a looser one is tightened
Box = tuple[int, int, int, int]


def json_after(text: str, label: str) -> Any:
    """The JSON value on the prompt line that starts with `label` (e.g. `Caption: "a red circle"`)."""
    match = re.search(rf"^{re.escape(label)}[^:\n]*:\s*(.*)$", text, re.MULTILINE)
    if match is None:
        raise ValueError(f"the prompt has no line starting with {label!r}")
    return json.loads(match.group(1))


class _Frame:
    """One image's analysis: shown boxes to pixels, pixels to the answer's box convention."""

    def __init__(self, query: OfflineQuery) -> None:
        self.scene: SceneAnalysis = analysis(query.images[0])
        self.convention = query.box_convention or "pixel_xyxy"

    def pixels(self, box: list[float]) -> Box:
        return tuple(to_pixels(box, SHOWN_BOXES, self.scene.width, self.scene.height))  # type: ignore[return-value]

    def out(self, box: Box) -> list[int]:
        return from_pixels(box, self.convention, self.scene.width, self.scene.height)

    def best_match(self, box: Box) -> tuple[SceneObject | None, float]:
        """The object a box overlaps most, and that IoU."""
        scored = [(box_iou(box, obj.bbox), obj) for obj in self.scene.objects]
        if not scored:
            return None, 0.0
        iou, obj = max(scored, key=lambda pair: pair[0])
        return obj, iou


def colour_fidelity(obj: SceneObject, color: str) -> float:
    """1 when the object's measured colour is exactly the named one, falling with RGB distance."""
    return max(0.0, 1.0 - math.dist(obj.mean_rgb, COLOR_RGB[color]) / 255.0)


# ---- image_grounding ---------------------------------------------------------------------------------------


@family("grounding_extract_expressions")
def extract_expressions(query: OfflineQuery) -> dict[str, Any]:
    """Clean the caption, then keep its noun phrases that denote something visible in the image."""
    cleaned = clean_caption(json_after(query.text, "Caption"))
    objects = analysis(query.images[0]).objects
    expressions = [{"text": m.text, "char_span": [m.start, m.end], "noun_chunk": m.noun}
                   for m in find_mentions(cleaned) if resolve(m.query, objects)]
    return {"cleaned_caption": cleaned, "expressions": expressions}


@family("grounding_phrase_grounding")
def ground_phrases(query: OfflineQuery) -> dict[str, Any]:
    """Boxes of the objects each expression denotes; the score is the colour match, split when a singular
    phrase fits several objects."""
    frame = _Frame(query)
    groundings = []
    for text in json_after(query.text, "Referring expressions"):
        parsed = parse_phrase(text)
        found = resolve(parsed, frame.scene.objects)[:MAX_INSTANCES] if parsed else []
        share = 1 if parsed is None or parsed.plural else max(1, len(found))
        groundings.append({"text": text, "bboxes": [frame.out(o.bbox) for o in found],
                           "scores": [round(colour_fidelity(o, parsed.color or o.color) / share, 3)
                                      for o in found] if parsed else []})
    return {"groundings": groundings}


# ---- image_referring_expression ----------------------------------------------------------------------------


@family("refexp_region_expressions")
def region_expressions(query: OfflineQuery) -> dict[str, Any]:
    """Type, colour and a discriminative description of the object inside each box."""
    frame = _Frame(query)
    scene = frame.scene
    regions = []
    for item in json_after(query.text, "Boxes"):
        box = frame.pixels(item["bbox_2d"])
        obj, iou = frame.best_match(box)
        if obj is None or iou < ON_OBJECT_IOU:  # nothing there: say so rather than invent an object
            regions.append({"bbox_2d": frame.out(box), "type": item["type"], "color": "unknown",
                            "description": f"an unidentified {item['type']}"})
            continue
        regions.append({"bbox_2d": frame.out(box), "type": obj.shape, "color": obj.color,
                        "description": describe(obj, scene.objects, scene.width, scene.height)})
    return {"regions": regions}


@family("refexp_image_caption")
def image_caption(query: OfflineQuery) -> dict[str, str]:
    """The objects, grouped by colour and shape, on their background."""
    scene = analysis(query.images[0])
    background = background_phrase(scene.background_kind, scene.background_color)
    listed = join_phrases([group_phrase(g, with_size=True) for g in groups(scene.objects)])
    caption = f"{listed} on {background}." if listed else f"Nothing but {background}."
    return {"caption": caption[:1].upper() + caption[1:]}


@family("refexp_grounding_expressions")
def grounding_expressions(query: OfflineQuery) -> dict[str, Any]:
    """One expression per region description (regions described alike share it), plus one per group of two
    or more regions of the same colour and type; a box's score is its IoU with the object it frames."""
    frame = _Frame(query)
    by_text: dict[str, list[tuple[list[int], float]]] = {}
    by_kind: dict[tuple[str, str], list[tuple[list[int], float]]] = {}
    for region in json_after(query.text, "Regions"):
        box = frame.pixels(region["bbox_2d"])
        _, iou = frame.best_match(box)
        entry = (frame.out(box), round(iou, 3))
        text = (region.get("description") or f"the {region.get('color')} {region.get('type')}").strip()
        by_text.setdefault(text, []).append(entry)
        if region.get("color") not in (None, "", "unknown"):
            by_kind.setdefault((region["color"], region["type"]), []).append(entry)
    for (color, kind), entries in by_kind.items():
        if len(entries) > 1:
            count = NUMBER_WORDS.get(len(entries), str(len(entries)))
            by_text.setdefault(f"the {count} {color} {kind}s", entries)
    return {"expressions": [{"text": text, "bboxes": [box for box, _ in entries[:MAX_INSTANCES]],
                             "scores": [score for _, score in entries[:MAX_INSTANCES]]}
                            for text, entries in by_text.items()]}


@family("refexp_double_check")
def double_check(query: OfflineQuery) -> dict[str, Any]:
    """Keep, update (tighten loose boxes, drop wrong ones, rename a misnamed object) or remove each expression."""
    frame = _Frame(query)
    return {"checks": [_check(frame, item) for item in json_after(query.text, "Expressions")]}


def _check(frame: _Frame, item: dict[str, Any]) -> dict[str, Any]:
    text = item["text"]
    parsed = parse_phrase(text)
    referents = resolve(parsed, frame.scene.objects) if parsed else []
    kept: list[list[int]] = []
    held: list[SceneObject] = []  # the objects the boxes are on, right or wrong
    changed = False
    for shown in item["bboxes"]:
        box = frame.pixels(shown)
        obj, iou = frame.best_match(box)
        if obj is None or iou < ON_OBJECT_IOU:
            changed = True  # a box on empty background
            continue
        held.append(obj)
        if obj not in referents:
            changed = True  # a box on an object the text does not describe
        elif iou < TIGHT_IOU:
            kept.append(frame.out(obj.bbox))
            changed = True
        else:
            kept.append(frame.out(box))
    if not kept and held and len({(o.color, o.shape) for o in held}) == 1:
        renamed = _renamed(text, held[0])
        reparsed = parse_phrase(renamed)
        if reparsed is not None and all(o in resolve(reparsed, frame.scene.objects) for o in held):
            text, kept = renamed, [frame.out(o.bbox) for o in held]
    action = "keep" if not changed else ("update" if kept else "remove")
    return {"expression_id": item["expression_id"], "action": action, "text": text, "bboxes": kept}


def _renamed(text: str, obj: SceneObject) -> str:
    """The text with its colour and shape words replaced by the object's (the rest of the phrase kept)."""
    text = re.sub(rf"\b({'|'.join(COLORS)})\b", obj.color, text, count=1, flags=re.IGNORECASE)
    return re.sub(rf"\b({'|'.join(SHAPES)})(s?)\b", lambda m: obj.shape + m.group(2), text, count=1,
                  flags=re.IGNORECASE)
