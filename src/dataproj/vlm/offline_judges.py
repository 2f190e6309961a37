"""Offline answers for the judge families: pairwise_judge and viescore.

An edit is judged on two things the images show: whether the instruction was carried out (the objects it
names were added, removed or recoloured) and whether everything else was left alone (pixels outside the
edited objects unchanged).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .offline import COLORS, SHAPES, OfflineQuery, analysis, family, field_after, load_rgb

_COLOR = "|".join(COLORS)
_SHAPE = "|".join(SHAPES)
_SIZE = r"(?:(?:small|medium|large)\s+)?"


@dataclass(frozen=True)
class EditIntent:
    action: str  # add | remove | recolor | unknown
    color: str | None = None
    shape: str | None = None
    new_color: str | None = None


def parse_instruction(text: str) -> EditIntent:
    """Read an edit instruction in the sample's grammar: add / remove / recolour a coloured shape."""
    lowered = text.lower()
    recolor = re.search(rf"\b(?:change|make|turn|recolou?r|paint)\s+(?:the\s+)?{_SIZE}({_COLOR})\s+({_SHAPE})"
                        rf"\s+(?:to\s+|into\s+)?({_COLOR})\b", lowered)
    if recolor:
        return EditIntent("recolor", recolor.group(1), recolor.group(2), recolor.group(3))
    add = re.search(rf"\badd\s+(?:an?\s+|one\s+)?{_SIZE}({_COLOR})\s+({_SHAPE})", lowered)
    if add:
        return EditIntent("add", add.group(1), add.group(2))
    remove = re.search(rf"\b(?:remove|delete|erase)\s+(?:the\s+)?{_SIZE}({_COLOR})\s+({_SHAPE})", lowered)
    if remove:
        return EditIntent("remove", remove.group(1), remove.group(2))
    return EditIntent("unknown")


def _count(path: str, color: str | None, shape: str | None) -> int:
    return sum(1 for o in analysis(path).objects if o.color == color and o.shape == shape)


def instruction_following(intent: EditIntent, source: str, edited: str) -> float:
    if intent.action == "add":
        return float(_count(edited, intent.color, intent.shape) > _count(source, intent.color, intent.shape))
    if intent.action == "remove":
        return float(_count(edited, intent.color, intent.shape) < _count(source, intent.color, intent.shape))
    if intent.action == "recolor":
        more_new = _count(edited, intent.new_color, intent.shape) > _count(source, intent.new_color, intent.shape)
        fewer_old = _count(edited, intent.color, intent.shape) < _count(source, intent.color, intent.shape)
        return (float(more_new) + float(fewer_old)) / 2
    return 0.5


def preservation(intent: EditIntent, source: str, edited: str) -> float:
    """1 when every pixel away from the edited objects is unchanged, falling to 0 at a mean change of 20 levels."""
    src_info = analysis(source)
    size = (src_info.width, src_info.height)
    before, after = load_rgb(source), load_rgb(edited, size)
    mask = np.ones(before.shape[:2], dtype=bool)
    targets = {(intent.color, intent.shape), (intent.new_color, intent.shape)}
    for path in (source, edited):
        for obj in analysis(path).objects:
            if (obj.color, obj.shape) in targets:
                x1, y1, x2, y2 = obj.bbox
                mask[max(0, y1 - 4):y2 + 4, max(0, x1 - 4):x2 + 4] = False
    if not mask.any():
        return 1.0
    change = float(np.abs(before - after)[mask].mean())
    return max(0.0, 1.0 - change / 20.0)


def edit_scores(text: str, source: str, edited: str) -> tuple[float, float]:
    intent = parse_instruction(field_after(text, "Instruction") or text)
    return instruction_following(intent, source, edited), preservation(intent, source, edited)


def overall(following: float, kept: float) -> float:
    return round(10 * (0.6 * following + 0.4 * kept), 1)


@family("pairwise_judge")
def pairwise(query: OfflineQuery) -> dict[str, str]:
    source, image_a, image_b = query.images[:3]
    score_a = overall(*edit_scores(query.text, source, image_a))
    score_b = overall(*edit_scores(query.text, source, image_b))
    winner = "Tie" if abs(score_a - score_b) <= 0.5 else ("Image A" if score_a > score_b else "Image B")
    return {"winner": winner, "reasoning": f"Image A scores {score_a}/10, Image B {score_b}/10 on following the "
                                           "instruction and keeping the rest of the image unchanged."}


@family("viescore")
def viescore(query: OfflineQuery) -> dict[str, object]:
    source, edited = query.images[:2]
    following, kept = edit_scores(query.text, source, edited)
    score_schema = ((query.schema or {}).get("properties") or {}).get("score", {})
    if score_schema.get("type") == "array":  # v2: [instruction following, overall], each on 0..25
        return {"reasoning": f"instruction followed {following:.0%}, rest of the image kept {kept:.0%}",
                "score": [round(25 * following), round(2.5 * overall(following, kept))]}
    return {"score": overall(following, kept),
            "reason": f"instruction followed {following:.0%}, rest of the image kept {kept:.0%}"}
