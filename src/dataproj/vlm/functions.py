"""Prompt assets as SQL functions: one function per asset (and per VLM backend, as `<name>__<backend>`),
returning the asset's output as a STRUCT with status, error and raw_response."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ..project import Project
from ..runtime.spec import FunctionSpec, build_spec
from ..runtime.types import ImagePath
from .calling import ClientPool, ask_until_valid, parse_output, request_for
from .prompts import PromptAsset, PromptStore
from .settings import PromptOverride, VLMBackend, load_backends, load_prompt_overrides, load_vlm_defaults

INPUT_HINTS: dict[str, Any] = {"text": str, "integer": int, "number": float, "boolean": bool, "json": str,
                               "text[]": list[str], "image": ImagePath, "images": list[ImagePath]}
VLM_TYPES = ("openai", "gemini", "offline")

FunctionMaker = Callable[[PromptAsset, str, VLMBackend, ClientPool, "float | None"], FunctionSpec]


def with_signature(func: Callable[..., Any], names: list[str]) -> Callable[..., Any]:
    """Give a generic `*args` callable the named signature the SQL function has."""
    func.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names])
    return func


def answer_config(asset: PromptAsset, backend: str, settings: VLMBackend, temperature: float | None) -> dict[str, Any]:
    """What changes an answer, and so a cached call's key: prompt (id, version, content), backend and model."""
    return {"prompt_id": asset.prompt_id, "prompt_version": asset.version, "prompt_digest": asset.digest,
            "backend": backend, **settings.answer_config(), "temperature_override": temperature}


def prompt_function(asset: PromptAsset, backend: str, settings: VLMBackend, pool: ClientPool,
                    temperature: float | None) -> FunctionSpec:
    names = list(asset.spec.inputs)

    def call(*args: Any) -> dict[str, Any]:
        values = dict(zip(names, args, strict=True))
        request = request_for(asset, values, temperature)
        data, raw = ask_until_valid(pool.get(backend, settings), request, settings.output_retries + 1,
                                    lambda text: parse_output(asset, text, values))
        return {**data, "raw_response": raw}

    hints = {n: INPUT_HINTS[kind] for n, kind in asset.spec.inputs.items()} | {"return": asset.output_model}
    return build_spec(with_signature(call, names), name=asset.function_name, kind="io", cached=True,
                      version=asset.version, backend=backend, hints=hints,
                      config=answer_config(asset, backend, settings, temperature))


def vlm_specs(project: Project, variables: dict[str, Any] | None = None) -> list[FunctionSpec]:
    """Every prompt asset's SQL function, in a variant per VLM backend; `<name>` means the default backend."""
    from .judges import JUDGE_MAKERS

    project_file = project.root / "project.yml"
    backends = load_backends(project.config.backends, project_file)
    defaults = load_vlm_defaults(project.raw_config.get("vlm") or {}, project_file)
    overrides = load_prompt_overrides(project.raw_config.get("prompts") or {}, project_file)
    vlm_backends = {name: b for name, b in backends.items() if b.type in VLM_TYPES}
    _check_backend(defaults.backend, vlm_backends, "vlm.backend", project_file)
    pool = ClientPool(vlm_backends)  # type: ignore[arg-type]
    store = PromptStore(project.dir("prompts"), project.config.vars if variables is None else variables)
    specs: list[FunctionSpec] = []
    for prompt_id in sorted(store.assets):
        override = overrides.get(prompt_id, PromptOverride())
        asset = store.get(prompt_id, override.version)
        default = override.backend or defaults.backend
        _check_backend(default, vlm_backends, f"prompts.{prompt_id}.backend", project_file)
        maker: FunctionMaker = JUDGE_MAKERS.get(asset.spec.family, prompt_function)
        for name, settings in vlm_backends.items():
            if name == default and override.model:
                settings = settings.model_copy(update={"model": override.model})
            spec = maker(asset, name, settings, pool, override.temperature)  # type: ignore[arg-type]
            specs.append(replace(spec, name=f"{asset.function_name}__{name}", alias=asset.function_name,
                                 default_variant=name == default))
    return specs


def _check_backend(name: str, backends: dict[str, Any], key: str, project_file: Any) -> None:
    if name not in backends:
        from ..errors import ConfigError

        raise ConfigError(f"{key}: no VLM backend named {name!r}", path=project_file,
                          hint="VLM backends: " + ", ".join(sorted(backends)))


def backend_limits(project: Project) -> dict[str, dict[str, Any]]:
    """Limits of every backend (defaults included), for the runtime's pools and rate limiters."""
    backends = load_backends(project.config.backends, project.root / "project.yml")
    return {name: backend.model_dump() for name, backend in backends.items()}
