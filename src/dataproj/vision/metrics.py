"""Unedited-area metrics of an image edit as SQL functions: ssim(a, b, boxes), lpips(a, b, boxes),
emd(a, b, boxes), and unedit_area(...) with all three and the reason for each one it skips.

The definitions are the edit-annotation reference's (REFERENCE.md §3). Images are capped at 2048 px, the edited
image is resized to the source's size, and the unedited mask is 1 outside every box (vision.images).

- SSIM: Gaussian window 11, sigma 1.5, data range 255, RGB; skimage's full SSIM map averaged where the mask is 1,
  after cropping a 5 px border. Vectorised: the pairs of a batch are grouped by size and stacked plane by plane,
  and ONE separable Gaussian pass filters the whole stack (in bands of rows that stay in the CPU cache, on a
  few threads). SSIM needs the filtered x, y, x², y², xy; with s = x + y and d = x - y, filtering s, d, s², d²
  gives the same terms from four planes per channel instead of five. float32 with s centred on its mean: the
  values equal skimage's (float64) within 1e-6.
- LPIPS: the lpips package's AlexNet LPIPS of edited*mask + source*(1-mask) against the source, inputs in
  [-1, 1], divided by the unedited fraction. Batched: one AlexNet forward over the composites and the distinct
  sources of a batch (channels-last memory, which CPUs convolve about twice as fast).
- EMD: CLIP ViT-B/32 patch tokens (7x7 at 224 px, CLS excluded); all source patches against the edited patches
  whose unedited fraction is > 0.1; squared-Euclidean cost, uniform weights, POT's ot.emd2. Patch tokens are
  computed once per image (keyed by content hash) and reused across pairs and batches.

Weights are never downloaded: `weights='pretrained'` uses the local caches (dataproj.vision.models) and, where
they are missing, the metric is NULL with reason "weights unavailable". `weights='random'` runs the same code
with a randomly initialised backbone, for tests and benchmarks only: its values mean nothing about quality.

The functions are not in the durable call cache: they are local computations, and a NULL for missing weights
must never be replayed once the weights are there. What is expensive and shared (decoded images, CLIP patch
tokens) is memoised in the process by content hash.
"""

from __future__ import annotations

import copy
import functools
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from pydantic import BaseModel

from ..runtime.images import ImageError
from ..runtime.spec import udf
from ..runtime.types import ImagePath
from .images import Box, EditPair, load_pair

METRICS = ("lpips", "emd", "ssim")
WEIGHTS = ("pretrained", "random")
# SSIM as skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5, data_range=255)
SSIM_SIGMA = 1.5
SSIM_RADIUS = 5  # skimage's truncate=3.5: int(3.5 * 1.5 + 0.5); the window is 11 px, the cropped border 5 px
SSIM_WINDOW = 2 * SSIM_RADIUS + 1
SSIM_C1 = (0.01 * 255) ** 2
SSIM_C2 = (0.03 * 255) ** 2
SSIM_COV_NORM = SSIM_WINDOW**2 / (SSIM_WINDOW**2 - 1)  # skimage's sample covariance
SSIM_CHUNK_PIXELS = 4 * 512 * 512  # source pixels of the pairs stacked into one filter pass
SSIM_MIN_BAND_ROWS = 32  # below this the 10 halo rows of a band cost more than the cache saves
SSIM_BAND_BYTES = 2 << 20  # float32 planes per band of rows: what a core's share of the cache holds
SSIM_THREADS = max(1, min(4, os.cpu_count() or 1))
LPIPS_CHUNK_PIXELS = 4 * 512 * 512  # source pixels per AlexNet forward (composites and their sources)
EMD_MIN_UNEDITED = 0.1  # an edited patch counts when more than this fraction of it is unedited
CLIP_MODEL, CLIP_PRETRAINED = "ViT-B-32", "openai"
CLIP_TOKEN_CACHE = 2048  # patch-token sets kept (49 x 768 floats each)

NO_BOX = "no box found"
NO_WEIGHTS = "weights unavailable"
NOT_CONFIGURED = "not configured"
NO_UNEDITED_AREA = "no unedited area"
NO_PATCH = "no patch qualifies"
TOO_SMALL = "image smaller than the 11 px SSIM window"


class UneditArea(BaseModel):
    """unedit_area(...): the three metrics, and for each one that is NULL the reason."""

    lpips: float | None = None
    emd: float | None = None
    ssim: float | None = None
    lpips_reason: str | None = None
    emd_reason: str | None = None
    ssim_reason: str | None = None


Value = tuple[float | None, str | None]  # a metric value, or None and the reason


# ---- SSIM -------------------------------------------------------------------------------------------------


def _gaussian_kernel() -> np.ndarray:
    offsets = np.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=np.float64)
    kernel = np.exp(-(offsets**2) / (2 * SSIM_SIGMA**2))
    return kernel / kernel.sum()


SSIM_DTYPE = np.float32  # float64 matches skimage to 1e-12 but runs at about 0.4x the speed
KERNEL = _gaussian_kernel()


def gaussian_valid(planes: np.ndarray) -> np.ndarray:
    """(h + 10, w + 10, p) -> (h, w, p): the Gaussian of every plane where its window lies inside the input.

    Only these outputs are needed: skimage filters with 'reflect' edges, but SSIM crops the 5 px border where
    the reflection would matter. Each axis is six multiplies and ten adds of shifted views (the kernel is
    symmetric) over the whole stack; no BLAS, whose own threads would fight the band threads."""
    rows, columns = planes.shape[0] - 2 * SSIM_RADIUS, planes.shape[1] - 2 * SSIM_RADIUS
    return _symmetric_taps(_symmetric_taps(planes, rows, axis=0), columns, axis=1)


def _symmetric_taps(x: np.ndarray, length: int, axis: int) -> np.ndarray:
    """The kernel along `axis` as shifted adds, tap pairs first (the kernel is symmetric): `length` outputs."""

    def window(start: int) -> np.ndarray:
        return x[start:start + length] if axis == 0 else x[:, start:start + length]

    kernel = KERNEL.astype(x.dtype)
    out = window(SSIM_RADIUS) * kernel[SSIM_RADIUS]
    pair = np.empty_like(out)
    for tap in range(SSIM_RADIUS):
        np.add(window(tap), window(2 * SSIM_RADIUS - tap), out=pair)
        pair *= kernel[tap]
        out += pair
    return out


def ssim_band_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The SSIM map of one band of rows of a stack of pairs: a, b (rows + 10, w, 3n) uint8, the band with its
    halo -> (rows, w - 10, 3n) float32, equal to skimage's full map there.

    SSIM needs the filtered x, y, x², y², xy; with s = x + y - c and d = x - y, the filtered s, d, s², d² give
    the same terms from four planes instead of five. c, the band's mean of x + y per plane, is a constant shift
    (the variances do not change) that keeps the float32 sums of squares small, hence accurate."""
    planes = a.shape[2]
    dt = SSIM_DTYPE
    stack = np.empty((*a.shape[:2], 4 * planes), dtype=dt)
    s, d = stack[..., :planes], stack[..., planes:2 * planes]
    np.add(a, b, out=s, dtype=dt)
    centre = np.rint(s[::4, ::4].mean(axis=(0, 1)))  # any constant will do; near the mean is most accurate
    s -= centre
    np.subtract(a, b, out=d, dtype=dt)
    np.multiply(s, s, out=stack[..., 2 * planes:3 * planes])
    np.multiply(d, d, out=stack[..., 3 * planes:])
    filtered = gaussian_valid(stack)
    mean_s, mean_d = filtered[..., :planes], filtered[..., planes:2 * planes]
    var_s, var_d = filtered[..., 2 * planes:3 * planes], filtered[..., 3 * planes:]  # made in place below
    # skimage: S = (2 ux uy + C1)(2 vxy + C2) / ((ux² + uy² + C1)(vx + vy + C2)). In s and d terms, with the
    # factors 1/2 and the covariance normalisation cancelled between numerator and denominator:
    # S = ((mu_s² - mu_d² + 2 C1)(var_s - var_d + k)) / ((mu_s² + mu_d² + 2 C1)(var_s + var_d + k)),
    # var_s = E[s²] - E[s]², var_d = E[d²] - E[d]², k = 2 C2 / cov_norm.
    var_s -= np.square(mean_s)
    spread_d = np.square(mean_d)
    var_d -= spread_d
    mean_s += centre
    np.square(mean_s, out=mean_s)
    k = dt(2 * SSIM_C2 / SSIM_COV_NORM)
    numerator = mean_s - spread_d
    numerator += dt(2 * SSIM_C1)
    second = var_s - var_d
    second += k
    numerator *= second
    denominator = np.add(mean_s, spread_d, out=mean_s)
    denominator += dt(2 * SSIM_C1)
    np.add(var_s, var_d, out=var_s)
    var_s += k
    denominator *= var_s
    numerator /= denominator
    return numerator


def _masked_band_sums(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per pair, the sum of its SSIM map over one band's pixels (where the mask is 1) and channels."""
    rows, columns, count = mask.shape
    weighted = ssim_band_map(a, b).reshape(rows, columns, count, 3)
    weighted *= mask[..., None]
    # sum each plane along a contiguous axis: numpy's pairwise float64 summation, fast and accurate
    planes = np.ascontiguousarray(weighted.reshape(rows * columns, count * 3).T)
    return planes.sum(axis=1, dtype=np.float64).reshape(count, 3).sum(axis=1)


@functools.cache
def _ssim_pool() -> ThreadPoolExecutor:
    """Bands of rows run on these threads (numpy releases the GIL in its array operations)."""
    return ThreadPoolExecutor(max_workers=SSIM_THREADS, thread_name_prefix="dataproj-ssim")


def _band_starts(height: int, width: int, planes: int) -> range:
    rows = max(SSIM_MIN_BAND_ROWS, SSIM_BAND_BYTES // (width * planes * 4 * 4))
    return range(0, height - 2 * SSIM_RADIUS, rows)


def ssim_masked_means(a: np.ndarray, b: np.ndarray, masks: np.ndarray) -> list[Value]:
    """n pairs of one size, stacked channels-last: a, b (h, w, 3n) uint8 and masks (h, w, n) -> per pair the
    SSIM map averaged where the mask is 1 after cropping the 5 px border. The pairs are filtered together, in
    bands of rows that fit the cache, on SSIM_THREADS threads."""
    height, width, count = masks.shape
    r = SSIM_RADIUS
    inner = masks[r:height - r, r:width - r]
    starts = _band_starts(height, width, a.shape[2])

    def band(start: int) -> np.ndarray:
        stop = min(start + starts.step, height - 2 * r)
        return _masked_band_sums(a[start:stop + 2 * r], b[start:stop + 2 * r], inner[start:stop])

    totals = sum(_ssim_pool().map(band, starts)) if len(starts) > 1 else band(0)
    areas = inner.reshape(-1, count).sum(axis=0, dtype=np.float64)
    return [(float(total / (3 * area)), None) if area > 0 else (None, NO_UNEDITED_AREA)
            for total, area in zip(np.atleast_1d(totals), areas, strict=True)]


def ssim_map(source: np.ndarray, edited: np.ndarray) -> np.ndarray:
    """The SSIM map of one pair (h, w, 3) uint8 without its 5 px border: (h - 10, w - 10, 3), computed band by
    band as ssim() does; skimage's full map cropped by 5 px is the reference."""
    height, width = source.shape[:2]
    starts = _band_starts(height, width, 3)
    bands = [ssim_band_map(source[start:min(start + starts.step, height - 2 * SSIM_RADIUS) + 2 * SSIM_RADIUS],
                           edited[start:min(start + starts.step, height - 2 * SSIM_RADIUS) + 2 * SSIM_RADIUS])
             for start in starts]
    return np.concatenate(bands, axis=0)


def ssim_values(pairs: Sequence[EditPair]) -> list[Value]:
    """SSIM of the unedited area of each pair; pairs of one size are stacked and filtered together."""
    results: list[Value] = [(None, None)] * len(pairs)
    for indices in _chunks_by_size(pairs, SSIM_CHUNK_PIXELS):
        height, width = pairs[indices[0]].source.shape[:2]
        if min(height, width) < SSIM_WINDOW:
            for i in indices:
                results[i] = (None, TOO_SMALL)
            continue
        values = ssim_masked_means(np.concatenate([pairs[i].source for i in indices], axis=2),
                                   np.concatenate([pairs[i].edited for i in indices], axis=2),
                                   np.stack([pairs[i].mask for i in indices], axis=2))
        for i, value in zip(indices, values, strict=True):
            results[i] = value
    return results


def _chunks_by_size(pairs: Sequence[EditPair], max_pixels: int) -> list[list[int]]:
    """Indices of same-size pairs, in chunks of at most max_pixels source pixels (at least one pair)."""
    by_size: dict[tuple[int, int], list[int]] = {}
    for index, pair in enumerate(pairs):
        by_size.setdefault(pair.source.shape[:2], []).append(index)
    chunks = []
    for (height, width), indices in by_size.items():
        per_chunk = max(1, max_pixels // (height * width))
        chunks += [indices[start:start + per_chunk] for start in range(0, len(indices), per_chunk)]
    return chunks


# ---- LPIPS ------------------------------------------------------------------------------------------------

_PREPARED: dict[str, Any] = {}
_MODEL_LOCK = threading.Lock()


def lpips_model(weights: str) -> Any:
    """The lpips package's AlexNet LPIPS, its backbone in channels-last memory; WeightsUnavailable if missing."""
    from .models import load_lpips

    model = load_lpips(random_backbone=weights == "random")
    key = f"lpips/{weights}/{id(model)}"
    with _MODEL_LOCK:
        if key not in _PREPARED:
            import torch

            prepared = copy.deepcopy(model).eval()  # the shared model keeps its memory format
            prepared.net = prepared.net.to(memory_format=torch.channels_last)
            _PREPARED[key] = prepared
        return _PREPARED[key]


def _to_unit_range(pixels: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(np.array(pixels)).permute(2, 0, 1).to(torch.float32) / 127.5 - 1.0


def lpips_distances(model: Any, composites: Any, sources: Any, index: Any) -> list[float]:
    """LPIPS(composites[i], sources[index[i]]) as lpips.LPIPS.forward computes it (version 0.1, not spatial).

    composites (n, 3, h, w) and sources (m, 3, h, w) are in [-1, 1]; one AlexNet forward covers both, so a
    source shared by several pairs is encoded once. The per-layer distances are taken pair by pair: at that
    size the normalised features stay in the CPU cache."""
    import lpips as lpips_package
    import torch

    count = composites.shape[0]
    batch = torch.cat([composites, sources]).contiguous(memory_format=torch.channels_last)
    features = [lpips_package.normalize_tensor(f) for f in model.net.forward(model.scaling_layer(batch))]
    distances = []
    for position in range(count):
        total = 0.0
        for layer, feature in enumerate(features):
            diff = (feature[position:position + 1] - feature[count + int(index[position])][None]) ** 2
            total += float(model.lins[layer](diff).mean())
        distances.append(total)
    return distances


def _composite_is_source(pair: EditPair) -> bool:
    """edited*mask + source*(1-mask) equals the source: the edit stayed inside the boxes."""
    unedited = pair.mask > 0
    return not bool(((pair.edited != pair.source).any(axis=2) & unedited).any())


def lpips_values(pairs: Sequence[EditPair], model: Any) -> list[Value]:
    """LPIPS of edited*mask + source*(1-mask) against the source, divided by the unedited fraction.

    Where the composite is the source itself, LPIPS is 0 (identical inputs) without an AlexNet pass."""
    import torch

    results: list[Value] = [(None, NO_UNEDITED_AREA)] * len(pairs)
    usable = []
    for i, pair in enumerate(pairs):
        if pair.unedited_fraction > 0 and _composite_is_source(pair):
            results[i] = (0.0, None)
        elif pair.unedited_fraction > 0:
            usable.append(i)
    with torch.inference_mode():
        for chunk in _chunks_by_size([pairs[i] for i in usable], LPIPS_CHUNK_PIXELS):
            indices = [usable[i] for i in chunk]
            source_of: dict[str, int] = {}
            for i in indices:
                source_of.setdefault(pairs[i].source_key, i)
            order = {key: position for position, key in enumerate(source_of)}
            composites = []
            for i in indices:
                mask = torch.from_numpy(pairs[i].mask)
                composites.append(_to_unit_range(pairs[i].edited) * mask + _to_unit_range(pairs[i].source) * (1 - mask))
            sources = torch.stack([_to_unit_range(pairs[i].source) for i in source_of.values()])
            index = [order[pairs[i].source_key] for i in indices]
            for i, distance in zip(indices, lpips_distances(model, torch.stack(composites), sources, index),
                                   strict=True):
                results[i] = (distance / pairs[i].unedited_fraction, None)
    return results


# ---- EMD --------------------------------------------------------------------------------------------------


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


def emd_values(pairs: Sequence[EditPair], clip: Any) -> list[Value]:
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
    results: list[Value] = [(None, NO_PATCH)] * len(pairs)
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


# ---- rows to pairs ----------------------------------------------------------------------------------------


def _load_rows(sources: Sequence[str | None], editeds: Sequence[str | None],
               boxes: Sequence[Sequence[Box] | None]) -> list[EditPair | str]:
    """An EditPair per row, or the reason it has none (a NULL input, an unreadable file, a bad box)."""
    rows: list[EditPair | str] = []
    for source, edited, row_boxes in zip(sources, editeds, boxes, strict=True):
        if source is None or edited is None:
            rows.append("failed call: no source or edited image")
        elif row_boxes is None:
            rows.append(NO_BOX)
        else:
            try:
                rows.append(load_pair(source, edited, row_boxes))
            except (ImageError, ValueError) as err:
                rows.append(f"failed call: {err}")
    return rows


def _metric_model(metric: str, weights: str) -> tuple[Any, str | None]:
    """The model a metric needs (None for SSIM), or the reason it cannot run."""
    from .models import WeightsUnavailable

    if metric == "ssim":
        return None, None
    try:
        return (lpips_model(weights) if metric == "lpips" else clip_model(weights)), None
    except WeightsUnavailable:
        return None, NO_WEIGHTS


def compute_metric(metric: str, pairs: Sequence[EditPair], weights: str) -> list[Value]:
    """One metric over loaded pairs, batched."""
    if metric == "ssim":
        return ssim_values(pairs)
    model, reason = _metric_model(metric, weights)
    if model is None:
        return [(None, reason)] * len(pairs)
    return lpips_values(pairs, model) if metric == "lpips" else emd_values(pairs, model)


def _scalar(metric: str, a: Sequence[str | None], b: Sequence[str | None],
            boxes: Sequence[Sequence[Box] | None]) -> list[float | None]:
    rows = _load_rows(a, b, boxes)
    loaded = [i for i, row in enumerate(rows) if isinstance(row, EditPair)]
    values: list[float | None] = [None] * len(rows)
    computed = compute_metric(metric, [rows[i] for i in loaded], "pretrained") if loaded else []
    for i, (value, _) in zip(loaded, computed, strict=True):
        values[i] = value
    return values


Boxes = list[list[float]] | None


@udf(kind="batch", batch_size=256)
def ssim(a: list[ImagePath], b: list[ImagePath], boxes: list[Boxes]) -> list[float | None]:
    """SSIM of the unedited area (outside every pixel box [x1, y1, x2, y2] of `a`); NULL boxes give NULL."""
    return _scalar("ssim", a, b, boxes)


@udf(kind="batch", batch_size=64)
def lpips(a: list[ImagePath], b: list[ImagePath], boxes: list[Boxes]) -> list[float | None]:
    """LPIPS (AlexNet) of the unedited area, divided by its fraction; NULL when the weights are not cached."""
    return _scalar("lpips", a, b, boxes)


@udf(kind="batch", batch_size=64)
def emd(a: list[ImagePath], b: list[ImagePath], boxes: list[Boxes]) -> list[float | None]:
    """EMD of CLIP ViT-B/32 patch tokens, source vs unedited edited patches; NULL when the weights are not cached."""
    return _scalar("emd", a, b, boxes)


@udf(kind="batch", batch_size=64)
def unedit_area(source: list[ImagePath], edited: list[ImagePath], boxes: list[Boxes],
                metrics: list[list[str] | None], weights: list[str | None]) -> list[UneditArea]:
    """lpips, emd and ssim of the unedited area, and why any of them is NULL; `metrics` picks which to compute,
    `weights` is 'pretrained' (the local caches) or 'random' (tests only)."""
    rows = _load_rows(source, edited, boxes)
    results = [{**EMPTY_RESULT, **_unloaded(row)} for row in rows]
    for (metric, mode), indices in _plan(rows, metrics, weights, results).items():
        try:
            values = compute_metric(metric, [rows[i] for i in indices], mode)  # type: ignore[misc]
        except Exception as err:  # one metric failing (a model error) leaves the others and the run standing
            message = f"{metric}: {type(err).__name__}: {err}"
            values = [(None, f"failed call: {message}")] * len(indices)
            for i in indices:
                results[i].update(status="failed", error=message)
        for i, (value, reason) in zip(indices, values, strict=True):
            results[i][metric] = value
            results[i][f"{metric}_reason"] = reason
    return results  # type: ignore[return-value]


EMPTY_RESULT = UneditArea().model_dump()


def _unloaded(row: EditPair | str) -> dict[str, Any]:
    """The reasons of a row that has no pair; a row that could not be read is a failed call."""
    if isinstance(row, EditPair):
        return {}
    if row == NO_BOX:
        return {f"{m}_reason": NO_BOX for m in METRICS}
    return {**{f"{m}_reason": row for m in METRICS}, "status": "failed", "error": row.removeprefix("failed call: ")}


def _plan(rows: list[EditPair | str], metrics: Sequence[list[str] | None], weights: Sequence[str | None],
          results: list[dict[str, Any]]) -> dict[tuple[str, str], list[int]]:
    """Which rows each (metric, weights) computes; rows that ask for something unknown fail with the reason."""
    plan: dict[tuple[str, str], list[int]] = {}
    for i, (row, wanted, mode) in enumerate(zip(rows, metrics, weights, strict=True)):
        if not isinstance(row, EditPair):
            continue
        wanted = list(METRICS) if wanted is None else wanted
        problem = _check_request(wanted, mode)
        if problem is not None:
            results[i].update({**{f"{m}_reason": problem for m in METRICS}, "status": "failed", "error": problem})
            continue
        for metric in METRICS:
            if metric in wanted:
                plan.setdefault((metric, mode or "pretrained"), []).append(i)
            else:
                results[i][f"{metric}_reason"] = NOT_CONFIGURED
    return plan


def _check_request(wanted: Sequence[str], mode: str | None) -> str | None:
    unknown = [m for m in wanted if m not in METRICS]
    if unknown:
        return f"unknown metric(s) {unknown}; use {', '.join(METRICS)}"
    if mode is not None and mode not in WEIGHTS:
        return f"weights must be one of {', '.join(WEIGHTS)}, got {mode!r}"
    return None

