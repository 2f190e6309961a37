"""The two VLM APIs on the wire, as the local server reads and writes them: OpenAI chat completions and Gemini
generateContent requests normalised into one ParsedRequest, and the completion, usage and error bodies each SDK
expects back. No HTTP here: see local_server.py.
"""

from __future__ import annotations

import base64
import binascii
import math
import time
from dataclasses import dataclass
from email.message import Message
from typing import Any
from urllib.parse import parse_qs, unquote, unquote_to_bytes

# Gemini bills a fixed 258 tokens for a small image; used for both APIs so estimates stay comparable.
IMAGE_TOKENS = 258
OPENAI_PATH = "/v1/chat/completions"


@dataclass(frozen=True)
class ParsedRequest:
    """One model call, normalised from either API so the answer function need not know which was used."""

    api: str  # "openai" | "gemini"
    model: str
    system: str
    texts: tuple[str, ...]
    images: tuple[bytes, ...]
    image_urls: tuple[str, ...]
    image_details: tuple[str, ...]
    schema: dict[str, Any] | None
    schema_name: str | None
    json_mode: bool
    temperature: float | None
    max_tokens: int | None
    media_resolution: str | None
    api_key: str | None
    body: dict[str, Any]


class RequestError(Exception):
    """An HTTP error to send back in the calling API's own error shape."""

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True)
class Reply:
    """What the HTTP layer writes: a status, a JSON body and optional Retry-After."""

    status: int
    body: dict[str, Any]
    retry_after: float | None = None


@dataclass(frozen=True)
class Route:
    """A recognised endpoint: which API it belongs to and, for Gemini, the model named in the path."""

    api: str
    model: str = ""


# --------------------------------------------------------------------------------------------------------
# Parsing helpers shared by both APIs


def _pick(mapping: dict[str, Any], *keys: str) -> Any:
    """First present key: the SDK sends camelCase, hand-written requests often snake_case."""
    for key in keys:
        if key in mapping:
            return mapping[key]
    return None


def as_dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RequestError(400, f"{what} must be a JSON object")
    return value


def _as_list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise RequestError(400, f"{what} must be a JSON array")
    return value


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def decode_base64(data: str) -> bytes:
    """Decode standard or URL-safe base64 (clients differ), tolerating missing padding."""
    cleaned = "".join(data.split())
    padded = cleaned + "=" * (-len(cleaned) % 4)
    try:
        if "-" in cleaned or "_" in cleaned:
            return base64.urlsafe_b64decode(padded)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RequestError(400, f"invalid base64 image data: {exc}") from exc


def decode_data_url(url: str) -> bytes:
    """Bytes of a ``data:`` URL (base64 or percent-encoded)."""
    header, sep, payload = url.partition(",")
    if not sep:
        raise RequestError(400, "malformed data URL: no ',' separator")
    if header.endswith(";base64"):
        return decode_base64(payload)
    return unquote_to_bytes(payload)


def extract_api_key(headers: Message, query: str) -> str | None:
    """The key from whichever place the client put it: OpenAI's bearer token, Gemini's header or ?key=."""
    auth = headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    goog = headers.get("x-goog-api-key")
    if goog:
        return goog
    keys = parse_qs(query).get("key")
    return keys[0] if keys else None


# --------------------------------------------------------------------------------------------------------
# OpenAI chat completions


def _openai_text(content: Any) -> str:
    """Text of a message whose content is a string or a list of parts (used for system messages)."""
    if isinstance(content, str):
        return content
    parts = _as_list(content, "message content")
    return "\n".join(p.get("text", "") for p in parts if isinstance(p, dict) and p.get("type") == "text")


class _Collected:
    """Mutable accumulators while walking message parts; frozen into a ParsedRequest at the end."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.images: list[bytes] = []
        self.image_urls: list[str] = []
        self.image_details: list[str] = []

    def add_url(self, url: str) -> None:
        if url.startswith("data:"):
            self.images.append(decode_data_url(url))
        else:
            # Remote images are recorded, never fetched: the server must work with no network.
            self.image_urls.append(url)


def _openai_user_part(part: Any, acc: _Collected) -> None:
    part = as_dict(part, "content part")
    kind = part.get("type")
    if kind == "text":
        acc.texts.append(str(part.get("text", "")))
    elif kind == "image_url":
        image = part.get("image_url")
        # Old clients send the URL as a bare string instead of {"url", "detail"}.
        image = {"url": image} if isinstance(image, str) else as_dict(image, "image_url")
        acc.add_url(str(image.get("url", "")))
        if image.get("detail") is not None:
            acc.image_details.append(str(image["detail"]))
    else:
        raise RequestError(400, f"unsupported content part type: {kind!r}")


def _openai_schema(response_format: Any) -> tuple[dict[str, Any] | None, str | None, bool]:
    """(schema, schema name, json mode) from ``response_format``."""
    if response_format is None:
        return None, None, False
    fmt = as_dict(response_format, "response_format")
    kind = fmt.get("type")
    if kind == "json_schema":
        spec = as_dict(fmt.get("json_schema"), "response_format.json_schema")
        return spec.get("schema"), spec.get("name"), True
    return None, None, kind == "json_object"


def parse_openai(body: dict[str, Any], api_key: str | None) -> ParsedRequest:
    """Normalise a chat-completions body. Only user messages contribute texts and images."""
    if body.get("stream"):
        raise RequestError(400, "streaming is not supported by the local server")
    system: list[str] = []
    acc = _Collected()
    for message in _as_list(body.get("messages"), "messages"):
        message = as_dict(message, "message")
        role, content = message.get("role"), message.get("content")
        if role in ("system", "developer"):
            system.append(_openai_text(content))
        elif role == "user" and isinstance(content, str):
            acc.texts.append(content)
        elif role == "user":
            for part in _as_list(content, "message content"):
                _openai_user_part(part, acc)
    schema, name, json_mode = _openai_schema(body.get("response_format"))
    max_tokens = _pick(body, "max_completion_tokens", "max_tokens")
    return ParsedRequest(
        api="openai", model=str(body.get("model", "")), system="\n".join(system),
        texts=tuple(acc.texts), images=tuple(acc.images), image_urls=tuple(acc.image_urls),
        image_details=tuple(acc.image_details), schema=schema, schema_name=name, json_mode=json_mode,
        temperature=_optional_float(body.get("temperature")), max_tokens=_optional_int(max_tokens),
        media_resolution=None, api_key=api_key, body=body,
    )


# --------------------------------------------------------------------------------------------------------
# Gemini generateContent


def _gemini_part(part: Any, acc: _Collected) -> None:
    part = as_dict(part, "part")
    if "text" in part:
        acc.texts.append(str(part["text"]))
    inline = _pick(part, "inlineData", "inline_data")
    if inline is not None:
        acc.images.append(decode_base64(str(as_dict(inline, "inlineData").get("data", ""))))
    file_data = _pick(part, "fileData", "file_data")
    if file_data is not None:
        acc.image_urls.append(str(_pick(as_dict(file_data, "fileData"), "fileUri", "file_uri") or ""))


def _gemini_system(instruction: Any) -> str:
    if instruction is None:
        return ""
    if isinstance(instruction, str):
        return instruction
    parts = _as_list(as_dict(instruction, "systemInstruction").get("parts"), "systemInstruction.parts")
    return "\n".join(str(p["text"]) for p in parts if isinstance(p, dict) and "text" in p)


def parse_gemini(body: dict[str, Any], model: str, api_key: str | None) -> ParsedRequest:
    """Normalise a generateContent body. Contents with role "model" (few-shot answers) are skipped."""
    acc = _Collected()
    for content in _as_list(body.get("contents"), "contents"):
        content = as_dict(content, "content")
        if content.get("role", "user") != "user":
            continue
        for part in _as_list(content.get("parts"), "parts"):
            _gemini_part(part, acc)
    config = as_dict(_pick(body, "generationConfig", "generation_config") or {}, "generationConfig")
    # The SDK rewrites `response_schema` into Gemini's OpenAPI subset (type names upper-cased);
    # `response_json_schema` arrives untouched. Both are passed on as sent.
    schema = _pick(config, "responseJsonSchema", "response_json_schema", "responseSchema", "response_schema")
    mime = _pick(config, "responseMimeType", "response_mime_type")
    return ParsedRequest(
        api="gemini", model=model, system=_gemini_system(_pick(body, "systemInstruction", "system_instruction")),
        texts=tuple(acc.texts), images=tuple(acc.images), image_urls=tuple(acc.image_urls), image_details=(),
        schema=schema, schema_name=None, json_mode=schema is not None or mime == "application/json",
        temperature=_optional_float(config.get("temperature")),
        max_tokens=_optional_int(_pick(config, "maxOutputTokens", "max_output_tokens")),
        media_resolution=_pick(config, "mediaResolution", "media_resolution"), api_key=api_key, body=body,
    )


# --------------------------------------------------------------------------------------------------------
# Responses


@dataclass(frozen=True)
class Usage:
    prompt: int
    completion: int
    cached: int

    @property
    def total(self) -> int:
        return self.prompt + self.completion


def _text_tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def estimate_usage(request: ParsedRequest, text: str, cached_tokens: int) -> Usage:
    """Deterministic token estimates, so benchmarks and cost accounting are reproducible."""
    prompt = _text_tokens(request.system) + sum(_text_tokens(t) for t in request.texts)
    prompt += IMAGE_TOKENS * (len(request.images) + len(request.image_urls))
    return Usage(prompt=prompt, completion=_text_tokens(text), cached=min(cached_tokens, prompt))


def openai_completion(request: ParsedRequest, text: str, usage: Usage, number: int) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-local-{number}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text, "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }],
        "usage": {
            "prompt_tokens": usage.prompt,
            "completion_tokens": usage.completion,
            "total_tokens": usage.total,
            "prompt_tokens_details": {"cached_tokens": usage.cached},
        },
    }


def gemini_completion(request: ParsedRequest, text: str, usage: Usage, number: int) -> dict[str, Any]:
    return {
        "candidates": [{
            "content": {"role": "model", "parts": [{"text": text}]},
            "finishReason": "STOP",
            "index": 0,
        }],
        "usageMetadata": {
            "promptTokenCount": usage.prompt,
            "candidatesTokenCount": usage.completion,
            "totalTokenCount": usage.total,
            "cachedContentTokenCount": usage.cached,
        },
        "modelVersion": request.model,
        "responseId": f"local-{number}",
    }


_OPENAI_ERRORS = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "not_found"),
    429: ("requests", "rate_limit_exceeded"),
    503: ("server_error", "service_unavailable"),
}
_GEMINI_STATUS = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def error_body(api: str, status: int, message: str) -> dict[str, Any]:
    """The error JSON each SDK knows how to read, so it raises its own typed exception."""
    if api == "gemini":
        return {"error": {"code": status, "message": message, "status": _GEMINI_STATUS.get(status, "UNKNOWN")}}
    kind, code = _OPENAI_ERRORS.get(status, ("server_error", "server_error"))
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def error_reply(api: str, error: RequestError) -> Reply:
    return Reply(error.status, error_body(api, error.status, error.message), error.retry_after)


def match_route(path: str) -> Route | None:
    """Which API a path belongs to. Gemini accepts any version prefix (v1, v1beta, ...) or none."""
    if path.rstrip("/") == OPENAI_PATH:
        return Route("openai")
    head, sep, method = path.rpartition(":")
    if not sep or method != "generateContent":
        return None
    segments = head.strip("/").split("/")
    versioned = len(segments) == 3 and segments[0].startswith("v")
    if (len(segments) == 2 or versioned) and segments[-2] == "models" and segments[-1]:
        return Route("gemini", unquote(segments[-1]))
    return None


def guess_api(path: str) -> str:
    """Error shape for an unknown route: Gemini-style paths contain ':' or 'models/'."""
    return "gemini" if ":" in path or "/models/" in path else "openai"


# --------------------------------------------------------------------------------------------------------
# HTTP layer
