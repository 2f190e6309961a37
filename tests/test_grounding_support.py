"""Shared helpers of the tests/test_grounding_*.py files (no tests here): a project holding only the grounding
pipelines and their inputs, copied from the repository into a temporary folder, optionally for a few images."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from conftest import ProjectDir

REPO = Path(__file__).resolve().parents[1]
SEEDS = REPO / "seeds"
PIPELINE_TAGS = "+tag:grounding+"


def repo_grounding_vars() -> dict[str, Any]:
    """The `grounding` vars block of the repository's project.yml."""
    return yaml.safe_load((REPO / "project.yml").read_text(encoding="utf-8"))["vars"]["grounding"]


def truth_rows() -> list[dict[str, Any]]:
    return [json.loads(line) for line in (SEEDS / "scene_truth.jsonl").read_text(encoding="utf-8").splitlines()]


def grounding_project(root: Path, *, stems: Iterable[str] | None = None, grounding: dict[str, Any] | None = None,
                      extra_yml: str = "") -> ProjectDir:
    """models/grounding, prompts/grounding and the seeds they read, under `root`; with `stems`, only those images
    (captions, KITTI labels, truth and image files filtered alike)."""
    keep = set(stems) if stems is not None else None
    wanted = (lambda name: True) if keep is None else (lambda name: Path(name).stem in keep)
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO / "models" / "grounding", root / "models" / "grounding", ignore=ignore)
    shutil.copytree(REPO / "prompts" / "grounding", root / "prompts" / "grounding")
    shutil.copytree(REPO / "macros", root / "macros", dirs_exist_ok=True)  # the models call project macros
    seeds = root / "seeds"
    (seeds / "grounding" / "kitti").mkdir(parents=True)
    shutil.copyfile(SEEDS / "grounding" / "make_inputs.py", seeds / "grounding" / "make_inputs.py")
    for label in (SEEDS / "grounding" / "kitti").glob("*.txt"):
        if wanted(label.name):
            shutil.copyfile(label, seeds / "grounding" / "kitti" / label.name)
    for name in ("grounding_captions.jsonl", "refexp_resume_annotations.jsonl"):
        _filter_jsonl(SEEDS / "grounding" / name, seeds / "grounding" / name, wanted)
    _filter_jsonl(SEEDS / "scene_truth.jsonl", seeds / "scene_truth.jsonl", wanted)
    for image in (SEEDS / "scenes").rglob("*"):
        if image.is_file() and wanted(image.name):
            target = seeds / image.relative_to(SEEDS)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(image, target)
    settings = grounding if grounding is not None else repo_grounding_vars()
    (root / "project.yml").write_text(
        yaml.safe_dump({"name": "grounding_test", "threads": 4, "vars": {"grounding": settings}}) + extra_yml,
        encoding="utf-8")
    return ProjectDir(root)


def _filter_jsonl(source: Path, target: Path, wanted: Any) -> None:
    lines = [line for line in source.read_text(encoding="utf-8").splitlines()
             if line.strip() and wanted(json.loads(line)["image_path"])]
    target.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def failures(project: ProjectDir) -> dict[str, str]:
    """name -> message of every node of the last run that did not succeed or pass."""
    return {r["name"]: r["message"] for r in project.run_results()["results"]
            if r["status"] not in ("success", "pass")}


def records(project: ProjectDir, pipeline: str) -> list[dict[str, Any]]:
    path = project.path(f"warehouse/exports/grounding/{pipeline}/annotations.jsonl")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def quality(project: ProjectDir, model: str) -> dict[str, dict[str, Any]]:
    """stage -> the quality row of `model`."""
    with project.db() as con:
        relation = con.sql(f"select * from {model}")
        return {row[1]: dict(zip(relation.columns, row, strict=True)) for row in relation.fetchall()}
