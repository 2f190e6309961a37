"""SSIM of the unedited area, as skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
data_range=255) on RGB: the full SSIM map averaged where the unedited mask is 1, after cropping a 5 px border.

Vectorised: the pairs of a batch are grouped by size and stacked plane by plane, and ONE separable Gaussian pass
filters the whole stack (in bands of rows that stay in the CPU cache, on a few threads). SSIM needs the filtered
x, y, x², y², xy; with s = x + y and d = x - y, filtering s, d, s², d² gives the same terms from four planes per
channel instead of five. float32 with s centred on its mean: the values equal skimage's (float64) within 1e-6.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .images import NO_UNEDITED_AREA, EditPair, MetricValue, chunks_by_size

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
TOO_SMALL = "image smaller than the 11 px SSIM window"



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


def ssim_masked_means(a: np.ndarray, b: np.ndarray, masks: np.ndarray) -> list[MetricValue]:
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


def ssim_values(pairs: Sequence[EditPair]) -> list[MetricValue]:
    """SSIM of the unedited area of each pair; pairs of one size are stacked and filtered together."""
    results: list[MetricValue] = [(None, None)] * len(pairs)
    for indices in chunks_by_size(pairs, SSIM_CHUNK_PIXELS):
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
