"""Offline answers for the edit-annotation pipeline's own prompt families: the instruction parser and the grounder.

edit_instruction_parser reads the instruction in the sample's grammar (add / remove / recolour a coloured
shape, the grammar the offline judges read too) and names the edited object. edit_grounder finds each named
object in the image with the scene analysis and answers its boxes in the convention the prompt asks for
(`bbox_2d` on 0..1000 for the shipped asset).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .boxes import from_pixels
from .offline import COLORS, SHAPES, OfflineQuery, analysis, family, field_after
from .offline_analysis import SceneObject
from .offline_judges import parse_instruction

_ACTIONS = {"add": "add", "remove": "remove", "recolor": "recolor"}


@family("edit_instruction_parser")
def parse_edit_instruction(query: OfflineQuery) -> dict[str, object]:
    intent = parse_instruction(field_after(query.text, "Instruction") or query.text)
    if intent.action not in _ACTIONS:
        return {"edit_action": "other", "edited_objects": []}
    return {"edit_action": _ACTIONS[intent.action], "edited_objects": [f"{intent.color} {intent.shape}"]}


@dataclass(frozen=True)
class ObjectPhrase:
    text: str
    color: str | None
    shape: str | None
    size: str | None


def read_phrase(text: str) -> ObjectPhrase:
    """Colour, shape and size words of a noun phrase like "small red circle" (None where absent)."""
    words = re.findall(r"[a-z]+", text.lower())
    color = next((w for w in words if w in COLORS), None)
    shape = next((w for w in words if w in SHAPES or w.rstrip("s") in SHAPES), None)
    size = next((w for w in words if w in ("small", "medium", "large")), None)
    return ObjectPhrase(text.strip(), color, shape.rstrip("s") if shape else None, size)


@family("edit_grounder")
def ground_objects(query: OfflineQuery) -> dict[str, object]:
    if not query.images:
        raise ValueError("the grounder needs an image")
    listed = field_after(query.text, "Objects") or ""
    phrases = [read_phrase(p) for p in listed.split(";") if p.strip()]
    scene = analysis(query.images[0])
    convention = query.box_convention or "pixel_xyxy"
    found = []
    for phrase in phrases:
        if phrase.shape is None and phrase.color is None:
            continue  # nothing this analysis can recognise: no box rather than a guess
        for obj in scene.objects:
            if _matches(phrase, obj):
                found.append({"label": phrase.text,
                              "bbox_2d": from_pixels(obj.bbox, convention, scene.width, scene.height)})
    return {"objects": found}


def _matches(phrase: ObjectPhrase, obj: SceneObject) -> bool:
    """Every attribute the phrase names is the object's."""
    return ((phrase.color is None or obj.color == phrase.color) and (phrase.shape is None or obj.shape == phrase.shape)
            and (phrase.size is None or obj.size == phrase.size))
