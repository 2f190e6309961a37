"""The offline answers of the grounding prompts, asked through the real prompt assets (rendering, output
validation, box conversion): values measured from the sample images, in each asset's box convention."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_grounding_support import REPO

from dataproj.vlm.calling import parse_output, request_for
from dataproj.vlm.clients import OfflineClient
from dataproj.vlm.offline_analysis import box_iou
from dataproj.vlm.prompts import PromptStore
from dataproj.vlm.settings import OfflineBackend

SCENES = REPO / "seeds" / "scenes"
TWINS = str(SCENES / "fieldkit" / "scene_040.png")  # 256 x 256: medium and large blue square, yellow and black circle
FOUR = str(SCENES / "parkcam" / "scene_004.png")  # 320 x 240: orange square, orange circle, yellow square, red star
ORANGE_SQUARE, ORANGE_CIRCLE = (51, 133, 85, 167), (104, 53, 159, 108)
STORE = PromptStore(REPO / "prompts")
CLIENT = OfflineClient(OfflineBackend(type="offline"))


def ask(prompt_id: str, **values: Any) -> dict[str, Any]:
    """Render the asset, answer offline, validate and convert its boxes to pixels, as a SQL call does."""
    asset = STORE.get(prompt_id)
    return parse_output(asset, CLIENT.complete(request_for(asset, values)).text, values)


def norm(box: tuple[int, int, int, int], width: int, height: int) -> list[int]:
    return [round(box[0] * 1000 / width), round(box[1] * 1000 / height), round(box[2] * 1000 / width),
            round(box[3] * 1000 / height)]


def test_assets_declare_the_box_convention_they_ask_for() -> None:
    conventions = {a.prompt_id: (a.spec.box_convention, a.spec.box_fields) for a in STORE.latest()
                   if a.prompt_id.startswith("grounding/")}
    assert conventions == {
        "grounding/image_grounding/extract_expressions": (None, []),
        "grounding/image_grounding/ground_phrases": ("pixel_xyxy", ["groundings[].bboxes[]"]),
        "grounding/referring/region_expressions": ("norm1000_xyxy", ["regions[].bbox_2d"]),
        "grounding/referring/image_caption": (None, []),
        "grounding/referring/grounding_expressions": ("norm1000_xyxy", ["expressions[].bboxes[]"]),
        "grounding/referring/double_check": ("norm1000_xyxy", ["checks[].bboxes[]"]),
    }


def test_extraction_cleans_the_caption_and_keeps_visible_noun_phrases_with_spans() -> None:
    caption = ("In this image we can see the large blue square, a yellow circle at the top and two blue squares "
               "on a plain cream background, but no green triangle.")
    answer = ask("grounding/image_grounding/extract_expressions", caption=caption, image=TWINS)
    cleaned = ("The large blue square, a yellow circle at the top and two blue squares on a plain cream background, "
               "but no green triangle.")
    assert answer == {"cleaned_caption": cleaned, "expressions": [
        {"text": "The large blue square", "char_span": [0, 21], "noun_chunk": "square"},
        {"text": "a yellow circle at the top", "char_span": [23, 49], "noun_chunk": "circle"},
        {"text": "two blue squares", "char_span": [54, 70], "noun_chunk": "square"},
    ]}  # "green triangle" is not in the image


def test_grounding_answers_pixel_boxes_per_expression() -> None:
    texts = ["the large blue square", "two blue squares", "a black circle", "a red star"]
    answer = ask("grounding/image_grounding/ground_phrases", expressions=json.dumps(texts), width=256, height=256,
                 image=TWINS)
    assert answer["groundings"] == [
        {"text": "the large blue square", "bboxes": [[72, 101, 162, 191]], "scores": [1.0]},
        {"text": "two blue squares", "bboxes": [[10, 15, 76, 81], [72, 101, 162, 191]], "scores": [1.0, 1.0]},
        {"text": "a black circle", "bboxes": [[174, 158, 214, 198]], "scores": [1.0]},
        {"text": "a red star", "bboxes": [], "scores": []},
    ]


def test_a_singular_phrase_that_fits_two_objects_splits_its_confidence() -> None:
    answer = ask("grounding/image_grounding/ground_phrases", expressions='["the blue square"]', width=256,
                 height=256, image=TWINS)
    assert answer["groundings"][0]["scores"] == [0.5, 0.5]


def test_regions_read_norm1000_boxes_and_describe_what_is_inside() -> None:
    boxes = [{"type": "square", "bbox_2d": norm((10, 15, 76, 81), 256, 256)},
             {"type": "circle", "bbox_2d": norm((174, 158, 214, 198), 256, 256)},
             {"type": "star", "bbox_2d": norm((120, 8, 160, 40), 256, 256)}]
    answer = ask("grounding/referring/region_expressions", boxes=json.dumps(boxes), image=TWINS)
    assert answer["regions"] == [  # boxes come back in pixels, exactly
        {"bbox_2d": [10, 15, 76, 81], "type": "square", "color": "blue", "description": "the medium-sized blue square"},
        {"bbox_2d": [174, 158, 214, 198], "type": "circle", "color": "black",
         "description": "the black circle on the right"},
        {"bbox_2d": [120, 8, 160, 40], "type": "star", "color": "unknown", "description": "an unidentified star"},
    ]


def test_caption_names_the_objects_and_the_background() -> None:
    assert ask("grounding/referring/image_caption", image=TWINS) == {
        "caption": "Two blue squares, a small yellow circle and a small black circle on a plain cream background."}


def test_grounding_expressions_group_alike_regions_and_score_boxes_by_iou() -> None:
    loose = (56, 138, 90, 172)  # the orange square's box shifted by 15 %
    regions = [
        {"description": "the orange square on the left", "type": "square", "color": "orange",
         "bbox_2d": norm(loose, 320, 240)},
        {"description": "the orange circle", "type": "circle", "color": "orange",
         "bbox_2d": norm(ORANGE_CIRCLE, 320, 240)},
        {"description": "", "type": "square", "color": "orange", "bbox_2d": norm((246, 10, 277, 41), 320, 240)},
    ]
    answer = ask("grounding/referring/grounding_expressions", regions=json.dumps(regions), caption=None, image=FOUR)
    assert answer["expressions"] == [
        {"text": "the orange square on the left", "bboxes": [list(loose)],
         "scores": [round(box_iou(loose, ORANGE_SQUARE), 3)]},
        {"text": "the orange circle", "bboxes": [list(ORANGE_CIRCLE)], "scores": [1.0]},
        # the score says how well the box frames an object, not whether the text names it (a yellow square)
        {"text": "the orange square", "bboxes": [[246, 10, 277, 41]], "scores": [1.0]},
        {"text": "the two orange squares", "bboxes": [list(loose), [246, 10, 277, 41]], "scores": [0.572, 1.0]},
    ]


@pytest.mark.parametrize(("text", "box", "expected"), [
    ("the orange circle", ORANGE_CIRCLE, ("keep", "the orange circle", [ORANGE_CIRCLE])),
    ("the orange square on the left", (56, 138, 90, 172), ("update", "the orange square on the left",
                                                           [ORANGE_SQUARE])),  # tightened
    ("the purple circle", ORANGE_CIRCLE, ("update", "the orange circle", [ORANGE_CIRCLE])),  # renamed
    ("the orange circle", ORANGE_SQUARE, ("update", "the orange square", [ORANGE_SQUARE])),  # misnamed type
    ("the orange circle", (180, 180, 220, 220), ("remove", "the orange circle", [])),  # a box on nothing
])
def test_double_check_keeps_updates_or_removes(text: str, box: tuple[int, ...], expected: tuple) -> None:
    items = [{"expression_id": "expr_00007", "text": text, "bboxes": [norm(box, 320, 240)]}]
    answer = ask("grounding/referring/double_check", expressions=json.dumps(items), image=FOUR)
    action, checked_text, boxes = expected
    assert answer["checks"] == [{"expression_id": "expr_00007", "action": action, "text": checked_text,
                                 "bboxes": [list(b) for b in boxes]}]


def test_double_check_keeps_the_boxes_that_pass_and_drops_the_others() -> None:
    nothing = (180, 180, 220, 220)
    items = [{"expression_id": "expr_00001", "text": "the orange circle",
              "bboxes": [norm(box, 320, 240) for box in (ORANGE_CIRCLE, ORANGE_SQUARE, nothing)]},
             {"expression_id": "expr_00002", "text": "the red circle",  # boxes on two different objects: no rename
              "bboxes": [norm(ORANGE_CIRCLE, 320, 240), norm(ORANGE_SQUARE, 320, 240)]}]
    answer = ask("grounding/referring/double_check", expressions=json.dumps(items), image=FOUR)
    assert answer["checks"] == [
        {"expression_id": "expr_00001", "action": "update", "text": "the orange circle",
         "bboxes": [list(ORANGE_CIRCLE)]},
        {"expression_id": "expr_00002", "action": "remove", "text": "the red circle", "bboxes": []},
    ]


def test_answers_follow_the_convention_an_asset_declares(tmp_path: Path) -> None:
    source = REPO / "prompts" / "grounding" / "image_grounding" / "ground_phrases" / "v1.yaml"
    spec = yaml.safe_load(source.read_text())
    spec["box_convention"] = "gemini_yxyx"
    target = tmp_path / "grounding" / "image_grounding" / "ground_phrases" / "v2.yaml"
    target.parent.mkdir(parents=True)
    target.write_text(yaml.safe_dump(spec))
    asset = PromptStore(tmp_path).get("grounding/image_grounding/ground_phrases", "v2")
    values = {"expressions": '["a black circle"]', "width": 256, "height": 256, "image": TWINS}
    raw = json.loads(CLIENT.complete(request_for(asset, values)).text)
    assert raw["groundings"][0]["bboxes"] == [[617, 680, 773, 836]]  # [ymin, xmin, ymax, xmax] on 0-1000
    assert parse_output(asset, json.dumps(raw), values)["groundings"][0]["bboxes"] == [[174, 158, 214, 198]]
