"""EMD of the unedited area: CLIP ViT-B/32 patch tokens (7x7 at 224 px, CLS excluded); all source patches
against the edited patches whose unedited fraction is > 0.1; squared-Euclidean cost, uniform weights, POT's
ot.emd2. Patch tokens are computed once per image (keyed by content hash) and reused across pairs and batches.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from .images import EditPair, MetricValue

EMD_MIN_UNEDITED = 0.1  # an edited patch counts when more than this fraction of it is unedited
CLIP_MODEL, CLIP_PRETRAINED = "ViT-B-32", "openai"
CLIP_TOKEN_CACHE = 2048  # patch-token sets kept (49 x 768 floats each)
NO_PATCH = "no patch qualifies"



class _TokenCache:
    """CLIP patch tokens per (model, image content): an image shared by many pairs is encoded once."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> np.ndarray | None:
        with self.lock:
            found = self.items.get(key)
            if found is not None:
                self.items.move_to_end(key)
            return found

    def put(self, key: tuple[str, str], tokens: np.ndarray) -> None:
        with self.lock:
            self.items[key] = tokens
            while len(self.items) > self.size:
                self.items.popitem(last=False)

    def __len__(self) -> int:
        return len(self.items)

    def clear(self) -> None:
        with self.lock:
            self.items.clear()


PATCH_TOKENS = _TokenCache(CLIP_TOKEN_CACHE)


def clip_model(weights: str) -> Any:
    """open_clip ViT-B/32 (local weights, or random for tests); WeightsUnavailable if missing."""
    from .models import load_clip

    if weights == "random":
        return load_clip(CLIP_MODEL, None, random_weights=True)
    return load_clip(CLIP_MODEL, CLIP_PRETRAINED)


def patch_tokens(clip: Any, images: Sequence[np.ndarray]) -> np.ndarray:
    """(n, patches, width) tokens of the vision transformer's last layer (after ln_post), CLS excluded."""
    import torch
    from PIL import Image

    visual = clip.model.visual
    batch = torch.stack([clip.preprocess(Image.fromarray(pixels)) for pixels in images])
    with torch.inference_mode():
        hidden = visual.transformer(visual._embeds(batch))
        _, tokens = visual._pool(hidden)
    return tokens.float().numpy()


def tokens_for(clip: Any, keyed_images: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Patch tokens of each image, from the cache or one batched forward over the missing ones."""
    found = {key: PATCH_TOKENS.get((clip.name, key)) for key in keyed_images}
    missing = [key for key, tokens in found.items() if tokens is None]
    if missing:
        for key, tokens in zip(missing, patch_tokens(clip, [keyed_images[k] for k in missing]), strict=True):
            PATCH_TOKENS.put((clip.name, key), tokens)
            found[key] = tokens
    return found  # type: ignore[return-value]


def patch_unedited_fractions(mask: np.ndarray, image_size: int, patch: int) -> np.ndarray:
    """The unedited fraction of each CLIP patch: the mask through the same resize (shortest side to
    image_size) and centre crop as the CLIP preprocessing, averaged over each patch, row-major."""
    from PIL import Image

    height, width = mask.shape
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(image_size * long / short)
    new_w, new_h = (image_size, new_long) if width <= height else (new_long, image_size)
    as_image = Image.fromarray(mask.astype(np.float32), mode="F")
    resized = np.asarray(as_image.resize((new_w, new_h), Image.Resampling.BOX))
    top, left = int(round((new_h - image_size) / 2.0)), int(round((new_w - image_size) / 2.0))
    crop = resized[top:top + image_size, left:left + image_size]
    grid = image_size // patch
    return crop[:grid * patch, :grid * patch].reshape(grid, patch, grid, patch).mean(axis=(1, 3)).reshape(-1)


def squared_distances(source_tokens: np.ndarray, edited_tokens: np.ndarray) -> np.ndarray:
    """(n, d) and (m, d) tokens -> (n, m) squared Euclidean costs, |x|² + |y|² - 2xy as one matrix product.

    That form leaves rounding noise where two tokens are equal; entries below float32 token resolution
    (1e-9 of |x|² + |y|²) are set to 0, so identical images cost exactly 0."""
    x, y = source_tokens.astype(np.float64), edited_tokens.astype(np.float64)
    scale = np.einsum("nd,nd->n", x, x)[:, None] + np.einsum("md,md->m", y, y)[None, :]
    cost = scale - 2.0 * (x @ y.T)
    cost[cost < 1e-9 * scale] = 0.0
    return cost


def earth_movers_distances(sources: Sequence[np.ndarray], editeds: Sequence[np.ndarray],
                           keeps: Sequence[np.ndarray]) -> list[float]:
    """POT's exact EMD (ot.emd2), uniform weights, squared-Euclidean cost: every source token against the
    edited tokens each `keeps` mask selects."""
    import ot

    distances = []
    for source, edited, keep in zip(sources, editeds, keeps, strict=True):
        cost = squared_distances(source, edited[keep])
        distances.append(float(ot.emd2(np.full(cost.shape[0], 1.0 / cost.shape[0]),
                                       np.full(cost.shape[1], 1.0 / cost.shape[1]), cost)))
    return distances


def emd_values(pairs: Sequence[EditPair], clip: Any) -> list[MetricValue]:
    """EMD between all source patches and the edited patches that are mostly unedited."""
    images: dict[str, np.ndarray] = {}
    for pair in pairs:
        images.setdefault(pair.source_key, pair.source)
        images.setdefault(pair.edited_key, pair.edited)
    tokens = tokens_for(clip, images)
    patch = clip.model.visual.patch_size
    patch = patch[0] if isinstance(patch, tuple | list) else int(patch)
    keeps = [patch_unedited_fractions(pair.mask, clip.image_size, patch) > EMD_MIN_UNEDITED for pair in pairs]
    measured = [i for i, keep in enumerate(keeps) if keep.any()]
    results: list[MetricValue] = [(None, NO_PATCH)] * len(pairs)
    if measured:
        distances = earth_movers_distances([tokens[pairs[i].source_key] for i in measured],
                                           [tokens[pairs[i].edited_key] for i in measured],
                                           [keeps[i] for i in measured])
        for i, distance in zip(measured, distances, strict=True):
            results[i] = (distance, None)
    return results


def clear_memo() -> None:
    """Forget the memoised patch tokens and decoded images (a benchmark's cold run starts with this)."""
    from .images import clear_decoded

    PATCH_TOKENS.clear()
    clear_decoded()
