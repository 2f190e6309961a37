"""Image pairs for the unedited-area metrics, as the edit-annotation reference prepares them: both images capped
at MAX_SIDE px on the long side, the edited image resized to the source's size, and the unedited-area mask
(1 everywhere, 0 inside every box of the edited region).

Decoded images are memoised per (resolved path, mtime, size, target size), so a source shared by the candidates
of a group is read once per batch; `content_key` names an image's pixels for the feature caches of the metrics.
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..runtime.images import ContentHashes, ImageError

MAX_SIDE = 2048  # the reference caps both images at 2048 px on the long side
RESAMPLE = Image.Resampling.BICUBIC  # for the cap and for resizing the edited image to the source's size
DECODED_CACHE_BYTES = 256 << 20

Box = Sequence[float]
MetricValue = tuple[float | None, str | None]  # a metric's value, or None and the reason
NO_UNEDITED_AREA = "no unedited area"


@dataclass(frozen=True)
class EditPair:
    """One source / edited pair ready for the metrics."""

    source: np.ndarray  # (h, w, 3) uint8, capped
    edited: np.ndarray  # (h, w, 3) uint8, resized to the source
    mask: np.ndarray  # (h, w) float32: 1 on the unedited area, 0 inside a box
    source_key: str  # content identity of the source's pixels (sha256 of the file)
    edited_key: str  # content identity of the edited file's pixels at this size

    @property
    def unedited_fraction(self) -> float:
        return float(self.mask.mean())


class _Decoded:
    """A bounded LRU of decoded, capped (and resized) images."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.used = 0
        self.items: OrderedDict[tuple[object, ...], np.ndarray] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: tuple[object, ...]) -> np.ndarray | None:
        with self.lock:
            found = self.items.get(key)
            if found is not None:
                self.items.move_to_end(key)
            return found

    def clear(self) -> None:
        with self.lock:
            self.items.clear()
            self.used = 0

    def put(self, key: tuple[object, ...], value: np.ndarray) -> None:
        with self.lock:
            if key in self.items:
                return
            self.items[key] = value
            self.used += value.nbytes
            while self.used > self.max_bytes and len(self.items) > 1:
                _, dropped = self.items.popitem(last=False)
                self.used -= dropped.nbytes


_DECODED = _Decoded(DECODED_CACHE_BYTES)
_HASHES = ContentHashes()


def clear_decoded() -> None:
    """Forget every memoised decoded image."""
    _DECODED.clear()


def capped_size(width: int, height: int, max_side: int = MAX_SIDE) -> tuple[int, int]:
    """(width, height) scaled so the long side is at most max_side (aspect kept, at least 1 px)."""
    longest = max(width, height)
    if longest <= max_side:
        return width, height
    scale = max_side / longest
    return max(1, round(width * scale)), max(1, round(height * scale))


def content_key(path: str | Path) -> str:
    """sha256 of an image file, memoised by its stat (size, mtime, inode)."""
    return _HASHES.get(Path(path))


def load_rgb(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """An image as (h, w, 3) uint8 RGB, capped at MAX_SIDE, or resized to `size` (width, height) when given."""
    resolved = Path(path).resolve()
    try:
        stat = os.stat(resolved)
    except OSError as err:
        raise ImageError(f"missing file: {path}" if isinstance(err, FileNotFoundError)
                         else f"cannot read file: {path} ({err.strerror or err})", path=Path(path)) from None
    key = (str(resolved), stat.st_mtime_ns, stat.st_size, size)
    found = _DECODED.get(key)
    if found is not None:
        return found
    try:
        with Image.open(resolved) as image:
            image = image.convert("RGB")
            target = size or capped_size(*image.size)
            if image.size != target:
                image = image.resize(target, RESAMPLE)
            pixels = np.asarray(image, dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ImageError(f"not an image or corrupt: {path} ({err})", path=Path(path)) from None
    pixels.setflags(write=False)
    _DECODED.put(key, pixels)
    return pixels


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of the file as stored, before the cap."""
    try:
        with Image.open(path) as image:
            return image.size
    except FileNotFoundError:
        raise ImageError(f"missing file: {path}", path=Path(path)) from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"not an image or corrupt: {path} ({err})", path=Path(path)) from None


def unedited_mask(height: int, width: int, boxes: Sequence[Box] | None, scale_x: float = 1.0,
                  scale_y: float = 1.0) -> np.ndarray:
    """1.0 everywhere, 0.0 inside every box; boxes are pixel [x1, y1, x2, y2] (x2, y2 exclusive) of the
    uncapped source, scaled by (scale_x, scale_y) and rounded outwards so a box never shrinks."""
    mask = np.ones((height, width), dtype=np.float32)
    for index, box in enumerate(boxes or ()):
        if box is None or len(box) != 4 or any(v is None or not math.isfinite(v) for v in box):
            raise ValueError(f"box {index} is not four finite numbers [x1, y1, x2, y2]: {box!r}")
        x1, y1, x2, y2 = box
        left, right = sorted((x1 * scale_x, x2 * scale_x))
        top, bottom = sorted((y1 * scale_y, y2 * scale_y))
        c1, c2 = max(0, math.floor(left)), min(width, math.ceil(right))
        r1, r2 = max(0, math.floor(top)), min(height, math.ceil(bottom))
        if c1 < c2 and r1 < r2:
            mask[r1:r2, c1:c2] = 0.0
    return mask


def load_pair(source_path: str | Path, edited_path: str | Path, boxes: Sequence[Box] | None) -> EditPair:
    """Decode, cap and align one pair and build its mask; ImageError names an unreadable file."""
    width, height = image_size(source_path)
    source = load_rgb(source_path)
    h, w = source.shape[:2]
    edited = load_rgb(edited_path, size=(w, h))
    mask = unedited_mask(h, w, boxes, w / width, h / height)
    return EditPair(source=source, edited=edited, mask=mask, source_key=content_key(source_path),
                    edited_key=f"{content_key(edited_path)}@{w}x{h}")


def chunks_by_size(pairs: Sequence[EditPair], max_pixels: int) -> list[list[int]]:
    """Indices of same-size pairs, in chunks of at most max_pixels source pixels (at least one pair)."""
    by_size: dict[tuple[int, int], list[int]] = {}
    for index, pair in enumerate(pairs):
        by_size.setdefault(pair.source.shape[:2], []).append(index)
    chunks = []
    for (height, width), indices in by_size.items():
        per_chunk = max(1, max_pixels // (height * width))
        chunks += [indices[start:start + per_chunk] for start in range(0, len(indices), per_chunk)]
    return chunks
