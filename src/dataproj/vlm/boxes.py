"""Box conventions in one place. Everything stored is pixel [x1, y1, x2, y2], clamped to the image.

- pixel_xyxy: pixels, [x1, y1, x2, y2]
- norm1000_xyxy: 0..1000 of width / height, [x1, y1, x2, y2] (Qwen-style `bbox_2d`, many OpenAI-compatible models)
- gemini_yxyx: 0..1000, [ymin, xmin, ymax, xmax] (what Gemini returns natively)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

BoxConvention = Literal["pixel_xyxy", "norm1000_xyxy", "gemini_yxyx"]
CONVENTIONS: tuple[str, ...] = ("pixel_xyxy", "norm1000_xyxy", "gemini_yxyx")


class BoxError(ValueError):
    """A box that is not four numbers, or that is empty once clamped to the image."""


def to_pixels(box: Sequence[float], convention: str, width: int, height: int) -> list[int]:
    """Convert a box in `convention` to pixel xyxy, ordered and clamped to the image."""
    if len(box) != 4:
        raise BoxError(f"a box has 4 numbers, got {list(box)!r}")
    a, b, c, d = (float(v) for v in box)
    if convention == "pixel_xyxy":
        x1, y1, x2, y2 = a, b, c, d
    elif convention == "norm1000_xyxy":
        x1, y1, x2, y2 = a * width / 1000, b * height / 1000, c * width / 1000, d * height / 1000
    elif convention == "gemini_yxyx":
        x1, y1, x2, y2 = b * width / 1000, a * height / 1000, d * width / 1000, c * height / 1000
    else:
        raise BoxError(f"unknown box convention {convention!r}; use one of {', '.join(CONVENTIONS)}")
    x1, x2 = sorted((x1, x2))
    y1, y2 = sorted((y1, y2))
    clamped = [_clamp(round(x1), width), _clamp(round(y1), height), _clamp(round(x2), width), _clamp(round(y2), height)]
    if clamped[0] >= clamped[2] or clamped[1] >= clamped[3]:
        raise BoxError(f"box {list(box)!r} ({convention}) is empty inside a {width}x{height} image")
    return clamped


def from_pixels(box: Sequence[int], convention: str, width: int, height: int) -> list[int]:
    """Pixel xyxy to `convention` (what a prompt shows the model, and what the offline backend answers)."""
    x1, y1, x2, y2 = box
    if convention == "pixel_xyxy":
        return [int(x1), int(y1), int(x2), int(y2)]
    nx1, nx2 = round(x1 * 1000 / width), round(x2 * 1000 / width)
    ny1, ny2 = round(y1 * 1000 / height), round(y2 * 1000 / height)
    if convention == "norm1000_xyxy":
        return [nx1, ny1, nx2, ny2]
    if convention == "gemini_yxyx":
        return [ny1, nx1, ny2, nx2]
    raise BoxError(f"unknown box convention {convention!r}; use one of {', '.join(CONVENTIONS)}")


def _clamp(value: int, limit: int) -> int:
    return max(0, min(limit, value))
