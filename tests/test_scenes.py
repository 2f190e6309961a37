"""Checks of the shared sample data: seeds/scenes/ and seeds/scene_truth.jsonl."""

from __future__ import annotations

import importlib.util
import itertools
import json
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

SEEDS = Path(__file__).resolve().parents[1] / "seeds"
IMAGE_SUFFIXES = {".png", ".jpg"}


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_scenes", SEEDS / "generate_scenes.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


gen = _load_generator()


def _image_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in (root / "scenes").rglob("*")
                  if p.suffix in IMAGE_SUFFIXES)


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    lines = (SEEDS / "scene_truth.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def test_regeneration_reproduces_the_committed_scenes(tmp_path: Path) -> None:
    # Pixels, not bytes: zlib and libjpeg builds may encode the same pixels differently.
    assert gen.main(["--out", str(tmp_path)]) == 0
    committed = _image_files(SEEDS)
    assert _image_files(tmp_path) == committed
    assert (tmp_path / "scene_truth.jsonl").read_bytes() == (SEEDS / "scene_truth.jsonl").read_bytes()
    for rel in committed:
        fresh = np.asarray(Image.open(tmp_path / rel).convert("RGB"), dtype=np.int16)
        kept = np.asarray(Image.open(SEEDS / rel).convert("RGB"), dtype=np.int16)
        tolerance = 0 if rel.endswith(".png") else 3
        assert fresh.shape == kept.shape and np.abs(fresh - kept).max() <= tolerance, rel


def test_rows_match_files(rows: list[dict]) -> None:
    paths = [r["image_path"] for r in rows]
    assert paths == sorted(paths)
    assert paths == _image_files(SEEDS)
    stems = [Path(p).stem for p in paths]
    assert len(set(stems)) == len(stems)
    for r in rows:
        assert r["image_path"].split("/")[1] == r["source"]


def test_counts_per_source(rows: list[dict]) -> None:
    assert Counter(r["source"] for r in rows) == {s: gen.PER_SOURCE for s in gen.SOURCES}
    for source in gen.SOURCES:
        files = [p for p in (SEEDS / "scenes" / source).iterdir() if p.suffix in IMAGE_SUFFIXES]
        assert len(files) == gen.PER_SOURCE
    assert sum(r["image_path"].endswith(".jpg") for r in rows) == 3


def test_sizes_and_schema(rows: list[dict]) -> None:
    for r in rows:
        with Image.open(SEEDS / r["image_path"]) as im:
            assert im.mode == "RGB"
            assert im.size == (r["width"], r["height"])
            assert im.format == ("JPEG" if r["image_path"].endswith(".jpg") else "PNG")
        bg = r["background"]
        assert bg["kind"] in gen.KINDS
        assert gen.BACKGROUNDS[bg["color"]][0] == bg["tone"]
        assert 1 <= len(r["objects"]) <= 4
        assert [o["object_id"] for o in r["objects"]] == list(range(len(r["objects"])))
        assert [o["bbox"][0] for o in r["objects"]] == sorted(o["bbox"][0] for o in r["objects"])
        for o in r["objects"]:
            assert o["shape"] in gen.SHAPES and o["color"] in gen.COLORS and o["size"] in gen.SIZE_RANGES


def test_boxes_inside_and_disjoint(rows: list[dict]) -> None:
    for r in rows:
        boxes = [o["bbox"] for o in r["objects"]]
        for x1, y1, x2, y2 in boxes:
            assert all(isinstance(v, int) for v in (x1, y1, x2, y2))
            assert 0 <= x1 < x2 <= r["width"] and 0 <= y1 < y2 <= r["height"], r["image_path"]
        for a, b in itertools.combinations(boxes, 2):
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (r["image_path"], a, b)
        for o in r["objects"]:
            x1, y1, x2, y2 = o["bbox"]
            assert 0 < o["area_px"] <= (x2 - x1) * (y2 - y1)


def test_contrast_with_background(rows: list[dict]) -> None:
    for r in rows:
        tone = r["background"]["tone"]
        for o in r["objects"]:
            assert not (tone == "light" and o["color"] == "white")
            assert not (tone == "dark" and o["color"] == "black")


def test_pixels_have_named_colour_and_boxes_are_tight(rows: list[dict]) -> None:
    """Foreground = pixels far from the median of a 3 px ring just outside the box."""
    pad = 3
    for r in rows:
        jpeg = r["image_path"].endswith(".jpg")
        img = np.asarray(Image.open(SEEDS / r["image_path"]).convert("RGB"), dtype=float)
        for o in r["objects"]:
            x1, y1, x2, y2 = o["bbox"]
            region = img[y1 - pad:y2 + pad, x1 - pad:x2 + pad]
            ring = np.ones(region.shape[:2], dtype=bool)
            ring[pad:-pad, pad:-pad] = False
            bg = np.median(region[ring], axis=0)
            fg = np.linalg.norm(region - bg, axis=2) > 60
            where = f"{r['image_path']} object {o['object_id']}"
            mean = region[fg].mean(axis=0)
            assert np.linalg.norm(mean - gen.COLORS[o["color"]]) < (30 if jpeg else 1), where
            if jpeg:
                assert abs(int(fg.sum()) - o["area_px"]) <= 0.15 * o["area_px"], where
                continue
            ys, xs = np.nonzero(fg)
            assert [xs.min() + x1 - pad, ys.min() + y1 - pad, xs.max() + x1 - pad + 1,
                    ys.max() + y1 - pad + 1] == o["bbox"], where
            assert int(fg.sum()) == o["area_px"], where


def test_distribution_supports_search_queries(rows: list[dict]) -> None:
    objects = [o for r in rows for o in r["objects"]]
    assert set(Counter(o["shape"] for o in objects)) == set(gen.SHAPES)
    assert min(Counter(o["color"] for o in objects).values()) >= 5
    assert min(Counter(o["shape"] for o in objects).values()) >= 20
    assert set(Counter(len(r["objects"]) for r in rows)) == {1, 2, 3, 4}
    looks = Counter((r["background"]["kind"], r["background"]["tone"]) for r in rows)
    assert len(looks) == 6 and min(looks.values()) >= 5

    def having(shape: str, colour: str, tone: str) -> int:
        return sum(r["background"]["tone"] == tone
                   and any(o["shape"] == shape and o["color"] == colour for o in r["objects"]) for r in rows)

    assert having("circle", "red", "dark") >= 5  # positives of a typical query...
    assert having("circle", "red", "light") >= 2  # ...and its near misses
    assert having("circle", "orange", "dark") >= 2
