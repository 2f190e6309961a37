"""Prompt assets: prompts/<prompt_id>/<version>.yaml, as in the judge modules' PromptAssetStore.

An asset has a system prompt, user prompt blocks (Jinja text, or image slots filled from arguments), the
SQL arguments it takes, an output schema (inline JSON schema or a registered pydantic model), and the box
convention it asks for. Values from data are passed to Jinja as data and never rendered as templates, so
metadata that contains `{{ ... }}` stays inert.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..config import validate
from ..errors import ConfigError
from ..yamlio import load_yaml
from .boxes import CONVENTIONS
from .schema import model_from_json_schema

ENGINE_ASSETS = Path(__file__).parent / "assets"
INPUT_TYPES = ("text", "integer", "number", "boolean", "json", "text[]", "image", "images")


class ImageSlot(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str  # the argument holding an image path (or a list of them)
    index: int | None = None  # an item of a list argument


class PromptBlock(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str | None = None
    image: ImageSlot | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> PromptBlock:
        if (self.text is None) == (self.image is None):
            raise ValueError("a user_prompt block is either `text:` or `image:`")
        return self


class OutputSchema(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    json_schema: dict[str, Any] | None = None  # inline JSON schema
    model: str | None = None  # or a pydantic model the engine registers (see vlm.outputs)

    @model_validator(mode="after")
    def _one_source(self) -> OutputSchema:
        if (self.json_schema is None) == (self.model is None):
            raise ValueError("output_schema needs exactly one of `json_schema:` or `model:`")
        return self


class PromptAssetFile(BaseModel):
    """The YAML of one prompt asset."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    family: str  # what the offline backend answers (and which judge semantics apply)
    function: str | None = None  # SQL function name; default: the prompt id's last segment
    inputs: dict[str, Literal["text", "integer", "number", "boolean", "json", "text[]", "image", "images"]]
    system_prompt: str = ""
    user_prompt: list[PromptBlock]
    output_schema: OutputSchema
    box_convention: Literal["pixel_xyxy", "norm1000_xyxy", "gemini_yxyx"] | None = None
    box_fields: list[str] = Field(default_factory=list)  # paths like "groundings[].bboxes[]"
    boxes_on: str | None = None  # the image argument the boxes refer to (default: the first image argument)
    parameters: dict[str, Any] = Field(default_factory=dict)  # e.g. temperature
    metadata: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True)
class PromptAsset:
    prompt_id: str
    version: str
    path: Path
    spec: PromptAssetFile
    digest: str  # of the file's bytes: part of every cached call's key

    @property
    def function_name(self) -> str:
        return self.spec.function or re.sub(r"\W", "_", self.prompt_id.split("/")[-1])

    @cached_property
    def output_model(self) -> type[BaseModel]:
        from .outputs import registered_model

        schema = self.spec.output_schema
        if schema.model is not None:
            return registered_model(schema.model, self.path)
        return model_from_json_schema(schema.name, schema.json_schema or {})

    @property
    def image_inputs(self) -> list[str]:
        return [name for name, kind in self.spec.inputs.items() if kind in ("image", "images")]

    @cached_property
    def _templates(self) -> tuple[Any, list[Any]]:
        """Compiled once per asset: compiling Jinja per call would cost more than the rest of the request."""
        try:
            system = _ENV.from_string(self.spec.system_prompt) if self.spec.system_prompt else None
            blocks = [_ENV.from_string(b.text) if b.text is not None else b.image for b in self.spec.user_prompt]
        except TemplateError as err:
            raise ConfigError(f"prompt {self.prompt_id}/{self.version}: {err}", path=self.path) from None
        return system, blocks

    def render(self, values: dict[str, Any]) -> tuple[str, list[str | tuple[str, str]]]:
        """(system text, user parts): a part is text, or ("image", path)."""
        system_template, blocks = self._templates
        variables = {name: _as_data(kind, values.get(name)) for name, kind in self.spec.inputs.items()}
        try:
            system = system_template.render(variables) if system_template is not None else ""
            parts: list[str | tuple[str, str]] = []
            for block in blocks:
                if isinstance(block, ImageSlot):
                    parts += [("image", p) for p in _slot_paths(block, values)]
                else:
                    parts.append(block.render(variables))
        except TemplateError as err:
            raise ConfigError(f"prompt {self.prompt_id}/{self.version}: {err}", path=self.path) from None
        return system, parts


def _environment() -> SandboxedEnvironment:
    env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
    env.filters["json"] = lambda value: json.dumps(value, ensure_ascii=False, sort_keys=True)
    return env


_ENV = _environment()


def _as_data(kind: str, value: Any) -> Any:
    if kind == "json" and isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _slot_paths(slot: ImageSlot, values: dict[str, Any]) -> list[str]:
    value = values.get(slot.source)
    if value is None:
        return []
    if isinstance(value, list):
        chosen = [value[slot.index]] if slot.index is not None and slot.index < len(value) else (
            value if slot.index is None else [])
        return [v for v in chosen if v is not None]
    return [value]


class PromptStore:
    """The engine's assets overlaid by the project's prompts/ (same id and version: the project wins)."""

    def __init__(self, project_prompts: Path | None) -> None:
        self.assets: dict[str, dict[str, PromptAsset]] = {}
        for root in (ENGINE_ASSETS, project_prompts):
            if root is not None and root.is_dir():
                for path in sorted(root.rglob("*.yaml")):
                    asset = _load_asset(path, root)
                    self.assets.setdefault(asset.prompt_id, {})[asset.version] = asset

    def versions(self, prompt_id: str) -> list[str]:
        return sorted(self.assets.get(prompt_id, {}), key=_natural)

    def get(self, prompt_id: str, version: str | None = None) -> PromptAsset:
        versions = self.versions(prompt_id)
        if not versions:
            import difflib

            close = difflib.get_close_matches(prompt_id, list(self.assets), n=1)
            raise ConfigError(f"no prompt asset {prompt_id!r}",
                              hint=f"did you mean {close[0]!r}?" if close else "add prompts/<id>/<version>.yaml")
        chosen = version or versions[-1]
        if chosen not in self.assets[prompt_id]:
            raise ConfigError(f"prompt {prompt_id!r} has no version {chosen!r}", hint=f"versions: {versions}")
        return self.assets[prompt_id][chosen]

    def latest(self) -> list[PromptAsset]:
        return [self.get(pid) for pid in sorted(self.assets)]


def _natural(version: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", version)]


def _load_asset(path: Path, root: Path) -> PromptAsset:
    raw = load_yaml(path)
    spec = validate(PromptAssetFile, raw, path=path)
    prompt_id = path.parent.relative_to(root).as_posix()
    _check_asset(spec, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return PromptAsset(prompt_id=prompt_id, version=path.stem, path=path, spec=spec, digest=digest)


def _check_asset(spec: PromptAssetFile, path: Path) -> None:
    for block in spec.user_prompt:
        if block.image is not None and block.image.source not in spec.inputs:
            raise ConfigError(f"image slot source {block.image.source!r} is not one of the inputs {list(spec.inputs)}",
                              path=path)
    if spec.box_fields and spec.box_convention is None:
        raise ConfigError("box_fields needs box_convention", path=path,
                          hint="one of " + ", ".join(CONVENTIONS))
    if not any(kind in ("image", "images") for kind in spec.inputs.values()) and spec.box_fields:
        raise ConfigError("box_fields need an image input to size the boxes", path=path)
