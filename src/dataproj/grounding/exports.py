"""What the grounding Python models write under the exports folder: the COCO JSON and the legacy label files of
a pipeline, each returned as a small table of what was written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from ..publish.coco import write_coco
from . import legacy
from .paths import exports_dir, project_relative, project_root

LEGACY_STEPS = ("0", "1", "2", "3")


def pipeline_dir(model_file: str | Path, pipeline: str) -> tuple[Path, Path]:
    """(project root, warehouse/exports/grounding/<pipeline>)."""
    root = project_root(model_file)
    return root, exports_dir(root) / "grounding" / pipeline


def rows(relation: Any) -> list[dict[str, Any]]:
    """A DuckDB relation as a list of dicts (nested values as Python lists and dicts)."""
    table = relation.arrow()
    return (table.read_all() if hasattr(table, "read_all") else table).to_pylist()


def write_coco_export(relation: Any, model_file: str | Path, pipeline: str) -> pa.Table:
    """coco.json beside the pipeline's annotations.jsonl; one row: its path and counts."""
    root, folder = pipeline_dir(model_file, pipeline)
    path = folder / "coco.json"
    document = write_coco(rows(relation), path, description=f"dataproj {pipeline} annotations")
    return pa.table({"path": [project_relative(root, path)], "images": [len(document["images"])],
                     "annotations": [len(document["annotations"])], "categories": [len(document["categories"])]})


def write_legacy_labels(steps: dict[str, Any], model_file: str | Path, pipeline: str) -> pa.Table:
    """labels/<stem>.txt.stepN for each step relation given (step -> relation of image_id and the step's field);
    with no steps the labels folder is removed. One row per file written."""
    root, folder = pipeline_dir(model_file, pipeline)
    labels_dir = folder / "labels"
    files: list[tuple[str, str, str]] = []  # (image_id, step, text)
    for step, relation in steps.items():
        for row in rows(relation):
            files.append((row["image_id"], step, _step_text(step, row)))
    index: dict[str, list[Any]] = {"image_id": [], "step": [], "path": [], "bytes": []}
    if not files:
        legacy.remove_labels(labels_dir)
    else:
        written = legacy.replace_labels(labels_dir, ((f"{i}.txt.step{s}", text) for i, s, text in files))
        for (image_id, step, _), (name, size) in zip(files, written, strict=True):
            index["image_id"].append(image_id)
            index["step"].append(step)
            index["path"].append(project_relative(root, labels_dir / name))
            index["bytes"].append(size)
    return pa.table(index, schema=pa.schema([("image_id", pa.string()), ("step", pa.string()), ("path", pa.string()),
                                             ("bytes", pa.int64())]))


def _step_text(step: str, row: dict[str, Any]) -> str:
    if step == "0":
        return legacy.region_file(row["regions"])
    if step == "1":
        return legacy.caption_file(row["caption"])
    return legacy.grounding_file(row["expressions"])
