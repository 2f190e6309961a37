"""The inputs of the 2D grounding pipelines, written from the scene ground truth (seeds/scene_truth.jsonl).

Run ``python seeds/grounding/make_inputs.py`` (writes beside this script) or pass ``--out DIR``. Everything
is a function of the truth and a fixed seed, so two runs write identical bytes. It writes:

* ``grounding_captions.jsonl``: the image_grounding input, one line per sample image:
  ``{"image_path": "scenes/parkcam/scene_000.png", "caption": "...", "image_id"?, "width"?, "height"?}``.
  image_path is relative to the image root (``seeds`` in project.yml); a third of the lines carry no
  width/height and another third no image_id, so the pipeline's fill-in runs. Captions mention every
  object in the grammar of ``dataproj.grounding.phrases`` ("a small red circle", "two blue squares", "the
  purple star on the left") with the spoken-style filler real captions have ("In this image we can see
  ...", "There are ..."); every tenth also names a colour and shape that is not in the image ("but no
  green triangle"), which expression extraction must leave out because it is not visible.
* ``kitti/<stem>.txt``: the image_referring_expression boxes, one KITTI line per object,
  ``type truncated occluded alpha x1 y1 x2 y2 h w l x y z rotation_y`` with type = the shape, pixel boxes
  (x2/y2 are the exclusive edges of the truth boxes) and the 3D fields unknown (-1, -1000, -10). Like a
  detector's output they are not all perfect: in scenes whose index is 4 mod 10 the first box is shifted
  by 15 % of its size (IoU about 0.57 with the object), and scenes 7 mod 15 carry one extra box on empty
  background. Step 3 (double check) has to tighten the first and drop the second.
* ``refexp_resume_annotations.jsonl``: a few unified annotation records (the resume input of
  image_referring_expression, ``input_annotations_jsonl``) whose expressions mix the reference code's
  field names (``text``, ``bbox_score``) with its docs' (``expression``, ``score``). Per image: one right
  expression, one naming the wrong colour, one with a loose box and one whose box holds nothing, so that
  a double check keeps, updates (text), updates (box) and removes one of each.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Iterator
from pathlib import Path

from dataproj.grounding.phrases import (
    COLORS,
    SHAPES,
    WHERE,
    Thing,
    absolute_position,
    background_phrase,
    describe,
    group_phrase,
    groups,
    join_phrases,
)

SEED = 20250301
HERE = Path(__file__).resolve().parent
TRUTH = HERE.parent / "scene_truth.jsonl"
IMAGE_ROOT = "seeds"  # what image_path values in the captions are relative to
LOOSE_EVERY, LOOSE_AT = 10, 4  # scenes with one shifted KITTI box
EXTRA_EVERY, EXTRA_AT = 15, 7  # scenes with one KITTI box on empty background
ABSENT_EVERY, ABSENT_AT = 10, 9  # captions that also name something absent
RESUME_IMAGES = 3
Box = tuple[int, int, int, int]


def load_truth(path: Path = TRUTH) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def things(row: dict) -> list[Thing]:
    return [Thing(o["shape"], o["color"], o["size"], tuple(o["bbox"])) for o in row["objects"]]


def stem(row: dict) -> str:
    return Path(row["image_path"]).stem


# ---- captions --------------------------------------------------------------------------------------------


def object_phrases(row: dict, rng: random.Random) -> list[str]:
    """One phrase per (colour, shape) group; a pair is named together, by size or by position."""
    objects = things(row)
    phrases = []
    for group in groups(objects):
        if len(group) == 1:
            phrase = group_phrase(group, with_size=rng.random() < 0.5)
            where = absolute_position(group[0], row["width"], row["height"])
            phrases.append(f"{phrase} {WHERE[where]}" if where and rng.random() < 0.3 else phrase)
            continue
        style = rng.choice(("together", "individually"))
        if style == "together":
            phrases.append(group_phrase(group))
        else:
            phrases += [describe(obj, objects, row["width"], row["height"]) for obj in group]
    return phrases


def caption_for(index: int, row: dict) -> str:
    rng = random.Random(SEED + index)
    phrases = object_phrases(row, rng)
    listed = join_phrases(phrases)
    background = background_phrase(row["background"]["kind"], row["background"]["color"])
    if index % ABSENT_EVERY == ABSENT_AT:
        present = {(o.color, o.shape) for o in things(row)}
        color, shape = next((c, s) for c in COLORS for s in SHAPES if (c, s) not in present)
        background += f", but no {color} {shape}"
    many = len(row["objects"]) > 1
    style = rng.randrange(4)
    if style == 0:
        return f"In this image we can see {listed} on {background}."
    if style == 1:
        return f"There {'are' if many else 'is'} {listed} on {background}."
    if style == 2:
        return f"{listed[:1].upper()}{listed[1:]} on {background}."
    return f"I can see {listed} against {background} in the picture."


def caption_lines(rows: list[dict]) -> Iterator[dict]:
    for index, row in enumerate(rows):
        line: dict = {"image_path": row["image_path"], "caption": caption_for(index, row)}
        if index % 3 != 1:
            line["image_id"] = stem(row)
        if index % 3 != 2:
            line |= {"width": row["width"], "height": row["height"]}
        yield line


# ---- KITTI labels ----------------------------------------------------------------------------------------


def kitti_line(kind: str, box: Box) -> str:
    x1, y1, x2, y2 = box
    return (f"{kind} 0.00 0 -10.00 {x1:.2f} {y1:.2f} {x2:.2f} {y2:.2f} "
            "-1.00 -1.00 -1.00 -1000.00 -1000.00 -1000.00 -10.00")


def shifted(box: Box, width: int, height: int, fraction: float = 0.15) -> Box:
    """The box moved right and down by `fraction` of its size, kept inside the image."""
    x1, y1, x2, y2 = box
    dx, dy = round((x2 - x1) * fraction), round((y2 - y1) * fraction)
    dx, dy = min(dx, width - x2), min(dy, height - y2)
    return (x1 + dx, y1 + dy, x2 + dx, y2 + dy)


def empty_box(row: dict) -> Box:
    """A square of background (no object within 4 px), scanning from the top-left corner."""
    side = max(16, min(row["width"], row["height"]) // 6)
    taken = [o["bbox"] for o in row["objects"]]
    for y in range(8, row["height"] - side - 8, 4):
        for x in range(8, row["width"] - side - 8, 4):
            box = (x, y, x + side, y + side)
            if all(box[2] + 4 <= b[0] or b[2] + 4 <= box[0] or box[3] + 4 <= b[1] or b[3] + 4 <= box[1]
                   for b in taken):
                return box
    raise ValueError(f"{row['image_path']}: no empty square of {side} px")


def kitti_labels(index: int, row: dict) -> str:
    lines = []
    for number, obj in enumerate(row["objects"]):
        box = tuple(obj["bbox"])
        if number == 0 and index % LOOSE_EVERY == LOOSE_AT:
            box = shifted(box, row["width"], row["height"])
        lines.append(kitti_line(obj["shape"], box))
    if index % EXTRA_EVERY == EXTRA_AT:
        kind = SHAPES[index % len(SHAPES)]
        lines.append(kitti_line(kind, empty_box(row)))
    return "\n".join(lines) + "\n"


# ---- resume sample ---------------------------------------------------------------------------------------


def resume_record(number: int, row: dict) -> dict:
    objects = things(row)
    width, height = row["width"], row["height"]
    first, second = objects[0], objects[1]
    wrong = next(c for c in COLORS if c not in {o.color for o in objects})
    right_text = describe(first, objects, width, height)
    second_text = describe(second, objects, width, height)
    record: dict = {
        "image_id": stem(row), "image_path": f"{IMAGE_ROOT}/{row['image_path']}",
        "caption": join_phrases([group_phrase(g) for g in groups(objects)]).capitalize() + ".",
        "regions": [{"bbox": list(o.bbox), "type": o.shape, "color": o.color,
                     "description": describe(o, objects, width, height)} for o in objects],
        "expressions": [
            {"expression_id": "expr_00000", "text": right_text,
             "instances": [{"bbox_id": "box_00000", "bbox": list(first.bbox), "bbox_score": 0.9}]},
            {"expression": second_text.replace(second.color, wrong, 1),
             "instances": [{"bbox": list(second.bbox), "score": 0.8}]},
            {"text": second_text, "instances": [{"bbox": list(shifted(second.bbox, width, height)),
                                                 "bbox_score": 0.7}]},
            {"expression": f"the {wrong} {first.shape}", "instances": [{"bbox": list(empty_box(row)), "score": 0.6}]},
        ],
        "source": "image_referring_expression",
        "pipeline_steps": ["step0_region_expr", "step1_image_caption", "step2_grounding_expr"],
    }
    if number != 1:  # one record leaves the size to the pipeline
        record |= {"width": width, "height": height}
    return record


def resume_lines(rows: list[dict]) -> Iterator[dict]:
    chosen = [row for row in rows if len(row["objects"]) >= 2][:RESUME_IMAGES]
    for number, row in enumerate(chosen):
        yield resume_record(number, row)


# ---- writing ---------------------------------------------------------------------------------------------


def jsonl(lines: Iterator[dict]) -> str:
    return "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)


def generate(out: Path, truth: Path = TRUTH) -> None:
    rows = load_truth(truth)
    out.mkdir(parents=True, exist_ok=True)
    (out / "grounding_captions.jsonl").write_text(jsonl(caption_lines(rows)), encoding="utf-8")
    (out / "refexp_resume_annotations.jsonl").write_text(jsonl(resume_lines(rows)), encoding="utf-8")
    labels = out / "kitti"
    labels.mkdir(exist_ok=True)
    for index, row in enumerate(rows):
        (labels / f"{stem(row)}.txt").write_text(kitti_labels(index, row), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the grounding pipelines' inputs from the scene truth.")
    parser.add_argument("--out", type=Path, default=HERE, help="output folder (default: beside this script)")
    parser.add_argument("--truth", type=Path, default=TRUTH, help="scene_truth.jsonl to read")
    args = parser.parse_args(argv)
    generate(args.out, args.truth)
    return 0


if __name__ == "__main__":
    sys.exit(main())
