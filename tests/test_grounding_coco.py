"""COCO export of unified grounding records (dataproj.publish.coco), read back with pycocotools."""

from __future__ import annotations

import json
from pathlib import Path

from pycocotools.coco import COCO

from dataproj.publish.coco import coco_document, write_coco, xywh

RECORDS = [
    {"image_id": "scene_a", "image_path": "seeds/a.png", "width": 320, "height": 240, "caption": "raw",
     "cleaned_caption": "Two blue squares.", "regions": [],
     "expressions": [{"expression_id": "expr_00000", "text": "Two blue squares", "char_span": [0, 16],
                      "noun_chunk": "square", "verified": None,
                      "instances": [{"bbox_id": "box_00000", "bbox": [10, 20, 50, 80], "bbox_score": 0.9},
                                    {"bbox_id": "box_00001", "bbox": [100, 20, 140, 60], "bbox_score": 0.8}]}]},
    {"image_id": "scene_b", "image_path": "seeds/b.png", "width": 256, "height": 256, "caption": "A star.",
     "cleaned_caption": None,
     "regions": [{"bbox": [30, 30, 70, 70], "type": "Star", "color": "red", "description": "the red star"}],
     "expressions": [{"expression_id": "expr_00000", "text": "the red star", "char_span": None, "noun_chunk": None,
                      "verified": True,
                      "instances": [{"bbox_id": "box_00000", "bbox": [31, 30, 70, 71], "bbox_score": None}]},
                     {"expression_id": "expr_00001", "text": "something", "char_span": None, "noun_chunk": None,
                      "verified": False,
                      "instances": [{"bbox_id": "box_00001", "bbox": [200, 200, 230, 230], "bbox_score": 0.5}]}]},
]


def test_boxes_become_x_y_width_height() -> None:
    assert xywh([10, 20, 50, 80]) == [10, 20, 40, 60]


def test_document_numbers_images_and_annotations_and_names_categories() -> None:
    document = coco_document(RECORDS, description="test")
    assert document["images"] == [
        {"id": 1, "file_name": "seeds/a.png", "width": 320, "height": 240, "image_name": "scene_a",
         "caption": "Two blue squares."},
        {"id": 2, "file_name": "seeds/b.png", "width": 256, "height": 256, "image_name": "scene_b",
         "caption": "A star."},
    ]
    # categories: the expression's core noun, else the type of the region the box covers, else "object"
    assert document["categories"] == [{"id": 1, "name": "object", "supercategory": "object"},
                                      {"id": 2, "name": "square", "supercategory": "object"},
                                      {"id": 3, "name": "star", "supercategory": "object"}]
    assert document["annotations"][0] == {
        "id": 1, "image_id": 1, "category_id": 2, "bbox": [10, 20, 40, 60], "area": 2400, "iscrowd": 0,
        "score": 0.9, "bbox_id": "box_00000", "expression_id": "expr_00000", "text": "Two blue squares",
        "verified": None, "tokens_positive": [[0, 16]]}
    assert [(a["id"], a["image_id"], a["category_id"]) for a in document["annotations"]] == [
        (1, 1, 2), (2, 1, 2), (3, 2, 3), (4, 2, 1)]
    assert "tokens_positive" not in document["annotations"][2]


def test_pycocotools_reads_the_written_file(tmp_path: Path) -> None:
    path = tmp_path / "out" / "coco.json"
    write_coco(RECORDS, path, description="test")
    assert not list(path.parent.glob("*.partial"))
    coco = COCO(str(path))
    assert coco.getImgIds() == [1, 2]
    assert coco.getAnnIds(imgIds=[2]) == [3, 4]
    assert coco.getCatIds(catNms=["star"]) == [3]
    assert coco.loadAnns([3])[0]["bbox"] == [31, 30, 39, 41]
    assert json.loads(path.read_text())["info"] == {"description": "test", "version": "1.0"}
