"""Offline answers for the image-search benchmark: the vision annotation and the relevance judge.

`imsearch_vision_annotation` reads the annotation spec (taxonomy facets, boolean facets, tag vocabulary and
bounds) from the rendered prompt and answers every facet from the scene analysis of the image: the dominant
object is the largest one by painted area. A facet, value or tag pattern it cannot compute from pixels is an
error, never a guess.

`imsearch_relevance_judge` is text only, like the reference judge: it reads the seed and candidate annotations
from the prompt's JSON, writes the query from the seeds' profile (dominant colour and shape, background tone)
and labels a candidate relevant when its annotations show that coloured shape on that background tone.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .offline import COLORS, SHAPES, OfflineQuery, analysis, family
from .offline_analysis import SceneAnalysis, SceneObject

SPEC_LABEL = "ANNOTATION SPEC (JSON):"
DATA_LABEL = "DATA (JSON):"
COUNT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
QUERY_FACETS = ("dominant_color", "dominant_shape", "background_tone")
_KNOWN_COLORS = frozenset(COLORS)
_KNOWN_SHAPES = frozenset(SHAPES)


class OfflineAnswerError(ValueError):
    """The offline backend cannot answer this request from the pixels (unknown facet, value or format)."""


@dataclass(frozen=True)
class AnnotationSpec:
    taxonomy: dict[str, list[str]]
    booleans: list[str]
    vocabulary: list[str]
    min_tags: int
    max_tags: int


def labelled_json(texts: Sequence[str], label: str) -> Any:
    """The JSON value that follows `label` in one of the rendered text blocks."""
    for text in texts:
        start = text.find(label)
        if start != -1:
            try:
                return json.loads(text[start + len(label):])
            except json.JSONDecodeError as err:
                raise OfflineAnswerError(f"the JSON after {label!r} does not parse: {err}") from None
    raise OfflineAnswerError(f"the prompt has no {label!r} block")


def read_spec(texts: Sequence[str]) -> AnnotationSpec:
    raw = labelled_json(texts, SPEC_LABEL)
    tags = raw.get("tags") or {}
    return AnnotationSpec(taxonomy={k: list(v) for k, v in (raw.get("taxonomy") or {}).items()},
                          booleans=list(raw.get("booleans") or []), vocabulary=list(tags.get("vocabulary") or []),
                          min_tags=int(tags.get("min", 0)), max_tags=int(tags.get("max", 10**6)))


# ---- facts from the scene analysis ----------------------------------------------------------------------------


def dominant(scene: SceneAnalysis) -> SceneObject:
    if not scene.objects:
        raise OfflineAnswerError("no object found in the image, so it has no dominant object")
    return max(scene.objects, key=lambda o: (o.area_px, -o.bbox[0], -o.bbox[1]))


def dominance(scene: SceneAnalysis) -> float:
    """How clearly the largest object dominates: 0.98 alone, lower as the runner-up gets closer in area."""
    areas = sorted((o.area_px for o in scene.objects), reverse=True)
    if len(areas) < 2:
        return 0.98
    return round(0.55 + 0.43 * (1 - areas[1] / areas[0]), 3)


def count_confidence(scene: SceneAnalysis) -> float:
    """Counting misses only objects too small to see: lower when the smallest one covers < 1% of the image."""
    smallest = min((o.area_px for o in scene.objects), default=0)
    return 0.95 if smallest >= 0.01 * scene.width * scene.height else 0.8


def tone_confidence(scene: SceneAnalysis) -> float:
    """Brighter or darker images are clearer cases; mid-grey ones are the doubtful ones."""
    return round(0.6 + 0.39 * min(1.0, 2.5 * abs(scene.brightness - 0.5)), 3)


def count_bucket(n: int, allowed: Sequence[str]) -> str:
    """`one`, `two`, ... or the first `<word>_plus` bucket that covers n (e.g. four_plus)."""
    word = COUNT_WORDS[n] if n < len(COUNT_WORDS) else str(n)
    if word in allowed:
        return word
    for value in allowed:
        head = value.removesuffix("_plus")
        if value.endswith("_plus") and head in COUNT_WORDS and n >= COUNT_WORDS.index(head):
            return value
    raise OfflineAnswerError(f"object_count: {n} objects fit none of the allowed values {list(allowed)}")


FacetRule = Callable[[SceneAnalysis, Sequence[str]], tuple[str, float]]

TAXONOMY_RULES: dict[str, FacetRule] = {
    "dominant_shape": lambda s, _: (dominant(s).shape, dominance(s)),
    "dominant_color": lambda s, _: (dominant(s).color, dominance(s)),
    "dominant_size": lambda s, _: (dominant(s).size, dominance(s)),
    "background_tone": lambda s, _: (s.background_tone, tone_confidence(s)),
    "background_kind": lambda s, _: (s.background_kind, 0.9),
    "background_color": lambda s, _: (s.background_color, 0.9),
    "object_count": lambda s, allowed: (count_bucket(len(s.objects), allowed), count_confidence(s)),
}


def taxonomy_value(facet: str, allowed: list[str], scene: SceneAnalysis) -> tuple[str, float]:
    rule = TAXONOMY_RULES.get(facet)
    if rule is None:
        raise OfflineAnswerError(f"the offline backend cannot compute taxonomy facet {facet!r} from pixels; "
                                 f"it knows: {', '.join(TAXONOMY_RULES)}")
    value, confidence = rule(scene, allowed)
    if value not in allowed:
        raise OfflineAnswerError(f"{facet}: the image shows {value!r}, which is not an allowed value {allowed}")
    return value, confidence


def boolean_value(facet: str, scene: SceneAnalysis) -> tuple[bool, float]:
    """has_<colour>, has_<shape>, has_<colour>_<shape>, multiple_objects, single_object."""
    colors = {o.color for o in scene.objects}
    shapes = {o.shape for o in scene.objects}
    pairs = {f"{o.color}_{o.shape}" for o in scene.objects}
    if facet in ("multiple_objects", "single_object"):
        value = len(scene.objects) > 1 if facet == "multiple_objects" else len(scene.objects) == 1
        return value, count_confidence(scene)
    thing = facet.removeprefix("has_")
    color, _, shape = thing.partition("_")
    if facet.startswith("has_") and (thing in _KNOWN_COLORS or thing in _KNOWN_SHAPES
                                     or (color in _KNOWN_COLORS and shape in _KNOWN_SHAPES)):
        return thing in colors | shapes | pairs, 0.95
    raise OfflineAnswerError(f"the offline backend cannot compute boolean facet {facet!r} from pixels; it knows "
                             "has_<colour>, has_<shape>, has_<colour>_<shape>, multiple_objects, single_object")


def true_tags(scene: SceneAnalysis) -> list[str]:
    """Every tag the image supports, most specific first (coloured shapes, then colours, shapes, background...)."""
    objects = sorted(scene.objects, key=lambda o: -o.area_px)
    count = len(objects)
    tags = [f"{o.color}_{o.shape}" for o in objects]
    tags += [o.color for o in objects] + [o.shape for o in objects]
    tags += [f"{scene.background_tone}_background", f"{scene.background_kind}_background",
             f"{scene.background_color}_background"]
    tags += [f"{COUNT_WORDS[count] if count < len(COUNT_WORDS) else count}_object{'s' if count != 1 else ''}",
             "single_object" if count == 1 else "multiple_objects"]
    tags += [f"{o.size}_object" for o in objects]
    return list(dict.fromkeys(tags))


def summary_text(scene: SceneAnalysis) -> str:
    objects = sorted(scene.objects, key=lambda o: -o.area_px)
    count = len(objects)
    noun = "object" if count == 1 else "objects"
    described = [f"a {o.size} {o.color} {o.shape}" for o in objects]
    listed = described[0] if count == 1 else ", ".join(described[:-1]) + " and " + described[-1]
    color = scene.background_color.replace("_", " ")
    tone = "" if color.startswith(scene.background_tone) else f"{scene.background_tone} "
    background = f"{tone}{color} {scene.background_kind}"
    number = COUNT_WORDS[count].capitalize() if count < len(COUNT_WORDS) else str(count)
    return f"{number} {noun} on a {background} background: {listed}."


@family("imsearch_vision_annotation")
def vision_annotation(query: OfflineQuery) -> dict[str, Any]:
    if not query.images:
        raise OfflineAnswerError("the vision annotation needs an image")
    spec = read_spec(query.texts)
    scene = analysis(query.images[0])
    vocabulary = set(spec.vocabulary)
    tags = [t for t in true_tags(scene) if t in vocabulary][:spec.max_tags]
    facets = {f: taxonomy_value(f, allowed, scene) for f, allowed in spec.taxonomy.items()}
    facets |= {f: boolean_value(f, scene) for f in spec.booleans}
    return {"summary": summary_text(scene), **{f: value for f, (value, _) in facets.items()}, "tags": tags,
            "confidence": {f: confidence for f, (_, confidence) in facets.items()}}


# ---- the judge ---------------------------------------------------------------------------------------------------


def majority(values: list[Any]) -> Any:
    """The reference's majority vote: most common non-null value, ties to the one whose str sorts first."""
    counts = Counter(v for v in values if v is not None)
    if not counts:
        return None
    top = max(counts.values())
    return sorted((v for v, n in counts.items() if n == top), key=str)[0]


def query_profile(seeds: list[dict[str, Any]]) -> dict[str, str]:
    profile = {facet: majority([seed.get(facet) for seed in seeds]) for facet in QUERY_FACETS}
    missing = [f for f in ("dominant_color", "dominant_shape") if profile[f] is None]
    if missing:
        raise OfflineAnswerError(f"the seed annotations lack {missing}: the offline judge writes its query from "
                                 "the dominant colour and shape")
    return profile


def query_text(profile: dict[str, str]) -> str:
    article = "an" if profile["dominant_color"][:1] in "aeiou" else "a"
    text = f"{article} {profile['dominant_color']} {profile['dominant_shape']}"
    return text + (f" on a {profile['background_tone']} background" if profile.get("background_tone") else "")


def is_relevant(candidate: dict[str, Any], profile: dict[str, str]) -> bool:
    """The coloured shape is among the candidate's objects and the background tone matches."""
    tags = set(candidate.get("tags") or [])
    color, shape, tone = profile["dominant_color"], profile["dominant_shape"], profile.get("background_tone")
    # With coloured-shape tags the pair must be one object; with colour and shape tags only, both must appear.
    pair_tags = any(t.partition("_")[0] in _KNOWN_COLORS and t.partition("_")[2] in _KNOWN_SHAPES for t in tags)
    has_object = f"{color}_{shape}" in tags if pair_tags else {color, shape} <= tags
    if tone is None:
        return has_object
    tone_seen = candidate.get("background_tone") or next(
        (t.removesuffix("_background") for t in tags if t in ("light_background", "dark_background")), None)
    return has_object and tone_seen == tone


@family("imsearch_relevance_judge")
def relevance_judge(query: OfflineQuery) -> dict[str, Any]:
    data = labelled_json(query.texts, DATA_LABEL)
    seeds, candidates = data.get("seed_images") or [], data.get("candidates") or []
    if not seeds:
        raise OfflineAnswerError("the judge request has no seed images")
    profile = query_profile(seeds)
    return {"query_text": query_text(profile),
            "judgments": [{"image_id": c["image_id"], "relevance_label": int(is_relevant(c, profile))}
                          for c in candidates]}
