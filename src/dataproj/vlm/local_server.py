"""A local HTTP server that speaks the two VLM APIs the project's clients use.

It answers OpenAI chat completions (``POST /v1/chat/completions``) and Gemini ``generateContent``
(``POST /{version}/models/{model}:generateContent``; google-genai 3.x sends ``/v1/...`` by default, older
releases ``/v1beta/...``), so offline runs, tests and benchmarks can drive the *real* ``openai`` and
``google-genai`` SDKs end to end without network. The model text comes from an injected ``answer`` function;
misbehaviour (rate limits, server errors, bad JSON, hangs, servers without structured output) is scripted
with :class:`Fault` objects, one per upcoming request. How requests and replies look on the wire is in wire.py.

Only the standard library is used so the server has no dependency the project does not already need.
"""

from __future__ import annotations

import contextlib
import json
import socket
import socketserver
import sys
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from .wire import (
    IMAGE_TOKENS,
    ParsedRequest,
    Reply,
    RequestError,
    Route,
    as_dict,
    error_reply,
    estimate_usage,
    extract_api_key,
    gemini_completion,
    guess_api,
    match_route,
    openai_completion,
    parse_gemini,
    parse_openai,
)

__all__ = ["IMAGE_TOKENS", "Answer", "Fault", "LocalVLMServer", "ParsedRequest", "estimate_usage"]

# How often serve_forever checks for shutdown; the default 0.5 s would make stop() slow.
_POLL_INTERVAL_S = 0.05

Answer = Callable[[ParsedRequest], str]


@dataclass(frozen=True)
class Fault:
    """A scripted misbehaviour, consumed by the next request that passes authentication."""

    status: int = 200
    retry_after: float | None = None
    text: str | None = None
    hang_s: float = 0.0
    reject_schema: bool = False


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
            body = as_dict(json.loads(raw or b"{}"), "request body")
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

