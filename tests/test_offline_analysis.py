"""The offline VLM backend's image analysis, measured against the sample scenes' ground truth.

The aggregate thresholds sit just below what the analysis achieves on all 60 scenes (everything is
currently exact), so a regression of one or two objects or images fails loudly; each failure message
carries the full confusion summary.
"""

from __future__ import annotations

import importlib.util
import io
import json
import math
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image, ImageDraw

from dataproj.vlm.offline_analysis import (
    COLOR_RGB,
    SceneAnalysis,
    SceneObject,
    analyse_cached,
    analyse_image,
    box_iou,
)

SEEDS = Path(__file__).resolve().parents[1] / "seeds"

# Measured on the 60 sample scenes (150 objects): every rate is 1.0. One miss in 150 objects is 0.9933 and
# one wrong image in 60 is 0.983, so these allow a single slip and catch anything more.
MIN_RECALL = 0.99  # truth objects matched by a detection at IoU >= 0.5
MIN_EXACT_BOX = 0.98  # matched objects whose box is pixel-exact
MIN_SHAPE, MIN_COLOR, MIN_SIZE = 0.99, 0.99, 0.98
MIN_BACKGROUND = 0.98  # kind, tone and colour, each
MIN_CLEAN_IMAGES = 0.98  # images without a spurious detection
MAX_MEDIAN_MS = 100.0  # per image, measured ~25 ms on a busy 2-core machine


def _load_generator() -> ModuleType:
    name = "generate_scenes"  # the name tests/test_scenes.py registers too: dataclasses look it up
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, SEEDS / "generate_scenes.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Match:
    truth: dict
    found: SceneObject
    iou: float


@dataclass(frozen=True)
class Report:
    """Everything measured over the sample scenes, for the tests below to assert on."""

    rows: list[dict]
    analyses: list[SceneAnalysis]
    matches: list[Match]
    misses: list[tuple[str, dict]]
    spurious: list[tuple[str, SceneObject]]
    seconds: list[float]

    @property
    def truth_count(self) -> int:
        return sum(len(r["objects"]) for r in self.rows)

    def rate(self, field: str) -> float:
        return sum(m.truth[field] == getattr(m.found, field) for m in self.matches) / max(1, len(self.matches))

    def background_rate(self, field: str) -> float:
        pairs = zip(self.rows, self.analyses, strict=True)
        return sum(r["background"][field] == getattr(a, f"background_{field}") for r, a in pairs) / len(self.rows)

    def confusion(self, field: str) -> dict[tuple[str, str], int]:
        return dict(Counter((m.truth[field], getattr(m.found, field)) for m in self.matches))


def _match(truth: list[dict], found: tuple[SceneObject, ...]) -> tuple[list[Match], list[dict], list[SceneObject]]:
    """Greedy one-to-one matching by IoU (>= 0.5): the sample objects never overlap, so greedy is optimal."""
    pairs = sorted(((box_iou(tuple(t["bbox"]), f.bbox), i, j) for i, t in enumerate(truth)
                    for j, f in enumerate(found)), reverse=True)
    used_t: set[int] = set()
    used_f: set[int] = set()
    matches = []
    for iou, i, j in pairs:
        if iou >= 0.5 and i not in used_t and j not in used_f:
            used_t.add(i)
            used_f.add(j)
            matches.append(Match(truth[i], found[j], iou))
    misses = [t for i, t in enumerate(truth) if i not in used_t]
    return matches, misses, [f for j, f in enumerate(found) if j not in used_f]


def summary(report: Report) -> str:
    """Human-readable confusion summary, attached to every aggregate assertion."""
    lines = [f"objects: {len(report.matches)}/{report.truth_count} matched, {len(report.spurious)} spurious"]
    for field in ("shape", "color", "size"):
        wrong = {k: v for k, v in report.confusion(field).items() if k[0] != k[1]}
        lines.append(f"{field}: {report.rate(field):.3f} correct; confusions (truth, found): {wrong}")
    for field in ("kind", "tone", "color"):
        lines.append(f"background {field}: {report.background_rate(field):.3f}")
    lines += [f"missed {path}: {t}" for path, t in report.misses]
    lines += [f"spurious {path}: {f}" for path, f in report.spurious]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def report() -> Report:
    rows = [json.loads(line) for line in (SEEDS / "scene_truth.jsonl").read_text(encoding="utf-8").splitlines()]
    analyse_image(SEEDS / rows[0]["image_path"])  # warm-up: lazy imports and caches out of the timing
    analyses, seconds, matches, misses, spurious = [], [], [], [], []
    for row in rows:
        start = time.perf_counter()
        analysis = analyse_image(SEEDS / row["image_path"])
        seconds.append(time.perf_counter() - start)
        analyses.append(analysis)
        found, missed, extra = _match(row["objects"], analysis.objects)
        matches += found
        misses += [(row["image_path"], t) for t in missed]
        spurious += [(row["image_path"], f) for f in extra]
    return Report(rows, analyses, matches, misses, spurious, seconds)


# ------------------------------------------------------------------------------------ sample scenes


def test_objects_are_found_with_tight_boxes(report: Report) -> None:
    assert len(report.matches) / report.truth_count >= MIN_RECALL, summary(report)
    exact = sum(m.found.bbox == tuple(m.truth["bbox"]) for m in report.matches)
    assert exact / len(report.matches) >= MIN_EXACT_BOX, summary(report)
    # Painted pixels, give or take JPEG edges.
    close = sum(abs(m.found.area_px - m.truth["area_px"]) <= 0.03 * m.truth["area_px"] for m in report.matches)
    assert close / len(report.matches) >= MIN_EXACT_BOX, summary(report)


def test_no_spurious_objects(report: Report) -> None:
    images_with_extra = {path for path, _ in report.spurious}
    assert 1 - len(images_with_extra) / len(report.rows) >= MIN_CLEAN_IMAGES, summary(report)


@pytest.mark.parametrize(("field", "minimum"), [("shape", MIN_SHAPE), ("color", MIN_COLOR), ("size", MIN_SIZE)])
def test_object_attributes(report: Report, field: str, minimum: float) -> None:
    assert report.rate(field) >= minimum, summary(report)


@pytest.mark.parametrize("field", ["kind", "tone", "color"])
def test_background(report: Report, field: str) -> None:
    assert report.background_rate(field) >= MIN_BACKGROUND, summary(report)


def test_duplicate_shapes_in_two_sizes_are_told_apart(report: Report) -> None:
    # The generator's DUPLICATES images repeat (shape, colour) in another size: both must come back.
    for row, analysis in zip(report.rows, report.analyses, strict=True):
        pairs = Counter((o["shape"], o["color"]) for o in row["objects"])
        for (shape, colour), n in pairs.items():
            if n > 1:
                found = [o for o in analysis.objects if (o.shape, o.color) == (shape, colour)]
                assert sorted(o.size for o in found) == sorted(
                    o["size"] for o in row["objects"] if (o["shape"], o["color"]) == (shape, colour)), row


def test_analysis_is_well_formed(report: Report) -> None:
    for row, analysis in zip(report.rows, report.analyses, strict=True):
        assert (analysis.width, analysis.height) == (row["width"], row["height"])
        assert 0.0 <= analysis.brightness <= 1.0
        assert [o.bbox[:2] for o in analysis.objects] == sorted(o.bbox[:2] for o in analysis.objects)
        for obj in analysis.objects:
            x1, y1, x2, y2 = obj.bbox
            assert x1 <= obj.center[0] < x2 and y1 <= obj.center[1] < y2
            assert 0 <= x1 < x2 <= analysis.width and 0 <= y1 < y2 <= analysis.height
    light = [a.brightness for a in report.analyses if a.background_tone == "light"]
    dark = [a.brightness for a in report.analyses if a.background_tone == "dark"]
    assert min(light) > max(dark)


def test_analysis_is_fast(report: Report) -> None:
    median_ms = 1000 * sorted(report.seconds)[len(report.seconds) // 2]
    assert median_ms < MAX_MEDIAN_MS, f"median {median_ms:.1f} ms per image"


def test_palette_is_the_generators() -> None:
    assert _load_generator().COLORS == COLOR_RGB


# ---------------------------------------------------------------------------------------- unit tests


@pytest.mark.parametrize(("a", "b", "expected"), [
    ((0, 0, 10, 10), (0, 0, 10, 10), 1.0),
    ((0, 0, 10, 10), (5, 0, 15, 10), 50 / 150),
    ((0, 0, 10, 10), (10, 0, 20, 10), 0.0),  # exclusive x2: touching boxes share no pixel
    ((0, 0, 10, 10), (2, 2, 4, 4), 4 / 100),  # containment
    ((0, 0, 10, 10), (30, 30, 40, 40), 0.0),
    ((5, 5, 5, 9), (0, 0, 10, 10), 0.0),  # empty box
    ((5, 5, 5, 9), (5, 5, 5, 9), 0.0),
])
def test_box_iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int], expected: float) -> None:
    assert math.isclose(box_iou(a, b), expected)
    assert math.isclose(box_iou(b, a), expected)


def _canvas(size: tuple[int, int] = (160, 120), background: tuple[int, int, int] = (222, 222, 222)) -> Image.Image:
    return Image.new("RGB", size, background)


def _one_square() -> np.ndarray:
    img = _canvas()
    ImageDraw.Draw(img).rectangle((30, 40, 59, 69), fill=COLOR_RGB["red"])  # inclusive: 30x30 pixels
    return np.asarray(img)


def test_ndarray_with_one_square_gives_its_exact_box() -> None:
    analysis = analyse_image(_one_square())
    assert (analysis.width, analysis.height) == (160, 120)
    assert (analysis.background_kind, analysis.background_tone, analysis.background_color) == (
        "plain", "light", "light_gray")
    (obj,) = analysis.objects
    assert obj.bbox == (30, 40, 60, 70)
    assert (obj.shape, obj.color, obj.area_px, obj.mean_rgb) == ("square", "red", 900, COLOR_RGB["red"])
    assert obj.center == (44.5, 54.5)
    assert obj.size == "medium"  # 30 / min(160, 120) = 0.25: inside the generator's medium range 0.20-0.26


def test_array_forms_agree() -> None:
    rgb = _one_square()
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    assert analyse_image(rgba) == analyse_image(rgb) == analyse_image(rgb.astype(np.float64) / 255.0)
    grey = analyse_image(rgb[..., 1])  # green channel: 30 on 222 (red has no contrast there)
    assert [o.bbox for o in grey.objects] == [(30, 40, 60, 70)]
    with pytest.raises(ValueError, match="image array"):
        analyse_image(np.zeros((4, 4, 2), np.uint8))


def test_blue_on_navy_and_a_star_on_a_gradient() -> None:
    # Same hue as the background: the distance from the background model, not hue, must find it.
    img = np.asarray(_canvas(background=(28, 34, 62))).astype(float)
    img += np.linspace(-18, 18, img.shape[1])[None, :, None]  # the generator's gradient
    pil = Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    draw.rectangle((10, 10, 39, 39), fill=COLOR_RGB["blue"])
    cx, cy, r = 110.0, 60.0, 25.0
    draw.polygon([(cx + rr * math.sin(k * math.pi / 5), cy - rr * math.cos(k * math.pi / 5))
                  for k in range(10) for rr in [r if k % 2 == 0 else 0.45 * r]], fill=COLOR_RGB["yellow"])
    analysis = analyse_image(np.asarray(pil))
    assert (analysis.background_kind, analysis.background_tone, analysis.background_color) == (
        "gradient", "dark", "navy")
    assert [(o.shape, o.color) for o in analysis.objects] == [("square", "blue"), ("star", "yellow")]
    assert analysis.objects[0].bbox == (10, 10, 40, 40)


@pytest.mark.parametrize(("shape", "corners"), [("square", 4), ("triangle", 3)])
def test_rotated_polygons_keep_their_shape(shape: str, corners: int) -> None:
    for degrees in (10, 25, 45, 70):
        img = _canvas()
        turn = math.radians(degrees)
        points = [(80 + 35 * math.sin(turn + k * 2 * math.pi / corners),
                   60 - 35 * math.cos(turn + k * 2 * math.pi / corners)) for k in range(corners)]
        ImageDraw.Draw(img).polygon(points, fill=COLOR_RGB["green"])
        (obj,) = analyse_image(np.asarray(img)).objects
        assert (obj.shape, obj.color) == (shape, "green"), degrees


def test_bytes_input_matches_the_path(tmp_path: Path) -> None:
    jpeg = SEEDS / "scenes/parkcam/scene_007.jpg"
    assert analyse_image(jpeg.read_bytes()) == analyse_image(jpeg) == analyse_image(str(jpeg))
    buffer = io.BytesIO()
    Image.fromarray(_one_square()).save(buffer, format="PNG")
    assert analyse_image(buffer.getvalue()) == analyse_image(_one_square())


def test_deterministic() -> None:
    for rel in ("scenes/labshots/scene_026.jpg", "scenes/fieldkit/scene_041.png"):
        first, second = analyse_image(SEEDS / rel), analyse_image(SEEDS / rel)
        assert first == second and repr(first) == repr(second)


def test_analyse_cached_reuses_and_notices_changes(tmp_path: Path) -> None:
    path = tmp_path / "scene.png"
    Image.fromarray(_one_square()).save(path)
    first = analyse_cached(path)
    assert analyse_cached(path) is first
    assert analyse_cached(tmp_path / "." / "scene.png") is first  # keyed by the resolved path
    assert first == analyse_image(path)

    moved = _canvas()
    ImageDraw.Draw(moved).ellipse((80, 20, 119, 59), fill=COLOR_RGB["purple"])
    moved.save(path)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # a coarse clock may not tick
    second = analyse_cached(path)
    assert second is not first
    assert [(o.shape, o.color, o.bbox) for o in second.objects] == [("circle", "purple", (80, 20, 120, 60))]
    assert analyse_cached(path) is second
