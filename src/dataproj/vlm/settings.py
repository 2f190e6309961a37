"""VLM backend settings from project.yml (`vlm:` and `backends:`), validated with pydantic.

Secrets never live in these models' dumps: keys come from the environment variable a backend names, or from
a config key starting with `_`, which is excluded from every dump (manifest, cache key, logs).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from ..config import validate
from ..errors import ConfigError


class _Backend(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    # limits shared by every backend (see runtime.limits.BackendLimits)
    max_workers: int = Field(8, ge=1, le=256)
    rpm: float | None = Field(None, gt=0)
    tpm: float | None = Field(None, gt=0)
    max_attempts: int = Field(4, ge=1, le=20)
    backoff_initial_s: float = Field(1.0, ge=0)
    backoff_max_s: float = Field(60.0, ge=0)
    output_retries: int = Field(2, ge=0, le=10)  # re-asks after output that is not valid JSON for the schema
    api_key: str | None = Field(None, alias="_api_key", exclude=True, repr=False)

    def answer_config(self) -> dict[str, Any]:
        """The settings that change a model's answer: part of every cached call's key."""
        return {k: v for k, v in self.model_dump(mode="json").items() if k in self._answer_keys}

    _answer_keys: frozenset[str] = PrivateAttr(default=frozenset({"type", "model", "temperature"}))


class OpenAIBackend(_Backend):
    type: Literal["openai"]
    base_url: str | None = None  # None: the SDK's default (api.openai.com); any OpenAI-compatible server works
    model: str = "gpt-4o-mini"
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = 0.7
    max_tokens: int = 4096
    timeout_s: float = 60.0
    image_detail: Literal["low", "high", "auto"] = "low"
    structured_output: Literal["json_schema", "json_object", "text"] = "json_schema"
    _answer_keys: frozenset[str] = PrivateAttr(
        default=frozenset({"type", "base_url", "model", "temperature", "max_tokens", "image_detail"}))

    def key(self) -> str | None:
        return self.api_key or os.environ.get(self.api_key_env)


class GeminiBackend(_Backend):
    type: Literal["gemini"]
    base_url: str | None = None  # a gateway in front of the Gemini API
    model: str = "gemini-3.1-flash-lite-preview"
    api_key_env: str = "GOOGLE_API_KEY"
    media_resolution: Literal["MEDIA_RESOLUTION_LOW", "MEDIA_RESOLUTION_MEDIUM", "MEDIA_RESOLUTION_HIGH"] = (
        "MEDIA_RESOLUTION_LOW")
    temperature: float = 0.3
    max_output_tokens: int = 8192
    timeout_s: float = 120.0
    _answer_keys: frozenset[str] = PrivateAttr(
        default=frozenset({"type", "model", "temperature", "max_output_tokens", "media_resolution"}))

    def key(self) -> str | None:
        return self.api_key or os.environ.get(self.api_key_env)


class OfflineBackend(_Backend):
    """Deterministic answers from image analysis (scikit-image): no key, no network."""

    type: Literal["offline"]
    model: str = "offline-skimage-1"
    max_workers: int = Field(2, ge=1, le=256)  # CPU-bound analysis: more threads than cores gains nothing


class PlainBackend(_Backend):
    """Limits for a user function's backend (no VLM behind it)."""

    type: Literal["plain"] = "plain"


VLMBackend = OpenAIBackend | GeminiBackend | OfflineBackend
AnyBackend = Annotated[OpenAIBackend | GeminiBackend | OfflineBackend | PlainBackend, Field(discriminator="type")]


class VLMDefaults(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: str = "offline"  # the backend prompts use unless a prompt or a model overrides it


class PromptOverride(BaseModel):
    """project.yml `prompts: {<prompt_id>: {...}}`: which version, backend, model and parameters to use."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str | None = None
    backend: str | None = None
    model: str | None = None
    temperature: float | None = None


DEFAULT_BACKENDS: dict[str, dict[str, Any]] = {
    "offline": {"type": "offline"},
    "openai": {"type": "openai"},
    "gemini": {"type": "gemini"},
}


def load_backends(config: dict[str, Any], project_file: Path) -> dict[str, AnyBackend]:
    """`backends:` merged over the defaults; an entry without `type` is a plain limits group."""
    from pydantic import TypeAdapter

    adapter = TypeAdapter(AnyBackend)
    merged = {**{k: dict(v) for k, v in DEFAULT_BACKENDS.items()}}
    for name, values in (config or {}).items():
        if not isinstance(values, dict):
            raise ConfigError(f"backends.{name} must be a mapping", path=project_file)
        base = merged.get(name, {})
        merged[name] = {**base, **values} if values.get("type", base.get("type")) == base.get("type") else dict(values)
        merged[name].setdefault("type", "plain")
    backends = {}
    for name, values in merged.items():
        try:
            backends[name] = adapter.validate_python(values)
        except Exception as err:  # pydantic.ValidationError: name the backend and the key
            first = err.errors()[0] if hasattr(err, "errors") else {"loc": (), "msg": str(err)}
            loc = ".".join(str(p) for p in first["loc"][1:]) or "type"
            hint = None
            if first.get("type") == "extra_forbidden":
                kind = values.get("type", "plain")
                cls = {"openai": OpenAIBackend, "gemini": GeminiBackend, "offline": OfflineBackend}.get(kind,
                                                                                                       PlainBackend)
                hint = "allowed keys: " + ", ".join(sorted(f.alias or n for n, f in cls.model_fields.items()))
            raise ConfigError(f"backends.{name}.{loc}: {first['msg']}", path=project_file, hint=hint) from None
    return backends


def load_vlm_defaults(config: dict[str, Any], project_file: Path) -> VLMDefaults:
    return validate(VLMDefaults, config or {}, path=project_file, prefix="vlm")


def load_prompt_overrides(config: dict[str, Any], project_file: Path) -> dict[str, PromptOverride]:
    return {pid: validate(PromptOverride, values or {}, path=project_file, prefix=f"prompts.{pid}")
            for pid, values in (config or {}).items()}
