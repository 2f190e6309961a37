"""A local HTTP server that speaks the two VLM APIs the project's clients use.

It answers OpenAI chat completions (``POST /v1/chat/completions``) and Gemini ``generateContent``
(``POST /{version}/models/{model}:generateContent``; google-genai 3.x sends ``/v1/...`` by default, older
releases ``/v1beta/...``), so offline runs, tests and benchmarks can drive the *real* ``openai`` and
``google-genai`` SDKs end to end without network. The model text comes from an injected ``answer`` function;
misbehaviour (rate limits, server errors, bad JSON, hangs, servers without structured output) is scripted
with :class:`Fault` objects, one per upcoming request.

Only the standard library is used so the server has no dependency the project does not already need.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import math
import socket
import socketserver
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, unquote_to_bytes, urlsplit

# Gemini bills a fixed 258 tokens for a small image; used for both APIs so estimates stay comparable.
IMAGE_TOKENS = 258
OPENAI_PATH = "/v1/chat/completions"
# How often serve_forever checks for shutdown; the default 0.5 s would make stop() slow.
_POLL_INTERVAL_S = 0.05


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


Answer = Callable[[ParsedRequest], str]


@dataclass(frozen=True)
class Fault:
    """A scripted misbehaviour, consumed by the next request that passes authentication."""

    status: int = 200
    retry_after: float | None = None
    text: str | None = None
    hang_s: float = 0.0
    reject_schema: bool = False


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


def _as_dict(value: Any, what: str) -> dict[str, Any]:
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
    part = _as_dict(part, "content part")
    kind = part.get("type")
    if kind == "text":
        acc.texts.append(str(part.get("text", "")))
    elif kind == "image_url":
        image = part.get("image_url")
        # Old clients send the URL as a bare string instead of {"url", "detail"}.
        image = {"url": image} if isinstance(image, str) else _as_dict(image, "image_url")
        acc.add_url(str(image.get("url", "")))
        if image.get("detail") is not None:
            acc.image_details.append(str(image["detail"]))
    else:
        raise RequestError(400, f"unsupported content part type: {kind!r}")


def _openai_schema(response_format: Any) -> tuple[dict[str, Any] | None, str | None, bool]:
    """(schema, schema name, json mode) from ``response_format``."""
    if response_format is None:
        return None, None, False
    fmt = _as_dict(response_format, "response_format")
    kind = fmt.get("type")
    if kind == "json_schema":
        spec = _as_dict(fmt.get("json_schema"), "response_format.json_schema")
        return spec.get("schema"), spec.get("name"), True
    return None, None, kind == "json_object"


def parse_openai(body: dict[str, Any], api_key: str | None) -> ParsedRequest:
    """Normalise a chat-completions body. Only user messages contribute texts and images."""
    if body.get("stream"):
        raise RequestError(400, "streaming is not supported by the local server")
    system: list[str] = []
    acc = _Collected()
    for message in _as_list(body.get("messages"), "messages"):
        message = _as_dict(message, "message")
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
    part = _as_dict(part, "part")
    if "text" in part:
        acc.texts.append(str(part["text"]))
    inline = _pick(part, "inlineData", "inline_data")
    if inline is not None:
        acc.images.append(decode_base64(str(_as_dict(inline, "inlineData").get("data", ""))))
    file_data = _pick(part, "fileData", "file_data")
    if file_data is not None:
        acc.image_urls.append(str(_pick(_as_dict(file_data, "fileData"), "fileUri", "file_uri") or ""))


def _gemini_system(instruction: Any) -> str:
    if instruction is None:
        return ""
    if isinstance(instruction, str):
        return instruction
    parts = _as_list(_as_dict(instruction, "systemInstruction").get("parts"), "systemInstruction.parts")
    return "\n".join(str(p["text"]) for p in parts if isinstance(p, dict) and "text" in p)


def parse_gemini(body: dict[str, Any], model: str, api_key: str | None) -> ParsedRequest:
    """Normalise a generateContent body. Contents with role "model" (few-shot answers) are skipped."""
    acc = _Collected()
    for content in _as_list(body.get("contents"), "contents"):
        content = _as_dict(content, "content")
        if content.get("role", "user") != "user":
            continue
        for part in _as_list(content.get("parts"), "parts"):
            _gemini_part(part, acc)
    config = _as_dict(_pick(body, "generationConfig", "generation_config") or {}, "generationConfig")
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


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keeps connections alive, as real endpoints do, so the SDKs' connection pools behave normally.
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: test and benchmark output should not be flooded with access logs."""

    def do_POST(self) -> None:
        try:
            raw = self._read_body()
        except (ValueError, OSError):
            self._send(error_reply(guess_api(self.path), RequestError(400, "unreadable request body")))
            self.close_connection = True
            return
        url = urlsplit(self.path)
        route = match_route(url.path)
        if route is None:
            self._send(error_reply(guess_api(url.path), RequestError(404, f"no route for POST {url.path}")))
            return
        api_key = extract_api_key(self.headers, url.query)
        self._send(self.server.owner.handle(route, raw, api_key))

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        self._send(error_reply(guess_api(path), RequestError(404, f"no route for GET {path}")))

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                # Skip optional trailers up to the blank line that ends the body.
                while self.rfile.readline().strip():
                    pass
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    def _send(self, reply: Reply) -> None:
        payload = json.dumps(reply.body).encode()
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            if reply.retry_after is not None:
                self.send_header("Retry-After", f"{reply.retry_after:g}")
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            # The client gave up (timeout test) or the server is stopping: nothing left to tell it.
            self.close_connection = True


class _HTTPServer(ThreadingHTTPServer):
    # Daemon handler threads never keep the interpreter alive, and closing never waits for them.
    daemon_threads = True
    block_on_close = False
    # socketserver's default listen backlog is 5: a burst of new connections overflows it, the kernel drops
    # the SYNs and clients retry after ~1 s, which serializes a parallel benchmark.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], owner: LocalVLMServer) -> None:
        super().__init__(address, _Handler)
        self.owner = owner
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN (reverse DNS), which can stall without network.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def track(self, connection: socket.socket, *, add: bool) -> None:
        with self._connections_lock:
            if add:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        """Wake handler threads blocked on idle keep-alive sockets so they exit promptly."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Dropped connections are routine (client timeouts, stop()); anything else is a real bug to show.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class LocalVLMServer:
    """OpenAI- and Gemini-compatible endpoints on localhost, answered by ``answer``.

    ``requests`` holds every parsed request (including rejected and faulted ones) in arrival order.
    ``max_requests`` bounds how many requests the server will serve in its lifetime; later ones get 503,
    so a runaway loop in a test or benchmark cannot spin forever.
    """

    def __init__(
        self,
        answer: Answer,
        *,
        latency_s: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        cached_tokens: int = 0,
        require_api_key: str | None = None,
        max_requests: int | None = None,
    ) -> None:
        self.answer = answer
        self.latency_s = latency_s
        self.host = host
        self.port = port
        self.cached_tokens = cached_tokens
        self.require_api_key = require_api_key
        self.max_requests = max_requests
        self.requests: list[ParsedRequest] = []
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._admitted = 0
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle

    def start(self) -> LocalVLMServer:
        if self._httpd is not None:
            raise RuntimeError("server already started")
        self._stopping.clear()
        self._httpd = _HTTPServer((self.host, self.port), self)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": _POLL_INTERVAL_S},
            name=f"local-vlm-server:{self.port}", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        # Wake sleeping (latency/hang) handlers first so shutdown is not held up by them.
        self._stopping.set()
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        if thread is not None:
            thread.join(timeout=1.0)
        self._httpd = self._thread = None

    def __enter__(self) -> LocalVLMServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ---- addresses

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("server not started")
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return self.url + "/v1"

    @property
    def gemini_base_url(self) -> str:
        # google-genai appends "/{api_version}/models/{model}:generateContent" itself.
        return self.url

    # ---- scripting and inspection

    def script(self, *faults: Fault) -> None:
        with self._lock:
            self._faults.extend(faults)

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)

    # ---- request handling (called from handler threads)

    def handle(self, route: Route, raw: bytes, api_key: str | None) -> Reply:
        """Admit, parse, record, authenticate, apply any fault, then answer."""
        try:
            self._admit()
            request = self._parse(route, raw, api_key)
            self._record(request)
            self._authenticate(api_key)
            fault = self._next_fault()
            self._sleep(self.latency_s + fault.hang_s)
            if self._stopping.is_set():
                # A sleep cut short by stop() must not look like a normal (or hung-then-fine) answer.
                raise RequestError(503, "local server is stopping")
            return self._respond(request, fault)
        except RequestError as error:
            return error_reply(route.api, error)

    def _admit(self) -> None:
        with self._lock:
            self._admitted += 1
            over = self.max_requests is not None and self._admitted > self.max_requests
        if over:
            raise RequestError(503, f"local server request limit ({self.max_requests}) reached")

    def _parse(self, route: Route, raw: bytes, api_key: str | None) -> ParsedRequest:
        try:
            body = _as_dict(json.loads(raw or b"{}"), "request body")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RequestError(400, f"request body is not valid JSON: {exc}") from exc
        try:
            if route.api == "openai":
                return parse_openai(body, api_key)
            return parse_gemini(body, route.model, api_key)
        except (TypeError, ValueError, AttributeError) as exc:
            raise RequestError(400, f"malformed request: {exc}") from exc

    def _record(self, request: ParsedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _authenticate(self, api_key: str | None) -> None:
        if self.require_api_key is not None and api_key != self.require_api_key:
            raise RequestError(401, "missing or invalid API key")

    def _next_fault(self) -> Fault:
        with self._lock:
            return self._faults.popleft() if self._faults else Fault()

    def _sleep(self, seconds: float) -> None:
        # An Event wait (not time.sleep) so stop() cuts latency and hangs short.
        if seconds > 0:
            self._stopping.wait(seconds)

    def _respond(self, request: ParsedRequest, fault: Fault) -> Reply:
        if fault.reject_schema and request.schema is not None:
            raise RequestError(400, "response_format json_schema not supported")
        if fault.status != 200:
            raise RequestError(fault.status, f"scripted fault: HTTP {fault.status}", fault.retry_after)
        text = fault.text if fault.text is not None else self._call_answer(request)
        usage = estimate_usage(request, text, self.cached_tokens)
        number = self.request_count
        build = openai_completion if request.api == "openai" else gemini_completion
        return Reply(200, build(request, text, usage, number))

    def _call_answer(self, request: ParsedRequest) -> str:
        try:
            text = self.answer(request)
        except Exception as exc:  # any answer failure must reach the client as a 500
            raise RequestError(500, f"answer function failed: {exc!r}") from exc
        if not isinstance(text, str):
            raise RequestError(500, f"answer function returned {type(text).__name__}, not str")
        return text

