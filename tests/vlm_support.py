"""Helpers shared by the tests/test_vlm_*.py files: projects whose VLM backends are the real openai and
google-genai SDKs pointed at a LocalVLMServer, scripted answers, sample scenes and Pillow-made edits."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from conftest import ProjectDir
from PIL import Image, ImageDraw

from dataproj.vlm.local_server import LocalVLMServer, ParsedRequest

REPO_ROOT = Path(__file__).resolve().parents[1]
SCENES = REPO_ROOT / "seeds" / "scenes"
SCENE = SCENES / "parkcam" / "scene_000.png"  # 320 x 240, light gradient; a yellow square, blue star, purple circle
OTHER_SCENE = SCENES / "parkcam" / "scene_001.png"

OPENAI_SECRET = "sk-test-OPENAI-7f3c9e1d-do-not-leak"
GOOGLE_SECRET = "AIza-test-GOOGLE-4b8a2f6e-do-not-leak"

LEDGER_COLUMNS = ("function, node, backend, model, status, attempts, rows, input_tokens, cached_input_tokens, "
                  "output_tokens, cost_usd, error")

# A project prompt asset: an inline JSON schema, two text blocks (one with data), one image slot.
LABEL_ASSET = """\
description: Label one image.
family: label
function: label_image
inputs:
  note: text
  image: image
system_prompt: |
  You label images for the test suite.
user_prompt:
  - text: "Note: {{ note }}"
  - image: {source: image}
  - text: 'Answer as JSON: {"label": "<word>", "count": <int>}'
output_schema:
  name: LabelOutput
  json_schema:
    type: object
    properties:
      label: {type: string}
      count: {type: integer, minimum: 0}
    required: [label, count]
"""
LABEL_ANSWER = '{"label": "cat", "count": 2}'  # a valid answer to LABEL_ASSET
LABEL_STRICT_SCHEMA = {"type": "object", "properties": {"label": {"type": "string"},
                                                        "count": {"type": "integer", "minimum": 0}},
                       "required": ["label", "count"], "additionalProperties": False}  # as the APIs receive it


def project_yml(server: LocalVLMServer | None, *, default: str = "gw", backends: str = "", extra: str = "",
                gw: str = "", gm: str = "") -> str:
    """project.yml with an openai backend `gw` and a gemini backend `gm`, both pointing at `server`.

    `gw` / `gm` are extra flow-mapping entries ("model: x, output_retries: 1") that replace the defaults."""
    lines = ["name: vlmtest", "threads: 2", f"vlm: {{backend: {default}}}", "backends:"]
    if server is not None:
        for name, kind, url, model, more in (("gw", "openai", server.openai_base_url, "gpt-test", gw),
                                              ("gm", "gemini", server.gemini_base_url, "gem-test", gm)):
            entries = {"type": kind, "base_url": f'"{url}"', "model": model, "backoff_initial_s": "0.01",
                       "backoff_max_s": "5"}
            for item in (part for part in more.split(",") if part.strip()):
                key, _, value = item.partition(":")
                entries[key.strip()] = value.strip()
            lines.append(f"  {name}: {{" + ", ".join(f"{k}: {v}" for k, v in entries.items()) + "}")
    lines += [f"  {line}" for line in backends.splitlines() if line.strip()]
    return "\n".join(lines) + "\n" + extra


def label_model(sql_call: str = "label_image(note, image)", *, materialized: str = "table",
                rows: Iterable[tuple[str, str]] = (("hello", "images/scene.png"),), config: str = "") -> str:
    values = ", ".join(f"('{note}', '{image}')" for note, image in rows)
    extra = f", {config}" if config else ""
    return (f"{{{{ config(materialized='{materialized}'{extra}) }}}}\n"
            f"select note, image, {sql_call} as r from (values {values}) t(note, image)\n")


def copy_scene(project: ProjectDir, rel: str = "images/scene.png", source: Path = SCENE) -> Path:
    target = project.path(rel)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


def fixed(text: str) -> Callable[[ParsedRequest], str]:
    return lambda _request: text


def ledger(project: ProjectDir, where: str = "true") -> list[dict[str, Any]]:
    with project.db() as con:
        relation = con.sql(f"select {LEDGER_COLUMNS} from dataproj_calls where {where} order by called_at")
        return [dict(zip(relation.columns, row, strict=True)) for row in relation.fetchall()]


def struct_rows(project: ProjectDir, table: str, column: str = "r", order: str = "note") -> list[dict[str, Any]]:
    """The STRUCT column of a built table, one dict per row."""
    return [row[0] for row in project.rows(f"select {column} from {table} order by {order}")]


# ---- edited images, made with Pillow from a sample scene ------------------------------------------------


def red_circle(image: Image.Image, box: tuple[int, int, int, int] = (150, 150, 200, 200)) -> Image.Image:
    edited = image.copy()
    ImageDraw.Draw(edited).ellipse(box, fill=(220, 30, 30))
    return edited


def brightness_shift(image: Image.Image, delta: int = 45) -> Image.Image:
    return image.point(lambda v: max(0, min(255, v - delta)))


def make_edits(folder: Path, source: Path = SCENE) -> dict[str, Path]:
    """source / faithful (a red circle added) / unfaithful (the same circle, with everything around it darkened by
    45 levels) / failed (an unchanged copy)."""
    folder.mkdir(parents=True, exist_ok=True)
    with Image.open(source) as opened:
        original = opened.convert("RGB")
    images = {"source": original, "faithful": red_circle(original),
              "unfaithful": red_circle(brightness_shift(original)), "failed": original.copy()}
    paths = {}
    for name, image in images.items():
        paths[name] = folder / f"{name}.png"
        image.save(paths[name], format="PNG")
    return paths


class TimedServer(LocalVLMServer):
    """A LocalVLMServer that also notes when each request arrived (time.monotonic())."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.arrivals: list[float] = []

    def _record(self, request: ParsedRequest) -> None:
        self.arrivals.append(time.monotonic())
        super()._record(request)

    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.arrivals, self.arrivals[1:], strict=False)]
