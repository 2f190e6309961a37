"""The referring-expression grammar of the sample scenes: noun phrases such as "the small red circle on the left"
or "two blue squares", what they denote in a scene, and the shortest phrase that singles an object out.

One grammar serves three places: the caption generator (seeds/grounding/make_inputs.py) writes it, the offline
VLM answers (vlm/offline_grounding.py) read and write it from the pixels, and the quality models resolve it
against the ground truth in SQL (models/grounding/grounding_truth_referents.sql) by the same rules:

- colour, shape and size words keep the objects of the image that have them (the shape word is required);
- a position word (left, right, top, bottom) then keeps the object(s) farthest that way, by box centre;
- nothing else narrows the set: "two blue squares" denotes every blue square.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

COLORS = ("red", "orange", "yellow", "green", "blue", "purple", "white", "black")
SHAPES = ("circle", "square", "triangle", "star")
SIZES = ("small", "medium", "large")
POSITIONS = ("left", "right", "top", "bottom")
NUMBER_WORDS = {2: "two", 3: "three", 4: "four"}
SIZE_WORDS = {"small": "small", "medium": "medium-sized", "large": "large"}
WHERE = {"left": "on the left", "right": "on the right", "top": "at the top", "bottom": "at the bottom"}

_COLOR = "|".join(COLORS)
_SHAPE = "|".join(SHAPES)
# A noun phrase of a caption: determiner or number, size, colour, shape, and a trailing position.
NOUN_PHRASE = re.compile(
    r"\b(?:(?:a|an|the|one|two|three|four|both)\s+)?"
    r"(?:(?:small|medium-sized|medium|large)\s+)?"
    rf"(?:(?:{_COLOR})\s+)?(?:{_SHAPE})s?\b"
    r"(?:\s+(?:on the (?:left|right)|at the (?:top|bottom)))?",
    re.IGNORECASE)
_WORD = {kind: re.compile(rf"\b({'|'.join(words)})\b", re.IGNORECASE)
         for kind, words in (("color", COLORS), ("size", SIZES), ("position", POSITIONS))}
_SHAPE_WORD = re.compile(rf"\b({_SHAPE})(s?)\b", re.IGNORECASE)
_PLURAL_WORD = re.compile(r"\b(two|three|four|both|all)\b", re.IGNORECASE)
# Spoken-style filler that captions of this kind start with ("In this image we can see ...").
_FILLER = (
    re.compile(r"^\s*(?:in (?:this|the) (?:image|photo|picture|scene),?\s*)?(?:we|you|i) can see\s+", re.IGNORECASE),
    re.compile(r"^\s*there (?:is|are)\s+", re.IGNORECASE),
    re.compile(r"^\s*(?:this|the) (?:image|photo|picture) (?:shows|contains)\s+", re.IGNORECASE),
    re.compile(r",?\s+in (?:this|the) (?:image|photo|picture)\b", re.IGNORECASE),
)

Box = tuple[int, int, int, int]


class Scenic(Protocol):
    """An object of a scene: the analysis' SceneObject and the ground truth's Thing both qualify."""

    @property
    def shape(self) -> str: ...

    @property
    def color(self) -> str: ...

    @property
    def size(self) -> str: ...

    @property
    def bbox(self) -> Box: ...


@dataclass(frozen=True)
class Thing:
    """A ground-truth object (seeds/scene_truth.jsonl); bbox is pixel xyxy, exclusive at x2/y2."""

    shape: str
    color: str
    size: str
    bbox: Box


@dataclass(frozen=True)
class Query:
    """What a phrase asks for; `None` means the phrase does not say."""

    shape: str
    color: str | None = None
    size: str | None = None
    position: str | None = None
    plural: bool = False


@dataclass(frozen=True)
class Mention:
    """A noun phrase found in a caption, with its character span [start, end)."""

    text: str
    start: int
    end: int
    query: Query

    @property
    def noun(self) -> str:
        return self.query.shape


def parse_phrase(text: str) -> Query | None:
    """The first shape word and the first colour, size and position words anywhere in `text`."""
    shape = _SHAPE_WORD.search(text)
    if shape is None:
        return None
    found = {kind: pattern.search(text) for kind, pattern in _WORD.items()}
    word = {kind: match.group(1).lower() if match else None for kind, match in found.items()}
    plural = bool(shape.group(2)) or _PLURAL_WORD.search(text) is not None
    return Query(shape=shape.group(1).lower(), color=word["color"], size=word["size"], position=word["position"],
                 plural=plural)


def find_mentions(caption: str) -> list[Mention]:
    """Every noun phrase of the grammar in `caption`, left to right."""
    mentions = []
    for match in NOUN_PHRASE.finditer(caption):
        query = parse_phrase(match.group(0))
        if query is not None:
            mentions.append(Mention(match.group(0), match.start(), match.end(), query))
    return mentions


def clean_caption(caption: str) -> str:
    """The caption without spoken-style filler, as one sentence with a capital first letter."""
    text = caption
    for pattern in _FILLER:
        text = pattern.sub("", text)
    text = re.sub(r"\s+", " ", text).strip()
    return text[:1].upper() + text[1:]


def center(obj: Scenic) -> tuple[float, float]:
    x1, y1, x2, y2 = obj.bbox
    return (x1 + x2) / 2, (y1 + y2) / 2


def _position_key(obj: Scenic, position: str) -> float:
    """Smaller is farther towards `position`."""
    cx, cy = center(obj)
    return {"left": cx, "right": -cx, "top": cy, "bottom": -cy}[position]


def extreme(objects: Sequence[Scenic], position: str) -> list[Scenic]:
    """The object(s) farthest towards `position` (ties all kept, as SQL's rank() = 1 does)."""
    if not objects:
        return []
    best = min(_position_key(o, position) for o in objects)
    return [o for o in objects if _position_key(o, position) == best]


def resolve(query: Query, objects: Sequence[Scenic]) -> list[Scenic]:
    """The objects a phrase denotes in a scene."""
    matching = [o for o in objects if o.shape == query.shape and query.color in (None, o.color)
                and query.size in (None, o.size)]
    return extreme(matching, query.position) if query.position else matching


def describe(obj: Scenic, objects: Sequence[Scenic], width: int, height: int) -> str:
    """The shortest phrase of the grammar that denotes `obj` alone: colour and shape, then size or position."""
    base = f"{obj.color} {obj.shape}"
    same = [o for o in objects if (o.color, o.shape) == (obj.color, obj.shape)]
    if len(same) == 1:
        where = absolute_position(obj, width, height)
        return f"the {base} {WHERE[where]}" if where else f"the {base}"
    if [o.size for o in same].count(obj.size) == 1:
        return f"the {SIZE_WORDS[obj.size]} {base}"
    position = distinguishing_position(obj, same)
    return f"the {base} {WHERE[position]}" if position else f"the {base}"


def absolute_position(obj: Scenic, width: int, height: int) -> str | None:
    """Where in the image the object sits, when it is clearly in a side third."""
    cx, cy = center(obj)
    if cx < width / 3:
        return "left"
    if cx > 2 * width / 3:
        return "right"
    if cy < height / 3:
        return "top"
    if cy > 2 * height / 3:
        return "bottom"
    return None


def distinguishing_position(obj: Scenic, group: Sequence[Scenic]) -> str | None:
    """The position word that picks `obj` alone out of `group`, the one with the widest margin."""
    best, margin = None, 0.0
    for position in POSITIONS:
        if extreme(group, position) != [obj]:
            continue
        others = sorted(_position_key(o, position) for o in group if o is not obj)
        gap = others[0] - _position_key(obj, position)
        if gap > margin:
            best, margin = position, gap
    return best


def group_phrase(group: Sequence[Scenic], *, with_size: bool = False) -> str:
    """An indefinite phrase for objects sharing colour and shape: "a small red circle", "two blue squares"."""
    first = group[0]
    if len(group) > 1:
        return f"{NUMBER_WORDS.get(len(group), str(len(group)))} {first.color} {first.shape}s"
    words = f"{SIZE_WORDS[first.size]} {first.color}" if with_size else first.color
    return f"{article(words)} {words} {first.shape}"


def article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def groups(objects: Sequence[Scenic]) -> list[list[Scenic]]:
    """Objects grouped by (colour, shape), groups in the order of their first object."""
    found: dict[tuple[str, str], list[Scenic]] = {}
    for obj in objects:
        found.setdefault((obj.color, obj.shape), []).append(obj)
    return list(found.values())


def join_phrases(phrases: Sequence[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    if len(phrases) <= 1:
        return "".join(phrases)
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def background_phrase(kind: str, color: str) -> str:
    """"a plain cream background", "a navy gradient background", "a textured light gray background"."""
    name = color.replace("_", " ")
    if kind == "gradient":
        return f"a {name} gradient background"
    return f"{article(kind)} {kind} {name} background"
