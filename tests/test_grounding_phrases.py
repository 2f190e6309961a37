"""The referring-expression grammar (dataproj.grounding.phrases) and the input generator of the grounding
pipelines (seeds/grounding/make_inputs.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from test_grounding_support import SEEDS, truth_rows

from dataproj.grounding.phrases import (
    Mention,
    Query,
    Thing,
    clean_caption,
    describe,
    find_mentions,
    parse_phrase,
    resolve,
)


def _things(row: dict) -> list[Thing]:
    return [Thing(o["shape"], o["color"], o["size"], tuple(o["bbox"])) for o in row["objects"]]


def test_parse_reads_shape_colour_size_position_and_number() -> None:
    assert parse_phrase("the two large blue squares on the left") == Query("square", "blue", "large", "left", True)
    assert parse_phrase("The medium-sized orange star") == Query("star", "orange", "medium", None, False)
    assert parse_phrase("a circle at the bottom") == Query("circle", None, None, "bottom", False)
    assert parse_phrase("the leftmost blob") is None


def test_mentions_carry_their_character_spans() -> None:
    caption = "A small red circle on the left, two blue squares and an orange star on a plain cream background."
    assert find_mentions(caption) == [
        Mention("A small red circle on the left", 0, 30, Query("circle", "red", "small", "left", False)),
        Mention("two blue squares", 32, 48, Query("square", "blue", None, None, True)),
        Mention("an orange star", 53, 67, Query("star", "orange", None, None, False)),
    ]
    for mention in find_mentions(caption):
        assert caption[mention.start:mention.end] == mention.text


def test_clean_caption_drops_spoken_filler() -> None:
    assert clean_caption("In this image we can see a red circle on a plain cream background.") == (
        "A red circle on a plain cream background.")
    assert clean_caption("I can see two blue squares against a navy gradient background in the picture.") == (
        "Two blue squares against a navy gradient background.")
    assert clean_caption("There are a star and a square.") == "A star and a square."


def test_resolve_filters_then_takes_the_extreme_by_box_centre() -> None:
    left, right = Thing("square", "blue", "small", (10, 10, 30, 30)), Thing("square", "blue", "small", (50, 5, 70, 25))
    red = Thing("circle", "red", "large", (80, 80, 120, 120))
    scene = [left, right, red]
    assert resolve(Query("square", "blue", position="left"), scene) == [left]
    assert resolve(Query("square", "blue", position="top"), scene) == [right]
    assert resolve(Query("square", "blue", plural=True), scene) == [left, right]
    assert resolve(Query("square", "red"), scene) == []
    stacked = [Thing("star", "white", "small", (10, 10, 30, 30)), Thing("star", "white", "small", (10, 60, 30, 80))]
    assert resolve(Query("star", position="left"), stacked) == stacked  # a tie keeps both, as SQL's rank() does


def test_every_description_of_the_sample_denotes_its_object_alone() -> None:
    described = 0
    for row in truth_rows():
        things = _things(row)
        for thing in things:
            phrase = describe(thing, things, row["width"], row["height"])
            assert resolve(parse_phrase(phrase), things) == [thing], (row["image_path"], phrase)
            described += 1
    assert described == 150


def test_descriptions_use_size_then_position_to_tell_twins_apart() -> None:
    rows = {Path(r["image_path"]).stem: r for r in truth_rows()}
    scene = rows["scene_040"]  # a medium and a large blue square
    things = _things(scene)
    assert [describe(t, things, scene["width"], scene["height"]) for t in things] == [
        "the medium-sized blue square", "the large blue square", "the yellow circle at the top",
        "the black circle on the right"]
    twins = [Thing("circle", "red", "small", (10, 10, 40, 40)), Thing("circle", "red", "small", (200, 30, 230, 60))]
    assert [describe(t, twins, 256, 256) for t in twins] == ["the red circle on the left",
                                                             "the red circle on the right"]


@pytest.fixture(scope="module")
def make_inputs():  # noqa: ANN201 - a module
    spec = importlib.util.spec_from_file_location("make_inputs", SEEDS / "grounding" / "make_inputs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_generator_reproduces_the_committed_inputs(tmp_path: Path, make_inputs) -> None:  # noqa: ANN001
    assert make_inputs.main(["--out", str(tmp_path)]) == 0
    for name in ("grounding_captions.jsonl", "refexp_resume_annotations.jsonl"):
        assert (tmp_path / name).read_bytes() == (SEEDS / "grounding" / name).read_bytes(), name
    labels = sorted(p.name for p in (tmp_path / "kitti").iterdir())
    assert labels == sorted(p.name for p in (SEEDS / "grounding" / "kitti").iterdir())
    assert len(labels) == 60
    for name in labels:
        assert (tmp_path / "kitti" / name).read_bytes() == (SEEDS / "grounding" / "kitti" / name).read_bytes()


def test_kitti_labels_are_the_truth_with_planted_detector_noise(make_inputs) -> None:  # noqa: ANN001
    rows = truth_rows()
    loose = extra = exact = 0
    for index, row in enumerate(rows):
        stem = Path(row["image_path"]).stem
        lines = (SEEDS / "grounding" / "kitti" / f"{stem}.txt").read_text(encoding="utf-8").splitlines()
        boxes = [tuple(round(float(v)) for v in line.split()[4:8]) for line in lines]
        assert all(len(line.split()) == 15 for line in lines)
        truth = [tuple(o["bbox"]) for o in row["objects"]]
        exact += sum(a == b for a, b in zip(boxes, truth, strict=False))
        loose += boxes[0] != truth[0]
        extra += len(boxes) - len(truth)
        if index % 10 == 4:
            assert boxes[0] == make_inputs.shifted(truth[0], row["width"], row["height"])
    assert (exact, loose, extra) == (144, 6, 4)
