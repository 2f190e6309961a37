"""The offline backend's answers: deterministic, computed from the images with scikit-image.

Each prompt family registers an answerer that reads the rendered prompt text (which carries the inputs the
family needs), analyses the images, and returns the JSON the family's schema asks for. A family it does not
know is an error, never an empty answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .offline_analysis import COLOR_RGB, SceneAnalysis, analyse_cached

SHAPES = ("circle", "square", "triangle", "star")
COLORS = tuple(COLOR_RGB)


@dataclass(frozen=True)
class OfflineQuery:
    family: str
    system: str
    texts: tuple[str, ...]
    images: tuple[str, ...]  # local paths
    schema: dict[str, Any] | None
    box_convention: str | None

    @property
    def text(self) -> str:
        return "\n".join(self.texts)


Answerer = Callable[[OfflineQuery], Any]
FAMILIES: dict[str, Answerer] = {}


class UnknownFamilyError(ValueError):
    """The offline backend has no answerer for a prompt family."""


def family(name: str) -> Callable[[Answerer], Answerer]:
    def register(func: Answerer) -> Answerer:
        FAMILIES[name] = func
        return func

    return register


def answer(family_name: str, system: str, texts: Sequence[str], images: Sequence[str],
           schema: dict[str, Any] | None, box_convention: str | None) -> Any:
    """The offline answer to one request (a JSON-ready value)."""
    _load_families()
    if family_name not in FAMILIES:
        raise UnknownFamilyError(f"the offline backend cannot answer prompt family {family_name!r}; "
                                 f"it knows: {', '.join(sorted(FAMILIES))}. Use a real backend for this prompt")
    query = OfflineQuery(family_name, system, tuple(texts), tuple(images), schema, box_convention)
    return FAMILIES[family_name](query)


def _load_families() -> None:
    """Each pipeline registers its families in a module vlm/offline_<name>.py; importing them fills FAMILIES."""
    import importlib
    import pkgutil

    from .. import vlm

    for module in pkgutil.iter_modules(vlm.__path__):
        if module.name.startswith("offline_") and module.name != "offline_analysis":
            importlib.import_module(f"{vlm.__name__}.{module.name}")


# ---- shared helpers for answerers ----------------------------------------------------------------------


def field_after(text: str, label: str) -> str | None:
    """The rest of the line after `label:` in a rendered prompt."""
    match = re.search(rf"{re.escape(label)}\s*:\s*(.+)", text)
    return match.group(1).strip() if match else None


def analysis(path: str) -> SceneAnalysis:
    return analyse_cached(path)


def describe_object(obj: Any) -> str:
    return f"{obj.color} {obj.shape}"


def load_rgb(path: str, size: tuple[int, int] | None = None) -> np.ndarray:
    """An image as float RGB, resized to `size` (width, height) when given."""
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        if size is not None and image.size != size:
            image = image.resize(size, Image.Resampling.BILINEAR)
        return np.asarray(image, dtype=np.float32)
