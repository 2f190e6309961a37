"""The edit candidate pools: seeds/generate_edits.py reproduces the committed images, pools and truth; the pools
use the reference's item-key scheme; every variant is what the truth says it is; the instructions are in the
grammar the offline parser and judges read; the offline answerers of the edit prompt families."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

from dataproj.vlm.boxes import to_pixels
from dataproj.vlm.offline import answer
from dataproj.vlm.offline_analysis import analyse_cached
from dataproj.vlm.offline_edit import read_phrase
from dataproj.vlm.offline_judges import parse_instruction

REPO = Path(__file__).resolve().parents[1]
SEEDS = REPO / "seeds"
TASKS = ("subject_add", "subject_remove", "color_alter")
ACTIONS = {"subject_add": "add", "subject_remove": "remove", "color_alter": "recolor"}


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_edits", SEEDS / "generate_edits.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def truth() -> list[dict]:
    return [json.loads(line) for line in (SEEDS / "edits/edit_truth.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def pools() -> dict[str, dict]:
    return {task: json.loads((SEEDS / f"candidate_pools/{task}.json").read_text()) for task in TASKS}


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def test_regeneration_reproduces_the_committed_pools(tmp_path: Path) -> None:
    assert _generator().main(["--out", str(tmp_path)]) == 0
    for task in TASKS:
        rel = f"candidate_pools/{task}.json"
        assert (tmp_path / rel).read_bytes() == (SEEDS / rel).read_bytes()
    assert (tmp_path / "edits/edit_truth.jsonl").read_bytes() == (SEEDS / "edits/edit_truth.jsonl").read_bytes()
    committed = sorted(p.relative_to(SEEDS).as_posix() for p in (SEEDS / "edits").rglob("*.png"))
    assert committed == sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "edits").rglob("*.png"))
    for rel in committed:  # pixels, not bytes: zlib builds may encode the same pixels differently
        assert np.array_equal(_pixels(tmp_path / rel), _pixels(SEEDS / rel)), rel


def test_pools_use_the_reference_item_keys(pools: dict[str, dict], truth: list[dict]) -> None:
    keys = []
    for task, pool in pools.items():
        assert pool["edit_task"] == task
        meta = {item["key"]: item for item in pool["meta_info"]}
        assert len(meta) == 15
        assert [m["name"] for m in pool["models"]] == ["editor_alpha", "editor_beta", "editor_gamma"]
        for model in pool["models"]:
            assert [r["key"] for r in model["results"]] == list(meta)
            keys += [f"{r['key']}_model_{model['name']}" for r in model["results"]]
            assert all((REPO / r["image_path"]).is_file() for r in model["results"])
        assert all("_model_" not in key for key in meta)
    assert sorted(keys) == [t["item_key"] for t in truth]
    assert Counter(t["variant"] for t in truth) == Counter({"faithful": 45, "background_shift": 45, "no_edit": 45})
    # no editor is always the good one
    assert {t["model"] for t in truth if t["variant"] == "faithful"} == {"editor_alpha", "editor_beta", "editor_gamma"}
    assert sum(p.stat().st_size for p in (SEEDS / "edits").rglob("*.png")) < 2_000_000


def test_each_variant_is_what_the_truth_says(pools: dict[str, dict], truth: list[dict]) -> None:
    paths = {f"{r['key']}_model_{m['name']}": r["image_path"]
             for pool in pools.values() for m in pool["models"] for r in m["results"]}
    for row in truth[::4]:
        source = _pixels(REPO / row["source_image_path"])
        edited = _pixels(REPO / paths[row["item_key"]])
        x1, y1, x2, y2 = row["edit_box"]
        outside = np.ones(source.shape[:2], dtype=bool)
        outside[max(0, y1 - 2):y2 + 2, max(0, x1 - 2):x2 + 2] = False
        changed_outside = np.abs(source.astype(int) - edited.astype(int)).max(axis=2)[outside] > 0
        changed_inside = not np.array_equal(source[y1:y2, x1:x2], edited[y1:y2, x1:x2])
        if row["variant"] == "no_edit":
            assert np.array_equal(source, edited)
        elif row["variant"] == "faithful":
            assert changed_inside and not changed_outside.any()
        else:
            # an offset on a plain background changes little more than the other objects' edges
            assert changed_inside and changed_outside.mean() > 0.01, row["item_key"]


def test_instructions_are_in_the_judges_grammar(pools: dict[str, dict], truth: list[dict]) -> None:
    objects = {t["key"]: t["edited_object"] for t in truth}
    for task, pool in pools.items():
        for item in pool["meta_info"]:
            intent = parse_instruction(item["instruction"])
            assert intent.action == ACTIONS[task]
            assert f"{intent.color} {intent.shape}" == objects[item["key"]]


def test_the_offline_parser_names_the_edited_object() -> None:
    def parse(text: str) -> dict:
        return answer("edit_instruction_parser", "", [f"Instruction: {text}"], [], None, None)

    assert parse("Add a red circle in the top left of the image.") == {"edit_action": "add",
                                                                        "edited_objects": ["red circle"]}
    assert parse("Remove the small blue star.") == {"edit_action": "remove", "edited_objects": ["blue star"]}
    assert parse("Change the green square to purple.") == {"edit_action": "recolor",
                                                           "edited_objects": ["green square"]}
    assert parse("Make it look like a watercolour.") == {"edit_action": "other", "edited_objects": []}


def test_the_offline_grounder_finds_the_objects_in_the_image(truth: list[dict]) -> None:
    scene = SEEDS / "scenes/parkcam/scene_000.png"  # a yellow square, a blue star and a purple circle
    analysis = analyse_cached(scene)
    reply = answer("edit_grounder", "", ["Objects: blue star; red circle; squares"], [str(scene)], None,
                   "norm1000_xyxy")
    boxes = {o["label"]: to_pixels(o["bbox_2d"], "norm1000_xyxy", analysis.width, analysis.height)
             for o in reply["objects"]}
    star = next(o for o in analysis.objects if (o.color, o.shape) == ("blue", "star"))
    square = next(o for o in analysis.objects if o.shape == "square")
    assert boxes == {"blue star": list(star.bbox), "squares": list(square.bbox)}  # no red circle: no box
    phrase = read_phrase("Two Large RED circles")
    assert (phrase.color, phrase.shape, phrase.size) == ("red", "circle", "large")
