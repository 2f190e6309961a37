"""Box conventions: pixel xyxy, 0-1000 xyxy and Gemini's 0-1000 [ymin, xmin, ymax, xmax] all become pixel
xyxy clamped to the image, both as plain functions (table-driven) and end to end through a project prompt
asset with `box_fields` answered by a scripted server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import MakeProject, ProjectDir
from vlm_support import GOOGLE_SECRET, OPENAI_SECRET, OTHER_SCENE, copy_scene, ledger, project_yml

from dataproj.errors import ConfigError
from dataproj.vlm.boxes import CONVENTIONS, BoxError, from_pixels, to_pixels
from dataproj.vlm.local_server import LocalVLMServer, ParsedRequest
from dataproj.vlm.prompts import PromptStore

W, H = 320, 240  # the size of the sample scene the e2e tests use

# (box as the model answers it, convention, expected pixel xyxy in a 320 x 240 image)
TO_PIXELS = [
    ([10, 20, 110, 220], "pixel_xyxy", [10, 20, 110, 220]),
    ([110, 220, 10, 20], "pixel_xyxy", [10, 20, 110, 220]),  # corners given the wrong way round
    ([-15, -1, 400, 500], "pixel_xyxy", [0, 0, 320, 240]),  # clamped to the image
    ([10.4, 20.6, 110.5, 219.5], "pixel_xyxy", [10, 21, 110, 220]),  # rounded (half to even)
    ([0, 0, 1000, 1000], "norm1000_xyxy", [0, 0, 320, 240]),
    ([250, 100, 750, 500], "norm1000_xyxy", [80, 24, 240, 120]),
    ([750, 500, 250, 100], "norm1000_xyxy", [80, 24, 240, 120]),
    ([-100, 500, 1200, 1500], "norm1000_xyxy", [0, 120, 320, 240]),
    ([100, 250, 500, 750], "gemini_yxyx", [80, 24, 240, 120]),  # [ymin, xmin, ymax, xmax]
    ([0, 0, 1000, 1000], "gemini_yxyx", [0, 0, 320, 240]),
    ([500, 750, 100, 250], "gemini_yxyx", [80, 24, 240, 120]),
    ([-50, 900, 1200, 1100], "gemini_yxyx", [288, 0, 320, 240]),
    ([125, 0, 250, 500], "gemini_yxyx", [0, 30, 160, 60]),
]


@pytest.mark.parametrize(("box", "convention", "expected"), TO_PIXELS)
def test_to_pixels(box: list[float], convention: str, expected: list[int]) -> None:
    result = to_pixels(box, convention, W, H)
    assert result == expected
    assert all(isinstance(v, int) for v in result)


@pytest.mark.parametrize(("box", "convention", "message"), [
    ([1, 2, 3], "pixel_xyxy", "4 numbers"),
    ([1, 2, 3, 4, 5], "gemini_yxyx", "4 numbers"),
    ([10, 10, 10, 50], "pixel_xyxy", "empty"),  # zero width
    ([400, 10, 500, 50], "pixel_xyxy", "empty"),  # entirely right of the image
    ([1100, 1100, 1200, 1200], "gemini_yxyx", "empty"),  # entirely outside once clamped
    ([-20, -20, -5, -5], "norm1000_xyxy", "empty"),
    ([0, 0, 10, 10], "xywh", "unknown box convention"),
])
def test_to_pixels_rejects(box: list[float], convention: str, message: str) -> None:
    with pytest.raises(BoxError, match=message):
        to_pixels(box, convention, W, H)


@pytest.mark.parametrize(("pixels", "convention", "expected"), [
    ([80, 24, 240, 120], "pixel_xyxy", [80, 24, 240, 120]),
    ([80, 24, 240, 120], "norm1000_xyxy", [250, 100, 750, 500]),
    ([80, 24, 240, 120], "gemini_yxyx", [100, 250, 500, 750]),
    ([0, 0, 320, 240], "gemini_yxyx", [0, 0, 1000, 1000]),
])
def test_from_pixels(pixels: list[int], convention: str, expected: list[int]) -> None:
    assert from_pixels(pixels, convention, W, H) == expected


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("box", [[0, 0, 320, 240], [58, 9, 93, 44], [61, 151, 88, 179], [248, 93, 307, 152],
                                 [1, 1, 2, 2], [319, 239, 320, 240]])
def test_round_trip_within_one_pixel(convention: str, box: list[int]) -> None:
    back = to_pixels(from_pixels(box, convention, W, H), convention, W, H)
    assert all(abs(a - b) <= 1 for a, b in zip(back, box, strict=True)), (box, back)


def test_unknown_convention_from_pixels() -> None:
    with pytest.raises(BoxError, match="unknown box convention"):
        from_pixels([0, 0, 1, 1], "cxcywh", W, H)


# ---- end to end: a prompt asset with box_fields, answered by a scripted server ---------------------------

DETECT_ASSET = """\
description: Find objects.
family: detect
function: {function}
inputs:
  thumb: image
  full: image
system_prompt: |
  Detect the objects ({convention}).
user_prompt:
  - text: "Find every object."
  - image: {{source: thumb}}
  - image: {{source: full}}
output_schema:
  name: Detections
  json_schema:
    type: object
    properties:
      objects:
        type: array
        items:
          type: object
          properties:
            label: {{type: string}}
            box: {{type: array, items: {{type: integer}}}}
          required: [label, box]
      main: {{type: array, items: {{type: integer}}}}
      all: {{type: array, items: {{type: array, items: {{type: integer}}}}}}
      note: {{type: string}}
    required: [objects, main, all, note]
box_convention: {convention}
box_fields: ["objects[].box", main, "all[]"]
{boxes_on}
"""

# What the scripted model answers, per convention: the same three boxes as in TO_PIXELS, plus one to clamp.
ANSWERS = {
    "gemini_yxyx": {"objects": [{"label": "square", "box": [100, 250, 500, 750]},
                                {"label": "edge", "box": [-50, 900, 1200, 1100]}],
                    "main": [0, 0, 1000, 1000], "note": "[1, 2, 3, 4] is not a box field"},
    "norm1000_xyxy": {"objects": [{"label": "square", "box": [250, 100, 750, 500]},
                                  {"label": "edge", "box": [900, -50, 1100, 1200]}],
                      "main": [0, 0, 1000, 1000], "note": "[1, 2, 3, 4] is not a box field"},
    "pixel_xyxy": {"objects": [{"label": "square", "box": [80, 24, 240, 120]},
                               {"label": "edge", "box": [288, -12, 352, 288]}],
                   "main": [0, 0, 320, 240], "note": "[1, 2, 3, 4] is not a box field"},
}
for _answer in ANSWERS.values():
    _answer["all"] = [obj["box"] for obj in _answer["objects"]]  # a list of boxes: the path "all[]"
EXPECTED_OBJECTS = [{"label": "square", "box": [80, 24, 240, 120]}, {"label": "edge", "box": [288, 0, 320, 240]}]


def _by_convention(request: ParsedRequest) -> str:
    convention = request.system.split("(")[1].split(")")[0]
    return json.dumps(ANSWERS[convention])


def _detect_project(make_project: MakeProject, server: LocalVLMServer, backend: str,
                    conventions: tuple[str, ...] = CONVENTIONS) -> ProjectDir:
    """One prompt asset per box convention (function detect_<convention>), all called by model d."""
    calls = ", ".join(f"detect_{c}('images/thumb.png', 'images/scene.png') as {c}" for c in conventions)
    project = make_project({
        "project.yml": project_yml(server, default=backend),
        **{f"prompts/test/detect_{c}/v1.yaml": DETECT_ASSET.format(function=f"detect_{c}", convention=c, boxes_on="")
           for c in conventions},
        "models/d.sql": f"""\
            {{{{ config(materialized='table', failure_budget=1) }}}}
            select 'n' as note, {calls}
            """,
    })
    copy_scene(project)
    copy_scene(project, "images/thumb.png", OTHER_SCENE)  # 320 x 240 as well
    return project


@pytest.mark.parametrize("backend", ["gw", "gm"])
def test_box_fields_stored_as_clamped_pixels(make_project: MakeProject, monkeypatch: pytest.MonkeyPatch,
                                             backend: str) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_SECRET)
    monkeypatch.setenv("GOOGLE_API_KEY", GOOGLE_SECRET)
    with LocalVLMServer(_by_convention) as server:
        project = _detect_project(make_project, server, backend)
        project.ok("run")
        [row] = project.rows(f"select {', '.join(CONVENTIONS)} from d")
        assert server.request_count == len(CONVENTIONS)
    for convention, result in zip(CONVENTIONS, row, strict=True):
        assert result["status"] == "ok", result
        assert result["objects"] == EXPECTED_OBJECTS, convention
        assert result["main"] == [0, 0, 320, 240], convention
        assert result["all"] == [obj["box"] for obj in EXPECTED_OBJECTS], convention
        assert result["note"] == "[1, 2, 3, 4] is not a box field"
        assert json.loads(result["raw_response"]) == ANSWERS[convention]  # the model's own numbers are kept raw


def test_boxes_sized_by_boxes_on_image(make_project: MakeProject, monkeypatch: pytest.MonkeyPatch,
                                       tmp_path: Path) -> None:
    """Boxes are converted with the size of the image named by `boxes_on` (default: the first image input)."""
    from PIL import Image

    monkeypatch.setenv("GOOGLE_API_KEY", GOOGLE_SECRET)
    answer = {"objects": [{"label": "all", "box": [0, 0, 1000, 1000]}], "main": [0, 0, 500, 500], "all": [],
              "note": ""}
    with LocalVLMServer(lambda _r: json.dumps(answer)) as server:
        project = make_project({
            "project.yml": project_yml(server, default="gm"),
            "prompts/test/first/v1.yaml": DETECT_ASSET.format(function="detect_first", convention="gemini_yxyx",
                                                              boxes_on=""),
            "prompts/test/full/v1.yaml": DETECT_ASSET.format(function="detect_full", convention="gemini_yxyx",
                                                             boxes_on="boxes_on: full"),
            "models/d.sql": """\
                {{ config(materialized='table') }}
                select 'n' as note, detect_first('images/thumb.png', 'images/scene.png') as a,
                       detect_full('images/thumb.png', 'images/scene.png') as b
                """,
        })
        copy_scene(project)  # 320 x 240
        Image.new("RGB", (100, 50), (10, 20, 30)).save(project.path("images/thumb.png"))
        project.ok("run")
        [(a, b)] = project.rows("select a, b from d")
    assert a["objects"][0]["box"] == [0, 0, 100, 50] and a["main"] == [0, 0, 50, 25]
    assert b["objects"][0]["box"] == [0, 0, 320, 240] and b["main"] == [0, 0, 160, 120]


def test_empty_box_is_reasked_then_failed_with_raw_response(make_project: MakeProject,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_SECRET)
    bad = json.dumps({"objects": [{"label": "gone", "box": [1100, 1100, 1200, 1200]}], "main": [0, 0, 10, 10],
                      "all": [], "note": ""})
    with LocalVLMServer(lambda _r: bad) as server:
        project = _detect_project(make_project, server, "gw", ("gemini_yxyx",))
        project.write({"project.yml": project_yml(server, gw="output_retries: 1")})
        project.ok("run")
        [(row,)] = project.rows("select gemini_yxyx from d")
        assert server.request_count == 2  # the first answer and one re-ask
    assert row["status"] == "failed"
    assert row["objects"] is None
    assert "empty" in row["error"] and "2 attempt" in row["error"]
    assert row["raw_response"] == bad
    [call] = ledger(project)
    assert call["status"] == "failed"


@pytest.mark.parametrize(("yaml_tail", "message"), [
    ("box_fields: [main]\n", "box_fields needs box_convention"),
    ("box_convention: xywh\nbox_fields: [main]\n", "box_convention"),
])
def test_box_settings_are_validated(tmp_path: Path, yaml_tail: str, message: str) -> None:
    asset = DETECT_ASSET.format(function="detect", convention="gemini_yxyx", boxes_on="")
    asset = asset.split("box_convention:")[0] + yaml_tail
    (tmp_path / "prompts/test/detect").mkdir(parents=True)
    (tmp_path / "prompts/test/detect/v1.yaml").write_text(asset)
    with pytest.raises(ConfigError, match=message):
        PromptStore(tmp_path / "prompts")
