"""Clients for the VLM backends: the official openai and google-genai SDKs, and the offline analyser.

A client turns one rendered request into the model's text and its real usage numbers; retries on 429 / 5xx
/ timeouts happen around it (runtime.limits), validation and re-asking happen above it (vlm.functions).
"""

from __future__ import annotations

import base64
import json
import mimetypes
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .settings import GeminiBackend, OfflineBackend, OpenAIBackend, VLMBackend


@dataclass(frozen=True)
class VLMRequest:
    system: str
    parts: tuple[str | tuple[str, str], ...]  # text, or ("image", path or URL)
    schema: dict[str, Any] | None  # strict JSON schema of the answer
    schema_name: str
    family: str
    box_convention: str | None = None
    temperature: float | None = None  # a prompt's own parameter, over the backend's


@dataclass(frozen=True)
class VLMReply:
    text: str
    model: str
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0


def make_client(settings: VLMBackend) -> Any:
    if isinstance(settings, OpenAIBackend):
        return OpenAIClient(settings)
    if isinstance(settings, GeminiBackend):
        return GeminiClient(settings)
    if isinstance(settings, OfflineBackend):
        return OfflineClient(settings)
    raise ConfigError(f"backend type {settings.type!r} has no VLM client")


def _image_bytes(path: str) -> tuple[bytes, str]:
    data = Path(path).read_bytes()
    mime = mimetypes.guess_type(path)[0] or "image/png"
    return data, mime


def _is_url(path: str) -> bool:
    return path.startswith(("http://", "https://"))


class OpenAIClient:
    """Chat completions on any OpenAI-compatible endpoint (OpenAI, vLLM, NIM)."""

    def __init__(self, settings: OpenAIBackend) -> None:
        import openai

        key = settings.key()
        if not key and settings.base_url is None:
            raise ConfigError(f"the openai backend needs an API key: set {settings.api_key_env}",
                              hint="or point backends.openai.base_url at a server that needs none")
        self.settings = settings
        self.client = openai.OpenAI(api_key=key or "not-needed", base_url=settings.base_url,
                                    timeout=settings.timeout_s, max_retries=0)
        self._schema_supported = settings.structured_output == "json_schema"
        self._lock = threading.Lock()

    def complete(self, request: VLMRequest) -> VLMReply:
        import openai

        messages = self._messages(request, with_schema_text=not self._schema_supported)
        kwargs: dict[str, Any] = {"model": self.settings.model, "messages": messages,
                                  "temperature": request.temperature if request.temperature is not None
                                  else self.settings.temperature, "max_tokens": self.settings.max_tokens}
        if request.schema is not None and self._schema_supported:
            kwargs["response_format"] = {"type": "json_schema", "json_schema": {
                "name": request.schema_name, "schema": request.schema, "strict": True}}
        elif request.schema is not None and self.settings.structured_output != "text":
            kwargs["response_format"] = {"type": "json_object"}
        try:
            response = self.client.chat.completions.create(**kwargs)
        except openai.BadRequestError as err:
            if "response_format" in kwargs and _mentions_schema(err):
                with self._lock:  # this server has no structured output: ask in words, parse JSON from text
                    self._schema_supported = False
                return self.complete(request)
            raise
        return _openai_reply(response, self.settings.model)

    def _messages(self, request: VLMRequest, *, with_schema_text: bool) -> list[dict[str, Any]]:
        system = request.system
        if with_schema_text and request.schema is not None:
            system += ("\n\nAnswer with one JSON object only, matching this JSON schema:\n"
                       + json.dumps(request.schema))
        content: list[dict[str, Any]] = []
        for part in request.parts:
            if isinstance(part, str):
                content.append({"type": "text", "text": part})
            else:
                content.append({"type": "image_url", "image_url": {"url": self._image_url(part[1]),
                                                                   "detail": self.settings.image_detail}})
        messages = [{"role": "system", "content": system}] if system else []
        return [*messages, {"role": "user", "content": content}]

    @staticmethod
    def _image_url(path: str) -> str:
        if _is_url(path):
            return path
        data, mime = _image_bytes(path)
        return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def _mentions_schema(err: Exception) -> bool:
    text = str(err).lower()
    return "response_format" in text or "json_schema" in text or "structured" in text


def _openai_reply(response: Any, model: str) -> VLMReply:
    text = response.choices[0].message.content or ""
    usage = response.usage
    cached = 0
    if usage is not None and getattr(usage, "prompt_tokens_details", None) is not None:
        cached = usage.prompt_tokens_details.cached_tokens or 0
    return VLMReply(text=text, model=response.model or model,
                    input_tokens=usage.prompt_tokens if usage else 0, cached_input_tokens=cached,
                    output_tokens=usage.completion_tokens if usage else 0)


class GeminiClient:
    """generateContent through google-genai, with an optional base URL for gateways."""

    def __init__(self, settings: GeminiBackend) -> None:
        from google import genai
        from google.genai import types

        key = settings.key()
        if not key:
            raise ConfigError(f"the gemini backend needs an API key: set {settings.api_key_env}")
        self.settings = settings
        self.types = types
        options = types.HttpOptions(base_url=settings.base_url, timeout=int(settings.timeout_s * 1000))
        self.client = genai.Client(api_key=key, http_options=options)

    def complete(self, request: VLMRequest) -> VLMReply:
        types = self.types
        parts = []
        for part in request.parts:
            if isinstance(part, str):
                parts.append(types.Part.from_text(text=part))
            elif _is_url(part[1]):
                parts.append(types.Part.from_uri(file_uri=part[1], mime_type=mimetypes.guess_type(part[1])[0]))
            else:
                data, mime = _image_bytes(part[1])
                parts.append(types.Part.from_bytes(data=data, mime_type=mime))
        config = types.GenerateContentConfig(
            system_instruction=request.system or None,
            temperature=request.temperature if request.temperature is not None else self.settings.temperature,
            max_output_tokens=self.settings.max_output_tokens, media_resolution=self.settings.media_resolution,
            response_mime_type="application/json" if request.schema is not None else None,
            response_json_schema=request.schema)
        response = self.client.models.generate_content(
            model=self.settings.model, contents=[types.Content(role="user", parts=parts)], config=config)
        usage = response.usage_metadata
        return VLMReply(text=response.text or "", model=getattr(response, "model_version", None) or self.settings.model,
                        input_tokens=(usage.prompt_token_count or 0) if usage else 0,
                        cached_input_tokens=(usage.cached_content_token_count or 0) if usage else 0,
                        # thinking tokens are billed as output
                        output_tokens=((usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0))
                        if usage else 0)


class OfflineClient:
    """Answers from the images themselves (scikit-image), deterministically, for the built-in prompt families."""

    def __init__(self, settings: OfflineBackend) -> None:
        self.settings = settings

    def complete(self, request: VLMRequest) -> VLMReply:
        from .offline import answer

        texts = [p for p in request.parts if isinstance(p, str)]
        images = [p[1] for p in request.parts if not isinstance(p, str)]
        value = answer(request.family, request.system, texts, images, request.schema, request.box_convention)
        text = json.dumps(value, ensure_ascii=False)
        prompt = len(request.system) + sum(len(t) for t in texts)
        return VLMReply(text=text, model=self.settings.model, input_tokens=-(-prompt // 4) + 258 * len(images),
                        output_tokens=-(-len(text) // 4))
