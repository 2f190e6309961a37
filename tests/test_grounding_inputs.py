"""Bad inputs of the grounding pipelines: a malformed file or setting stops the run naming the file, line or key
and what to do; a bad image is a per-row failure that the image's record reports."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import ProjectDir
from test_grounding_support import failures, grounding_project, records

STEMS = ("scene_040", "scene_041", "scene_042", "scene_043", "scene_044")


@pytest.fixture
def small(tmp_path: Path) -> ProjectDir:
    return grounding_project(tmp_path / "project", stems=STEMS)


def run_vars(**pipelines: object) -> list[str]:
    return ["--vars", json.dumps({"grounding": pipelines})]


def test_a_caption_line_without_caption_names_its_line_and_key(small: ProjectDir) -> None:
    small.write({"inputs/captions.jsonl": '{"image_path": "scenes/fieldkit/scene_040.png", "caption": "a star"}\n'
                                          '{"image_path": "scenes/fieldkit/scene_041.png"}\n'})
    result = small.cli("run", "--select", "grounding_inputs", *run_vars(image_grounding={
        "input_jsonl": "inputs/captions.jsonl"}))
    assert result.code == 1
    assert failures(small)["grounding_inputs"] == (
        "inputs/captions.jsonl:2: key 'caption': Field required\n"
        "  hint: each line needs 'image_path' and 'caption'")


def test_malformed_json_and_a_missing_file_are_named(small: ProjectDir) -> None:
    small.write({"inputs/captions.jsonl": '{"image_path": "a.png", "caption": "x"}\n{"image_path": \n'})
    small.cli("run", "--select", "grounding_inputs",
              *run_vars(image_grounding={"input_jsonl": "inputs/captions.jsonl"}))
    assert failures(small)["grounding_inputs"].startswith("inputs/captions.jsonl:2: malformed JSON: Expecting value")
    small.cli("run", "--select", "grounding_inputs", *run_vars(image_grounding={"input_jsonl": "inputs/none.jsonl"}))
    assert failures(small)["grounding_inputs"] == (
        "inputs/none.jsonl: input file not found: " + str(small.path("inputs/none.jsonl")) +
        "\n  hint: fix the path in vars.grounding (relative paths start at the project root)")


def test_a_malformed_kitti_line_names_its_file_and_line(small: ProjectDir) -> None:
    label = small.path("seeds/grounding/kitti/scene_041.txt")
    lines = label.read_text().splitlines() + ["circle 0.00 0 -10.00 5 6 70"]
    label.write_text("\n".join(lines) + "\n")
    assert small.cli("run", "--select", "refexp_kitti_labels").code == 1
    message = failures(small)["refexp_kitti_labels"]
    assert message.startswith(f"{label}:{len(lines)}: malformed label line 'circle 0.00 0 -10.00 5 6 70'")
    assert message.endswith("hint: a KITTI label line has 15 space-separated fields: "
                            "type truncated occluded alpha x1 y1 x2 y2 h w l x y z rotation_y")


def test_a_missing_image_fails_its_row_and_the_record_says_why(small: ProjectDir) -> None:
    lines = [{"image_path": f"scenes/fieldkit/{stem}.png", "caption": "a blue circle"} for stem in STEMS]
    lines.append({"image_path": "scenes/fieldkit/scene_999.png", "caption": "a red circle"})
    small.write({"inputs/captions.jsonl": "".join(json.dumps(line) + "\n" for line in lines)})
    small.ok("build", "--select", "+tag:image_grounding", *run_vars(image_grounding={
        "input_jsonl": "inputs/captions.jsonl"}))
    missing = records(small, "image_grounding")[-1]
    assert (missing["image_id"], missing["width"], missing["expressions"]) == ("scene_999", None, [])
    assert [failure["step"] for failure in missing["errors"]] == ["image", "step0_extract"]
    assert "scene_999.png" in missing["errors"][0]["error"]
    assert all(r["errors"] == [] for r in records(small, "image_grounding")[:-1])


@pytest.mark.parametrize(("settings", "message"), [
    ({"image_grounding": {"steps": ["0", "4"]}},
     "project.yml: vars.grounding.image_grounding.steps.1: Input should be '0' or '1' (got '4')"),
    ({"image_referring_expression": {"output_format": "xml"}},
     "project.yml: vars.grounding.image_referring_expression.output_format: Input should be 'jsonl', 'legacy' or "
     "'both' (got 'xml')"),
    ({"image_grounding": {"stepz": ["0"]}}, "project.yml: unknown key 'vars.grounding.image_grounding.stepz'"),
])
def test_bad_settings_name_their_key(small: ProjectDir, settings: dict, message: str) -> None:
    small.cli("run", "--select", "grounding_inputs refexp_images", *run_vars(**settings))
    assert any(text.startswith(message) for text in failures(small).values()), failures(small)


def test_a_resume_record_with_a_bad_box_names_its_line_and_key(small: ProjectDir) -> None:
    record = {"image_path": "seeds/scenes/fieldkit/scene_040.png",
              "expressions": [{"text": "a star", "instances": [{"bbox": [1, 2, 3]}]}]}
    small.write({"inputs/resume.jsonl": "\n" + json.dumps(record) + "\n"})
    small.cli("run", "--select", "refexp_input_annotations", *run_vars(image_referring_expression={
        "input_annotations_jsonl": "inputs/resume.jsonl"}))
    assert failures(small)["refexp_input_annotations"] == (
        "inputs/resume.jsonl:2: key 'expressions.0.instances.0.bbox': Value error, a box is [x1, y1, x2, y2], "
        "got 3 numbers\n  hint: each line needs 'image_path'")


def test_two_images_with_one_stem_are_refused(small: ProjectDir) -> None:
    shutil.copyfile(small.path("seeds/scenes/fieldkit/scene_040.png"), small.path("seeds/scenes/scene_040.png"))
    small.cli("run", "--select", "refexp_images")
    assert "two images share the stem 'scene_040'" in failures(small)["refexp_images"]
