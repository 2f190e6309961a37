"""Deterministic synthetic scenes and their ground truth: the shared sample data of dataproj.

Run ``python seeds/generate_scenes.py`` from the repository root (writes into ``seeds/``), or pass
``--out DIR``. ``generate(out_dir)`` writes:

* ``<out_dir>/scenes/<source>/scene_NNN.png``: 60 images, 20 in each source folder ``parkcam``
  (scene_000-019), ``labshots`` (020-039) and ``fieldkit`` (040-059); names are unique across sources.
  Three of them are ``.jpg`` (quality 95, 4:4:4) so mime types vary. Sizes are 320x240, 256x256 or
  384x288. PNGs use compress_level 9 and carry no metadata chunks; nothing depends on time, so two runs
  give byte-identical files (given the same Pillow/zlib/libjpeg build).
* ``<out_dir>/scene_truth.jsonl``: one JSON object per image, sorted by ``image_path``::

    {"image_path": "scenes/parkcam/scene_000.png", "source": "parkcam", "width": 320, "height": 240,
     "background": {"kind": "plain|gradient|textured", "tone": "light|dark", "color": "<BACKGROUNDS key>"},
     "objects": [{"object_id": 0, "shape": "circle|square|triangle|star", "color": "<COLORS key>",
                  "size": "small|medium|large", "bbox": [x1, y1, x2, y2], "area_px": 1234}]}

  ``image_path`` is relative to ``out_dir``. ``bbox`` is in integer pixels, computed from the rendered
  mask of the shape (drawn without antialiasing, so mask == painted pixels), tight, and EXCLUSIVE at
  x2/y2 like numpy slicing: ``img[y1:y2, x1:x2]`` holds the whole shape and ``x2 - x1`` is its width.
  ``area_px`` counts the painted pixels. Objects (1-4 per image) are ordered left to right (by x1, then
  y1) and ``object_id`` is the index in that order. Boxes of different objects never overlap (>= GAP px
  apart) and stay >= MARGIN px inside the image. ``size`` is the nominal extent of the shape relative
  to min(width, height), see SIZE_RANGES.

Shape colours are far apart in RGB and in HSV hue (white/black differ by value); each shape differs
from its background colour by >= MIN_CONTRAST in RGB distance, so there is no white shape on a light
background nor a black one on a dark background. Backgrounds are low-saturation; gradients span +-18
levels, textures (fine noise or stripes) +-8. MOTIFS plants facet combinations in several images (e.g.
a red circle on a dark background) so image-search queries have positives and near misses; within an
image (shape, colour) is unique except in DUPLICATES images, where one pair differs only in size.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SEED = 20240611
SOURCES = ("parkcam", "labshots", "fieldkit")
PER_SOURCE = 20
JPEG_INDICES = frozenset({7, 26, 45})
DUPLICATES = 3
IMAGE_SIZES = ((320, 240),) * 6 + ((256, 256),) * 2 + ((384, 288),) * 2
SHAPES = ("circle", "square", "triangle", "star")
Rgb = tuple[int, int, int]
COLORS: dict[str, Rgb] = {
    "red": (220, 30, 30), "orange": (250, 125, 0), "yellow": (240, 220, 0), "green": (30, 160, 60),
    "blue": (35, 75, 220), "purple": (140, 45, 190), "white": (245, 245, 245), "black": (15, 15, 15),
}
BACKGROUNDS: dict[str, tuple[str, Rgb]] = {  # name -> (tone, base colour)
    "light_gray": ("light", (222, 222, 222)), "cream": ("light", (238, 228, 200)),
    "charcoal": ("dark", (42, 42, 46)), "navy": ("dark", (28, 34, 62)),
}
KINDS = ("plain", "gradient", "textured")
SIZE_RANGES = {"small": (0.12, 0.16), "medium": (0.20, 0.26), "large": (0.31, 0.38)}
MARGIN, GAP, MIN_CONTRAST = 8, 6, 120.0
# (shape, colour, background tone, number of images): planted positives and near misses.
MOTIFS = (
    ("circle", "red", "dark", 6), ("square", "blue", "light", 5), ("star", "yellow", "dark", 5),
    ("triangle", "green", "light", 5), ("circle", "red", "light", 3), ("circle", "orange", "dark", 3),
    ("square", "blue", "dark", 2), ("star", "white", "dark", 3),
)


@dataclass
class Spec:
    index: int
    source: str
    size: tuple[int, int]
    kind: str
    bg: str
    count: int
    required: list[tuple[str, str]] = field(default_factory=list)
    duplicate: bool = False

    @property
    def tone(self) -> str:
        return BACKGROUNDS[self.bg][0]

    @property
    def rel_path(self) -> str:
        ext = "jpg" if self.index in JPEG_INDICES else "png"
        return f"scenes/{self.source}/scene_{self.index:03d}.{ext}"


def contrasts(colour: str, bg: str) -> bool:
    return math.dist(COLORS[colour], BACKGROUNDS[bg][1]) >= MIN_CONTRAST


def plan(rng: random.Random) -> list[Spec]:
    """Balanced counts (1-4) and backgrounds (kind x colour), then planted motifs and duplicates."""
    n = len(SOURCES) * PER_SOURCE
    counts = [1 + i % 4 for i in range(n)]
    rng.shuffle(counts)
    looks = [(k, b) for k in KINDS for b in BACKGROUNDS] * (n // (len(KINDS) * len(BACKGROUNDS)))
    rng.shuffle(looks)
    specs = [Spec(i, SOURCES[i // PER_SOURCE], rng.choice(IMAGE_SIZES), k, b, counts[i])
             for i, (k, b) in enumerate(looks)]
    for shape, colour, tone, times in MOTIFS:
        pool = [s for s in specs if s.tone == tone and len(s.required) < s.count and contrasts(colour, s.bg)
                and all(c != colour for _, c in s.required)]
        for s in rng.sample(pool, times):
            s.required.append((shape, colour))
    for s in rng.sample([s for s in specs if s.count >= 2 and len(s.required) <= 1], DUPLICATES):
        s.duplicate = True
    return specs


def background(kind: str, base: Rgb, w: int, h: int, rng: random.Random) -> np.ndarray:
    img = np.zeros((h, w, 3)) + np.array(base, dtype=float)
    if kind == "gradient":
        horizontal = rng.random() < 0.5
        ramp = np.linspace(-18, 18, w if horizontal else h) * rng.choice((-1, 1))
        img += ramp[None, :, None] if horizontal else ramp[:, None, None]
    elif kind == "textured" and rng.random() < 0.5:  # fine noise
        noise = np.frombuffer(rng.randbytes(w * h), dtype=np.uint8).reshape(h, w, 1)
        img += (noise / 255.0 - 0.5) * 16
    elif kind == "textured":  # low-contrast stripes: vertical, horizontal or diagonal
        yy, xx = np.mgrid[0:h, 0:w]
        phase = rng.choice((xx, yy, xx + yy))
        img += np.where((phase // rng.choice((3, 4, 5))) % 2 == 0, 8.0, -8.0)[..., None]
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def shape_mask(shape: str, x0: int, y0: int, d: int, w: int, h: int, rng: random.Random) -> np.ndarray:
    """Binary mask of a shape inscribed in the d x d square at (x0, y0); no antialiasing."""
    canvas = Image.new("1", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    x1, y1 = x0 + d - 1, y0 + d - 1
    if shape == "circle":
        draw.ellipse((x0, y0, x1, y1), fill=1)
    elif shape == "square":
        draw.rectangle((x0, y0, x1, y1), fill=1)
    elif shape == "triangle":
        up = rng.random() < 0.75
        apex, base = (y0, y1) if up else (y1, y0)
        draw.polygon([(x0 + (d - 1) / 2, apex), (x1, base), (x0, base)], fill=1)
    else:  # five-pointed star, random rotation
        cx, cy, r, rot = x0 + (d - 1) / 2, y0 + (d - 1) / 2, (d - 1) / 2, rng.uniform(0, 2 * math.pi / 5)
        pts = [(cx + rr * math.sin(a), cy - rr * math.cos(a))
               for k in range(10) for rr, a in [(r if k % 2 == 0 else 0.45 * r, rot + k * math.pi / 5)]]
        draw.polygon(pts, fill=1)
    return np.array(canvas, dtype=bool)


def choose_objects(spec: Spec, rng: random.Random) -> list[tuple[str, str, str]]:
    """(shape, colour, size) per object: the planted ones first, then random unused combinations."""
    combos = list(spec.required)
    free = [(s, c) for s in SHAPES for c in COLORS if contrasts(c, spec.bg) and (s, c) not in combos]
    combos += rng.sample(free, spec.count - len(combos))
    weights = [1, 1, 1] if spec.count <= 2 else [3, 3, 1]
    sizes = rng.choices(list(SIZE_RANGES), weights=weights, k=spec.count)
    if spec.duplicate:  # second object repeats the first, in another size
        combos[1] = combos[0]
        sizes[1] = rng.choice([z for z in SIZE_RANGES if z != sizes[0]])
    return [(s, c, z) for (s, c), z in zip(combos, sizes, strict=True)]


def layout(w: int, h: int, sizes: list[str], rng: random.Random) -> list[tuple[int, int, int]] | None:
    """Non-overlapping (x0, y0, d) squares, one per size class, or None when they did not fit."""
    placed: list[tuple[int, int, int]] = []
    for lo, hi in (SIZE_RANGES[z] for z in sizes):
        for _ in range(200):
            d = round(rng.uniform(lo, hi) * min(w, h))
            x0, y0 = rng.randint(MARGIN, w - MARGIN - d), rng.randint(MARGIN, h - MARGIN - d)
            if all(x0 + d + GAP <= px or px + pd + GAP <= x0 or y0 + d + GAP <= py or py + pd + GAP <= y0
                   for px, py, pd in placed):
                placed.append((x0, y0, d))
                break
        else:
            return None
    return placed


def render(spec: Spec, rng: random.Random) -> tuple[np.ndarray, dict]:
    w, h = spec.size
    tone, base = BACKGROUNDS[spec.bg]
    img = background(spec.kind, base, w, h, rng)
    while True:
        objects = choose_objects(spec, rng)
        boxes = layout(w, h, [z for _, _, z in objects], rng)
        if boxes is not None:
            break
    rows = []
    for (shape, colour, size), (x0, y0, d) in zip(objects, boxes, strict=True):
        mask = shape_mask(shape, x0, y0, d, w, h, rng)
        img[mask] = COLORS[colour]
        ys, xs = np.nonzero(mask)
        bbox = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
        rows.append({"shape": shape, "color": colour, "size": size, "bbox": bbox, "area_px": int(mask.sum())})
    rows.sort(key=lambda o: (o["bbox"][0], o["bbox"][1]))
    truth = {"image_path": spec.rel_path, "source": spec.source, "width": w, "height": h,
             "background": {"kind": spec.kind, "tone": tone, "color": spec.bg},
             "objects": [{"object_id": i, **o} for i, o in enumerate(rows)]}
    return img, truth


def generate(out_dir: Path) -> None:
    """Write every scene image and scene_truth.jsonl under out_dir (stale scene files are removed)."""
    out_dir = Path(out_dir)
    rng = random.Random(SEED)
    for source in SOURCES:
        folder = out_dir / "scenes" / source
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("scene_*.*"):
            if old.suffix in {".png", ".jpg"}:
                old.unlink()
    rows = []
    for spec in plan(rng):
        img, truth = render(spec, rng)
        path = out_dir / spec.rel_path
        if path.suffix == ".jpg":
            Image.fromarray(img, "RGB").save(path, format="JPEG", quality=95, subsampling=0)
        else:
            Image.fromarray(img, "RGB").save(path, format="PNG", compress_level=9)
        rows.append(truth)
    rows.sort(key=lambda r: r["image_path"])
    with open(out_dir / "scene_truth.jsonl", "w", encoding="utf-8", newline="\n") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate the synthetic scene images and their truth.")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                        help="output folder (default: the seeds/ folder holding this script)")
    generate(parser.parse_args(argv).out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
