"""Text-image similarity as SQL functions: CLIP through open_clip, or a configured offline fallback.

    clip_scorer(model, pretrained, fallback) -> 'open_clip:<model>/<pretrained>' | 'fallback:<name>'
        Which scorer produces the similarity column: open_clip when the pretrained weights are in the local caches
        (or pretrained is 'random': the architecture with random weights, for tests and benchmarks), else the
        fallback. With neither it fails, naming the missing weights.
    clip_similarity(text, image, scorer) -> {score, scorer, status, error, raw_response}
        A batch function (up to 32 rows per forward pass), cached per (text, image content, scorer): the scorer is
        an argument, so scores of a fallback are never served once real weights appear. open_clip's score is the
        reference's: logit_scale.exp() * cosine(text, image), i.e. CLIP's logits_per_image.

Fallback scorers:
    scene_match  the share of the colours, shapes, coloured shapes, background tones and kinds named in the text
                 that the scene analysis (dataproj.vlm.offline_analysis) finds in the pixels, in [0, 1].
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from ..runtime.executor import RowFailure
from ..runtime.spec import udf
from ..runtime.types import ImagePath

BATCH_SIZE = 32
OPEN_CLIP = "open_clip:"
FALLBACK = "fallback:"
_LOCK = threading.Lock()


class SimilarityScore(BaseModel):
    score: float | None = None
    scorer: str


@udf
def clip_scorer(model: str, pretrained: str, fallback: str) -> str:
    """The scorer of a similarity column: open_clip when its weights are local, else the configured fallback."""
    if pretrained == "random" or (open_clip_weights_cached() and _cached(model, pretrained)):
        return f"{OPEN_CLIP}{model}/{pretrained}"
    if fallback:
        if fallback not in FALLBACKS:
            raise RowFailure(f"unknown similarity fallback {fallback!r}; known: {', '.join(FALLBACKS)}")
        return f"{FALLBACK}{fallback}"
    raise RowFailure(f"CLIP weights {model}/{pretrained} are not in the local caches and no fallback is configured: "
                     "put the weights in the Hugging Face cache, or set vars.imsearch.similarity.fallback")


def open_clip_weights_cached() -> bool:
    """Whether any open_clip weights are in the Hugging Face or legacy CLIP cache: a directory scan, so that a
    machine without weights learns it without importing torch (seconds on a small CPU)."""
    from pathlib import Path

    from huggingface_hub import constants

    hub = Path(constants.HF_HUB_CACHE)
    if hub.is_dir() and any(hub.glob("*/snapshots/*/open_clip_*")):
        return True
    legacy = Path("~/.cache/clip").expanduser()
    return legacy.is_dir() and any(legacy.iterdir())


def _cached(model: str, pretrained: str) -> bool:
    from .models import cached_clip_weights

    return cached_clip_weights(model, pretrained) is not None


@udf(kind="batch", cached=True, version="1", batch_size=BATCH_SIZE)
def clip_similarity(text: list[str], image: list[ImagePath], scorer: list[str]) -> list[SimilarityScore]:
    """Similarity of each text with its image, by the scorer each row names (see clip_scorer)."""
    scores: list[float | None] = [None] * len(text)
    for name in dict.fromkeys(scorer):
        rows = [i for i, s in enumerate(scorer) if s == name]
        batch = score_with(name, [text[i] for i in rows], [image[i] for i in rows])
        for row, value in zip(rows, batch, strict=True):
            scores[row] = value
    return [SimilarityScore(score=s, scorer=n) for s, n in zip(scores, scorer, strict=True)]


def score_with(scorer: str, texts: list[str], paths: list[str]) -> list[float]:
    if scorer.startswith(OPEN_CLIP):
        model, _, pretrained = scorer.removeprefix(OPEN_CLIP).partition("/")
        return open_clip_scores(model, pretrained, texts, paths)
    if scorer.startswith(FALLBACK) and scorer.removeprefix(FALLBACK) in FALLBACKS:
        score = FALLBACKS[scorer.removeprefix(FALLBACK)]
        return [score(t, p) for t, p in zip(texts, paths, strict=True)]
    if scorer is None:
        raise RowFailure("no scorer: clip_scorer() failed for this row")
    raise RowFailure(f"unknown scorer {scorer!r}: expected {OPEN_CLIP}<model>/<pretrained> or {FALLBACK}<name>")


# ---- open_clip --------------------------------------------------------------------------------------------------


def load_image(path: str) -> Any:
    from PIL import Image

    from ..runtime.images import ImageError

    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except FileNotFoundError:
        raise RowFailure(f"missing image file: {path}") from None
    except (OSError, ValueError, ImageError) as err:
        raise RowFailure(f"not an image or corrupt: {path} ({err})") from None


def open_clip_scores(model_name: str, pretrained: str, texts: list[str], paths: list[str]) -> list[float]:
    """CLIP logits (logit_scale * cosine) of each (text, image) pair; each distinct text is encoded once."""
    import torch

    from .models import load_clip

    bundle = load_clip(model_name, pretrained, random_weights=pretrained == "random")
    pixels = torch.stack([bundle.preprocess(load_image(p)) for p in paths])
    distinct = list(dict.fromkeys(texts))
    with _LOCK, torch.inference_mode():  # one forward pass at a time: each already uses every core
        image_features = bundle.model.encode_image(pixels)
        text_features = bundle.model.encode_text(bundle.tokenizer(distinct))
        image_features = image_features / image_features.norm(dim=-1, keepdim=True)
        text_features = text_features / text_features.norm(dim=-1, keepdim=True)
        rows = torch.tensor([distinct.index(t) for t in texts])
        scores = bundle.model.logit_scale.exp() * (image_features * text_features[rows]).sum(dim=-1)
    return [float(s) for s in scores]


# ---- fallback: scene_match ----------------------------------------------------------------------------------------

_WORD = re.compile(r"[a-z]+")
_SYNONYMS = {"grey": "gray", "circles": "circle", "squares": "square", "triangles": "triangle", "stars": "star",
             "colour": "color", "textures": "textured", "texture": "textured", "gradients": "gradient"}


def scene_match(text: str, path: str) -> float:
    """Share of the things the text names that the image shows: a colour followed by a shape is one coloured
    object; lone colours and shapes, 'light'/'dark' and 'plain'/'gradient'/'textured' (before 'background') are
    checked against the background or the objects."""
    from ..vlm.offline import COLORS, SHAPES
    from ..vlm.offline_analysis import analyse_cached

    scene = analyse_cached(path)
    words = [_SYNONYMS.get(w, w) for w in _WORD.findall(text.lower())]
    pairs = {(o.color, o.shape) for o in scene.objects}
    checks: list[bool] = []
    index = 0
    while index < len(words):
        word = words[index]
        following = words[index + 1] if index + 1 < len(words) else ""
        if word in COLORS and following in SHAPES:
            checks.append((word, following) in pairs)
            index += 2
            continue
        if word in COLORS:
            checks.append(any(c == word for c, _ in pairs))
        elif word in SHAPES:
            checks.append(any(s == word for _, s in pairs))
        elif word in ("light", "dark"):
            checks.append(scene.background_tone == word)
        elif word in ("plain", "gradient", "textured"):
            checks.append(scene.background_kind == word)
        index += 1
    return round(sum(checks) / len(checks), 6) if checks else 0.0


FALLBACKS: dict[str, Callable[[str, str], float]] = {"scene_match": scene_match}
