"""Deterministic image analysis behind the offline VLM backend: background, objects, shapes and colours.

The offline backend answers prompts from what this module measures, so a project builds without network
access or API keys. It is tuned to (but not limited to) the synthetic scenes of ``seeds/generate_scenes.py``:
flat-coloured, non-overlapping shapes on a low-saturation background that is plain, a linear gradient or a
fine texture. The steps:

1. Background model: a plane ``a + b*x + c*y`` per RGB channel, fitted by least squares to the pixels that
   agree with the current model (starting from the median of the image border), twice. A plane is exact for
   plain and linear-gradient backgrounds; textures (fine noise, stripes) only leave a small residual.
2. Foreground: pixels far (Euclidean RGB) from the background model. The threshold has a floor that clears
   the generator's textures and JPEG noise and rises with a coarser texture. Colour *distance* rather than
   hue keeps a blue shape apart from a navy background.
3. Objects: 8-connected components, specks dropped. No morphological opening, because it would shave star
   and triangle tips and so move the tight bounding box (on the samples boxes and areas come out exact).
4. Per object: shape from the convex hull of its pixel squares (solidity, circularity, corner count; these
   ignore rotation), colour from the median of its interior pixels (edges eroded away so JPEG ringing does
   not bias it) nearest in CIELAB among ``COLOR_RGB``, size class by the generator's rule (``_size_label``).
"""

from __future__ import annotations

import functools
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError
from skimage import color as skcolor
from skimage import measure

if TYPE_CHECKING:
    from skimage.measure._regionprops import RegionProperties

__all__ = [
    "BACKGROUND_RGB",
    "COLOR_RGB",
    "SceneAnalysis",
    "SceneObject",
    "analyse_cached",
    "analyse_image",
    "box_iou",
]

Box = tuple[int, int, int, int]
Rgb = tuple[int, int, int]

# The generator's object colours (seeds/generate_scenes.py COLORS): the names the backend may answer with.
COLOR_RGB: dict[str, Rgb] = {
    "red": (220, 30, 30), "orange": (250, 125, 0), "yellow": (240, 220, 0), "green": (30, 160, 60),
    "blue": (35, 75, 220), "purple": (140, 45, 190), "white": (245, 245, 245), "black": (15, 15, 15),
}
# The generator's background colours (BACKGROUNDS) and their tone.
BACKGROUND_RGB: dict[str, Rgb] = {
    "light_gray": (222, 222, 222), "cream": (238, 228, 200), "charcoal": (42, 42, 46), "navy": (28, 34, 62),
}

_BORDER_PX = 4  # the generator keeps objects >= 8 px inside the image, so the border is background
_MIN_THRESHOLD = 40.0  # RGB distance; shapes differ from their background by >= 120 (minus a +-31 gradient)
# Typical background deviation (grey levels) above which the background counts as textured: the samples
# measure <= 0.35 plain or gradient (<= 0.65 even re-encoded as JPEG q50) and >= 4 textured (>= 1.9 at q50).
_TEXTURE_STD = 1.2
_GRADIENT_RANGE = 12.0  # levels the fitted plane spans across the image above which it is a gradient
_MIN_OBJECT_PX = 30  # components smaller than this are noise, not shapes (the smallest sample shape has 305 px)
# Size classes from the generator's SIZE_RANGES (nominal extent / shorter image side): small 0.12-0.16,
# medium 0.20-0.26, large 0.31-0.38. The cut points sit in the gaps between those ranges.
_SMALL_MAX, _MEDIUM_MAX = 0.18, 0.285
# A rotated five-pointed star's bbox is ~0.9-1.0 of its circumscribed square (the nominal size).
_STAR_BOX_RATIO = 0.95
_CORNER_TOLERANCE = 0.06  # Douglas-Peucker tolerance per unit of sqrt(hull area)


@dataclass(frozen=True)
class SceneObject:
    """One foreground object; ``bbox`` is (x1, y1, x2, y2), exclusive at x2/y2 like numpy slicing."""

    shape: str  # circle | square | triangle | star | unknown
    color: str  # nearest COLOR_RGB name in CIELAB
    bbox: Box
    area_px: int
    size: str  # small | medium | large, see _size_label
    center: tuple[float, float]  # centroid (x, y) in pixels
    mean_rgb: Rgb  # mean colour of the interior pixels


@dataclass(frozen=True)
class SceneAnalysis:
    """Everything the offline backend knows about one image."""

    width: int
    height: int
    background_kind: str  # plain | gradient | textured
    background_tone: str  # light | dark
    background_color: str  # nearest BACKGROUND_RGB name
    brightness: float  # mean luminance of the whole image, 0..1
    objects: tuple[SceneObject, ...]  # left to right (by x1, then y1)


@dataclass(frozen=True)
class _Background:
    distance: np.ndarray  # (h, w) RGB distance of each pixel from the background model
    mean_rgb: np.ndarray  # (3,) background colour at the image centre
    residual_std: float  # typical per-channel deviation of background pixels from the model
    span: float  # levels the fitted plane spans across the image (largest channel)


@dataclass(frozen=True)
class _Features:
    extent: float  # area / bbox area: square ~1, circle ~pi/4, triangle ~1/2
    solidity: float  # area / convex hull area: star ~0.56, convex shapes ~1
    circularity: float  # 4*pi*area / perimeter^2 of the pixel hull: circle ~0.98, square 0.785, triangle ~0.63
    corners: int  # vertices of the simplified pixel hull


# ---------------------------------------------------------------------------------------------- loading


def _load_rgb(source: str | Path | bytes | np.ndarray) -> np.ndarray:
    """Any supported input as an (h, w, 3) uint8 array."""
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source)
    if isinstance(source, bytes | bytearray | memoryview):
        with Image.open(io.BytesIO(bytes(source))) as img:
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    with Image.open(Path(source)) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def _array_to_rgb(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"expected an (h, w), (h, w, 3) or (h, w, 4) image array, got shape {arr.shape}")
    arr = arr[..., :3]
    if np.issubdtype(arr.dtype, np.floating):  # floats are taken as 0..1 intensities, skimage style
        arr = np.rint(np.clip(arr, 0.0, 1.0) * 255.0)
    return np.ascontiguousarray(arr, dtype=np.uint8)


# ------------------------------------------------------------------------------------------- background


def _border_pixels(img: np.ndarray) -> np.ndarray:
    b = max(1, min(_BORDER_PX, img.shape[0] // 4, img.shape[1] // 4))
    frame = np.ones(img.shape[:2], dtype=bool)
    frame[b:-b, b:-b] = False
    return img[frame]


def _plane(coef: np.ndarray, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """The (len(gy), len(gx), 3) plane image for normalised column and row coordinates (0..1)."""
    c = coef.astype(np.float32)
    return c[0] + gx[None, :, None] * c[1] + gy[:, None, None] * c[2]


def _fit_plane(values: np.ndarray, gx: np.ndarray, gy: np.ndarray, inliers: np.ndarray) -> np.ndarray:
    """Least-squares plane per channel over the inlier pixels, as coefficients (3, 3): the value at the
    top-left corner and the change across the full width and height. Normal equations: 3 unknowns only."""
    yy, xx = np.nonzero(inliers)
    design = np.column_stack([np.ones(len(xx)), gx[xx], gy[yy]])
    # lstsq rather than solve: a one-pixel-wide image leaves the normal matrix singular.
    return np.linalg.lstsq(design.T @ design, design.T @ values[yy, xx].astype(float), rcond=None)[0]


def _distance(img: np.ndarray, model: np.ndarray) -> np.ndarray:
    """Euclidean RGB distance per pixel."""
    return np.sqrt(((img - model) ** 2).sum(axis=2))


def _estimate_background(rgb: np.ndarray) -> _Background:
    img = rgb.astype(np.float32)
    h, w = rgb.shape[:2]
    gx = np.linspace(0.0, 1.0, w, dtype=np.float32) if w > 1 else np.zeros(1, np.float32)
    gy = np.linspace(0.0, 1.0, h, dtype=np.float32) if h > 1 else np.zeros(1, np.float32)
    # Fit on every other row and column: a quarter of the pixels pins 3 parameters just as well.
    sub, sx, sy = img[::2, ::2], gx[::2], gy[::2]
    coef = np.stack([np.median(_border_pixels(rgb), axis=0), np.zeros(3), np.zeros(3)])
    # Loose first pass (a constant start is up to ~31 off on a +-18 gradient), then a tighter refit; shapes
    # stay >= ~89 away, so they never count as inliers.
    for tolerance in (50.0, 30.0):
        inliers = _distance(sub, _plane(coef, sx, sy)) < tolerance
        if inliers.sum() < 3:
            break
        coef = _fit_plane(sub, sx, sy, inliers)
    distance = _distance(img, _plane(coef, gx, gy))
    quiet = distance[distance < 30.0]
    # Typical per-channel deviation of the background from the plane: 0 plain/gradient, 4-8 textures. A
    # median rather than an RMS, so JPEG ringing along object edges does not make a plain image "textured".
    std = float(np.median(quiet)) / math.sqrt(3.0) if quiet.size else 0.0
    span = float(np.max(np.abs(coef[1]) + np.abs(coef[2])))
    centre = coef[0] + 0.5 * coef[1] + 0.5 * coef[2]
    return _Background(distance=distance, mean_rgb=centre, residual_std=std, span=span)


def _background_kind(bg: _Background) -> str:
    if bg.residual_std > _TEXTURE_STD:
        return "textured"
    return "gradient" if bg.span > _GRADIENT_RANGE else "plain"


# ---------------------------------------------------------------------------------------------- colours


@functools.cache
def _lab_palette(names: tuple[str, ...], values: tuple[Rgb, ...]) -> tuple[tuple[str, ...], np.ndarray]:
    rgb = np.array(values, dtype=float).reshape(1, -1, 3) / 255.0
    return names, skcolor.rgb2lab(rgb).reshape(-1, 3)


def _nearest_name(rgb: np.ndarray, palette: dict[str, Rgb]) -> str:
    names, labs = _lab_palette(tuple(palette), tuple(palette.values()))
    lab = skcolor.rgb2lab(np.asarray(rgb, dtype=float).reshape(1, 1, 3) / 255.0).reshape(1, 3)
    return names[int(np.argmin(skcolor.deltaE_cie76(lab, labs)))]


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return skcolor.rgb2gray(np.asarray(rgb, dtype=float) / 255.0)


# ---------------------------------------------------------------------------------------------- objects


def _foreground_labels(bg: _Background) -> np.ndarray:
    """Label image of the objects: 8-connected (thin star tips touch diagonally), specks dropped."""
    # The floor already clears the generator's +-8 textures (<= 14 in RGB distance); a coarser texture
    # raises the threshold with it, but shapes stand >= ~89 off the background, so they stay above it.
    threshold = max(_MIN_THRESHOLD, 4.0 * bg.residual_std)
    labels = measure.label(bg.distance > threshold, connectivity=2)
    counts = np.bincount(labels.ravel())
    small = counts < _MIN_OBJECT_PX
    small[0] = False
    labels[small[labels]] = 0
    return labels


def _pixel_hull(region: RegionProperties) -> np.ndarray:
    """Convex hull of the region's pixel *squares* as a counter-clockwise (n, 2) polygon in (x, y).

    Using pixel corners instead of pixel centres makes an axis-aligned d x d square exactly d x d, so the
    hull's area and perimeter are unbiased even for small objects. Only the two ends of each row can be
    hull points, which keeps the point set small.
    """
    rows = np.flatnonzero(region.image.any(axis=1))
    left = region.image[rows].argmax(axis=1)
    right = region.image.shape[1] - 1 - region.image[rows, ::-1].argmax(axis=1)
    xs = np.concatenate([left, left, right + 1, right + 1]).astype(float)
    ys = np.concatenate([rows, rows + 1, rows, rows + 1]).astype(float)
    points = np.column_stack([xs, ys])
    try:
        return points[ConvexHull(points).vertices]
    except QhullError:  # degenerate (a single row or column): no 2-D hull
        return points[:0]


def _polygon_area_perimeter(poly: np.ndarray) -> tuple[float, float]:
    x, y = poly[:, 0], poly[:, 1]
    area = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
    perimeter = float(np.linalg.norm(poly - np.roll(poly, -1, axis=0), axis=1).sum())
    return area, perimeter


def _corner_count(hull: np.ndarray, area: float) -> int:
    """Corners left after Douglas-Peucker simplification at a tolerance proportional to the object size."""
    # Start at the point farthest from the centre, a corner of any polygon: Douglas-Peucker keeps its end
    # points, so a start mid-edge would count as an extra corner.
    start = int(np.argmax(((hull - hull.mean(axis=0)) ** 2).sum(axis=1)))
    closed = np.roll(hull, -start, axis=0)
    closed = np.vstack([closed, closed[:1]])
    return len(measure.approximate_polygon(closed, _CORNER_TOLERANCE * math.sqrt(area))) - 1


def _features(region: RegionProperties) -> _Features:
    hull = _pixel_hull(region)
    if len(hull) < 3:
        return _Features(extent=float(region.extent), solidity=1.0, circularity=0.0, corners=0)
    hull_area, hull_perimeter = _polygon_area_perimeter(hull)
    return _Features(extent=float(region.extent), solidity=float(region.area) / hull_area,
                     circularity=4 * math.pi * hull_area / hull_perimeter**2,
                     corners=_corner_count(hull, hull_area))


def _classify_shape(f: _Features) -> str:
    """Rotation-tolerant rules. The cut points sit in the gaps measured on the sample scenes and on
    synthetic shapes of 14-120 px at random rotations: hull circularity is >= 0.97 for circles, 0.785-0.89
    for squares, <= 0.72 for triangles; stars have solidity <= 0.61 and a pentagonal hull."""
    if f.solidity < 0.72:  # deep notches between the points
        return "star" if f.solidity > 0.4 and 4 <= f.corners <= 7 else "unknown"
    if f.solidity < 0.78:  # convex shapes stay above ~0.8 even when tiny
        return "unknown"
    if f.extent > 0.9:  # an axis-aligned square fills its box
        return "square"
    if f.circularity >= 0.93:
        return "circle"
    if f.corners > 6:  # neither round nor a polygon with few corners: an ellipse or a blob
        return "unknown"
    return "square" if f.circularity >= 0.75 else "triangle"


def _size_label(box: Box, shape: str, width: int, height: int) -> str:
    """The generator's size rule, inverted: it draws each shape inscribed in a d x d square with d / min(width,
    height) in SIZE_RANGES. The box's longer side is d for circles, squares and triangles (a rotated star's is
    ~0.95 d), so relative = nominal d / shorter image side; < 0.18 small, < 0.285 medium, else large."""
    x1, y1, x2, y2 = box
    nominal = max(x2 - x1, y2 - y1) / (_STAR_BOX_RATIO if shape == "star" else 1.0)
    relative = nominal / max(1, min(width, height))
    if relative < _SMALL_MAX:
        return "small"
    return "medium" if relative < _MEDIUM_MAX else "large"


def _interior_pixels(img: np.ndarray, region: RegionProperties) -> np.ndarray:
    """Pixels of the region away from its edge, or all of them when erosion would leave too few."""
    r0, c0, r1, c1 = region.bbox
    patch = img[r0:r1, c0:c1]
    inner = ndimage.binary_erosion(region.image, border_value=0)  # 4-neighbour erosion: one pixel off the edge
    chosen = inner if inner.sum() >= 10 else region.image
    return patch[chosen]


def _describe(img: np.ndarray, region: RegionProperties) -> SceneObject:
    r0, c0, r1, c1 = region.bbox
    box: Box = (int(c0), int(r0), int(c1), int(r1))
    h, w = img.shape[:2]
    pixels = _interior_pixels(img, region)
    shape = _classify_shape(_features(region))
    # The median ignores the few off-colour pixels (JPEG ringing) that survive the erosion.
    colour = _nearest_name(np.median(pixels, axis=0), COLOR_RGB)
    r, g, b = (int(v) for v in np.rint(pixels.mean(axis=0)))
    cy, cx = region.centroid
    return SceneObject(shape=shape, color=colour, bbox=box, area_px=int(region.area),
                       size=_size_label(box, shape, w, h), center=(round(float(cx), 2), round(float(cy), 2)),
                       mean_rgb=(r, g, b))


# -------------------------------------------------------------------------------------------------- API


def analyse_image(source: str | Path | bytes | np.ndarray) -> SceneAnalysis:
    """Analyse an image given as a path, encoded bytes (PNG, JPEG, ...) or an RGB(A)/grey array."""
    img = _load_rgb(source)
    h, w = img.shape[:2]
    bg = _estimate_background(img)
    labels = _foreground_labels(bg)
    objects = sorted((_describe(img, r) for r in measure.regionprops(labels)), key=lambda o: (o.bbox[0], o.bbox[1]))
    tone = "light" if float(_luminance(bg.mean_rgb)) >= 0.5 else "dark"
    return SceneAnalysis(width=w, height=h, background_kind=_background_kind(bg), background_tone=tone,
                         background_color=_nearest_name(bg.mean_rgb, BACKGROUND_RGB),
                         brightness=round(float(_luminance(img).mean()), 4), objects=tuple(objects))


@functools.lru_cache(maxsize=512)
def _analyse_file(resolved: str, mtime_ns: int, size: int) -> SceneAnalysis:
    del mtime_ns, size  # part of the cache key only: a rewritten file gets a fresh analysis
    return analyse_image(resolved)


def analyse_cached(path: str | Path) -> SceneAnalysis:
    """``analyse_image`` memoised per (resolved path, mtime_ns, size); results are immutable, so shared."""
    resolved = Path(path).resolve()
    st = os.stat(resolved)
    return _analyse_file(str(resolved), st.st_mtime_ns, st.st_size)


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two exclusive (x1, y1, x2, y2) boxes; 0.0 when either is empty."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(0, iw) * max(0, ih)
    union = _box_area(a) + _box_area(b) - inter
    return inter / union if union > 0 else 0.0


def _box_area(box: Box) -> int:
    return max(0, box[2] - box[0]) * max(0, box[3] - box[1])
