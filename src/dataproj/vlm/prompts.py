"""Prompt assets: prompts/<prompt_id>/<version>.yaml, as in the judge modules' PromptAssetStore.

An asset has a system prompt, user prompt blocks (Jinja text, or image slots filled from arguments), the
SQL arguments it takes, an output schema (inline JSON schema, a Jinja template of one rendered with the
project's vars, or a registered pydantic model), checks of an answer against the call's inputs, and the box
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
    # inline JSON schema, or a Jinja template of its YAML rendered with var() (e.g. enums from a taxonomy)
    json_schema: dict[str, Any] | str | None = None
    model: str | None = None  # or a pydantic model the engine registers (see vlm.outputs)

    @model_validator(mode="after")
    def _one_source(self) -> OutputSchema:
        if (self.json_schema is None) == (self.model is None):
            raise ValueError("output_schema needs exactly one of `json_schema:` or `model:`")
        return self


class OutputCheck(BaseModel):
    """A rule an answer must follow that its schema cannot say. Paths look like "judgments[].image_id"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["covers", "distinct"]  # covers: the answer names each `input` value exactly once
    answer: str
    input: str | None = None  # for covers: a path into one of the call's arguments

    @model_validator(mode="after")
    def _input_for_covers(self) -> OutputCheck:
        if (self.kind == "covers") != (self.input is not None):
            raise ValueError("`input:` is required by kind covers and allowed only there")
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
    output_checks: list[OutputCheck] = Field(default_factory=list)
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
    file_digest: str  # of the file's bytes
    variables: dict[str, Any] | None = None  # the project's vars, for an output schema template

    @cached_property
    def digest(self) -> str:
        """Part of every cached call's key: the file and the output schema it renders to."""
        schema = self.json_schema
        if schema is None or isinstance(self.spec.output_schema.json_schema, dict):
            return self.file_digest
        rendered = json.dumps(schema, sort_keys=True).encode()
        return hashlib.sha256(self.file_digest.encode() + rendered).hexdigest()[:16]

    @cached_property
    def json_schema(self) -> dict[str, Any] | None:
        """The inline output schema, its template rendered with the project's vars."""
        template = self.spec.output_schema.json_schema
        if not isinstance(template, str):
            return template
        return render_schema(template, self.variables, f"prompt {self.prompt_id}/{self.version}", self.path)

    @property
    def function_name(self) -> str:
        return self.spec.function or re.sub(r"\W", "_", self.prompt_id.split("/")[-1])

    @cached_property
    def output_model(self) -> type[BaseModel]:
        from .outputs import registered_model

        schema = self.spec.output_schema
        if schema.model is not None:
            return registered_model(schema.model, self.path)
        return model_from_json_schema(schema.name, self.json_schema or {})

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
        variables = {name: as_data(kind, values.get(name)) for name, kind in self.spec.inputs.items()}
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


def render_schema(template: str, variables: dict[str, Any] | None, what: str, path: Path) -> dict[str, Any]:
    """An output schema template: Jinja over YAML, with var(name[, default]) reading the project's vars."""
    import yaml

    known = variables or {}
    missing = object()

    def var(name: str, default: Any = missing) -> Any:
        if name in known:
            return known[name]
        if default is not missing:
            return default
        raise ConfigError(f"{what}: output_schema uses var({name!r}), which is not set", path=path,
                          hint=f"set `vars: {{{name}: ...}}` in project.yml")

    try:
        text = _ENV.from_string(template).render(var=var)
        schema = yaml.safe_load(text)
    except TemplateError as err:
        raise ConfigError(f"{what}: output_schema template: {err}", path=path) from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{what}: output_schema template does not render to YAML: {err}", path=path,
                          hint="the rendered text:\n" + text) from None
    if not isinstance(schema, dict):
        raise ConfigError(f"{what}: output_schema template renders to {type(schema).__name__}, not a JSON schema "
                          "object", path=path)
    return schema


def as_data(kind: str, value: Any) -> Any:
    """An argument as the prompt (and its output checks) see it: a json argument parsed, others as given."""
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

    def __init__(self, project_prompts: Path | None, variables: dict[str, Any] | None = None) -> None:
        self.assets: dict[str, dict[str, PromptAsset]] = {}
        for root in (ENGINE_ASSETS, project_prompts):
            if root is not None and root.is_dir():
                for path in sorted(root.rglob("*.yaml")):
                    asset = _load_asset(path, root, variables)
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


def _load_asset(path: Path, root: Path, variables: dict[str, Any] | None) -> PromptAsset:
    raw = load_yaml(path)
    spec = validate(PromptAssetFile, raw, path=path)
    prompt_id = path.parent.relative_to(root).as_posix()
    _check_asset(spec, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return PromptAsset(prompt_id=prompt_id, version=path.stem, path=path, spec=spec, file_digest=digest,
                       variables=variables)


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
    for check in spec.output_checks:
        source = (check.input or "").split("[]")[0].split(".")[0]
        if check.input is not None and source not in spec.inputs:
            raise ConfigError(f"output_checks: input path {check.input!r} does not start with one of the inputs "
                              f"{list(spec.inputs)}", path=path)
        if check.input is not None and spec.inputs[source] not in ("json", "text[]", "images"):
            raise ConfigError(f"output_checks: input {source!r} is {spec.inputs[source]}, not a list to cover",
                              path=path, hint="a covers check reads a json, text[] or images input")
