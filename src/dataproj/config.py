"""Pydantic models of project.yml and of node configs; unknown keys are errors naming their path."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ConfigError
from .yamlio import line_of, load_yaml

Materialized = Literal["view", "table", "incremental", "ephemeral"]
ExportFormat = Literal["jsonl", "parquet"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelConfig(_Strict):
    """Config of a SQL or Python model (project.yml `models:` tree, YAML `config:`, `{{ config() }}`)."""

    enabled: bool = True
    materialized: Materialized = "view"
    tags: tuple[str, ...] = ()
    export: tuple[ExportFormat, ...] = ()
    export_path: str | None = None  # file path under the exports folder, without extension (default: the name)
    unique_key: str | tuple[str, ...] | None = None
    incremental_strategy: Literal["append", "delete+insert"] | None = None
    failure_budget: float = Field(0.2, ge=0, le=1)  # fraction of failed function calls that fails the node
    vlm_backend: str | None = None  # prompt functions in this model use this backend instead of the default
    refresh_cache: bool = False  # recompute (and re-store) the cached calls this model makes, like --refresh-cache
    max_workers: int | None = Field(None, ge=1)  # at most this many of the model's I/O calls at once
    description: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)


class SeedConfig(_Strict):
    """Config of a seed file or image folder (project.yml `seeds:` tree, YAML `config:`)."""

    enabled: bool = True
    tags: tuple[str, ...] = ()
    export: tuple[ExportFormat, ...] = ()
    export_path: str | None = None
    column_types: dict[str, str] = Field(default_factory=dict)
    format: Literal["auto", "images"] = "auto"
    extensions: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
    description: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)


class TestConfig(_Strict):
    """Config of a data test (YAML `config:` of a test, or the `tests:` block of project.yml)."""

    enabled: bool = True
    severity: Literal["error", "warn"] = "error"
    tags: tuple[str, ...] = ()
    where: str | None = None
    store_failures_limit: int = Field(5, ge=0)


class Paths(_Strict):
    models: str = "models"
    seeds: str = "seeds"
    macros: str = "macros"
    tests: str = "tests"
    udfs: str = "udfs"
    prompts: str = "prompts"
    target: str = "warehouse/target"
    exports: str = "warehouse/exports"
    state: str = "warehouse/state"
    cache: str = "warehouse/cache"


class ProjectConfig(_Strict):
    """project.yml."""

    name: str
    version: str = "0.1.0"
    warehouse: str = "warehouse/dataproj.duckdb"
    threads: int = Field(4, ge=1, le=64)
    vars: dict[str, Any] = Field(default_factory=dict)
    paths: Paths = Field(default_factory=Paths)
    models: dict[str, Any] = Field(default_factory=dict)
    seeds: dict[str, Any] = Field(default_factory=dict)
    tests: dict[str, Any] = Field(default_factory=dict)
    backends: dict[str, Any] = Field(default_factory=dict)
    vlm: dict[str, Any] = Field(default_factory=dict)
    prompts: dict[str, Any] = Field(default_factory=dict)
    prices: dict[str, Any] = Field(default_factory=dict)


ConfigT = TypeVar("ConfigT", bound=BaseModel)


def validate(cls: type[ConfigT], data: Any, *, path: Path, prefix: str = "", source: Any = None) -> ConfigT:
    """Validate `data` as `cls`; the first problem becomes a ConfigError naming key path and line."""
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        raise _config_error(cls, err, path=path, prefix=prefix,
                            source=source if source is not None else data) from None


def _config_error(cls: type[BaseModel], err: ValidationError, *, path: Path, prefix: str,
                  source: Any) -> ConfigError:
    first = err.errors()[0]
    loc = [str(part) for part in first["loc"]]
    key_path = ".".join(p for p in [prefix, *loc] if p)
    line = _line_of_loc(source, first["loc"])
    if first["type"] == "extra_forbidden":
        owner = _model_at(cls, first["loc"][:-1])
        allowed = ", ".join(sorted(owner.model_fields)) if owner else ""
        return ConfigError(f"unknown key {key_path!r}", path=path, line=line,
                           hint=f"allowed keys here: {allowed}" if allowed else None)
    return ConfigError(f"{key_path}: {first['msg']} (got {first.get('input')!r})", path=path, line=line)


def _line_of_loc(source: Any, loc: tuple[Any, ...]) -> int | None:
    line = None
    node = source
    for part in loc:
        if isinstance(node, dict) and part in node:
            line = line_of(node, part) or line
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            break
    return line


def _model_at(cls: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model a location points into, stepping through list items (`models.0.columns.1`)."""
    current: Any = cls
    for part in loc:
        if isinstance(part, int):
            continue  # an item of the list field stepped into before
        field = current.model_fields.get(part) if isinstance(current, type) else None
        if field is None:
            return None
        current = field.annotation
        if typing.get_origin(current) is list:
            current = typing.get_args(current)[0]
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
    return current


def load_project_config(project_dir: Path) -> tuple[ProjectConfig, dict[str, Any]]:
    """Read and validate project.yml in `project_dir`; also returns the raw mapping (it knows key lines)."""
    path = project_dir / "project.yml"
    if not path.is_file():
        raise ConfigError("no project.yml found", path=project_dir,
                          hint="run dataproj from a project folder, pass --project-dir, or `dataproj init`")
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError("project.yml must be a mapping of keys (name, vars, paths, models, ...)", path=path)
    config = validate(ProjectConfig, data, path=path)
    validate(TestConfig, data.get("tests") or {}, path=path, prefix="tests", source=data.get("tests"))
    return config, data


def split_config_tree(tree: dict[str, Any], config_cls: type[BaseModel], *, path: Path,
                      key_path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split one level of a dbt-style folder tree into (`+key` configs, sub-folder trees).

    A key without `+` that names a config field and holds a non-mapping value is also a config,
    as in dbt; anything else that is not a mapping is an error.
    """
    configs: dict[str, Any] = {}
    children: dict[str, Any] = {}
    for key, value in tree.items():
        name = str(key)
        if name.startswith("+"):
            field = name[1:]
            if field not in config_cls.model_fields:
                raise ConfigError(f"unknown config key {key_path}.{name}", path=path, line=line_of(tree, key),
                                  hint="allowed: " + ", ".join("+" + f for f in sorted(config_cls.model_fields)))
            configs[field] = value
        elif isinstance(value, dict):
            children[name] = value
        elif name in config_cls.model_fields:
            configs[name] = value
        else:
            raise ConfigError(f"unknown key {key_path}.{name}", path=path, line=line_of(tree, key),
                              hint="a folder name maps to a block; config keys start with '+': "
                              + ", ".join("+" + f for f in sorted(config_cls.model_fields)))
    return configs, children


def merge_config(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """dbt's merge: tags accumulate, meta merges, everything else is replaced."""
    merged = dict(base)
    for key, value in override.items():
        if key == "tags":
            tags = [value] if isinstance(value, str) else list(value or [])
            merged[key] = list(dict.fromkeys([*merged.get(key, []), *tags]))
        elif key == "meta" and isinstance(value, dict):
            merged[key] = {**merged.get(key, {}), **value}
        else:
            merged[key] = value
    return merged
