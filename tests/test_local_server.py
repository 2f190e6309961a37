"""The local VLM server, driven by the real openai and google-genai SDKs (no network)."""

from __future__ import annotations

import base64
import http.client
import io
import json
import math
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from PIL import Image

from dataproj.vlm.local_server import IMAGE_TOKENS, Fault, LocalVLMServer, ParsedRequest

SCHEMA = {
    "type": "object",
    "properties": {"label": {"type": "string"}, "count": {"type": "integer"}},
    "required": ["label", "count"],
    "additionalProperties": False,
}
ANSWER = '{"label": "cat", "count": 2}'
SYSTEM = "You label images."
PROMPT = "What is in this image?"


def fixed_answer(_: ParsedRequest) -> str:
    return ANSWER


@pytest.fixture
def png(tmp_path: Path) -> bytes:
    """A real PNG file written to disk; the server must hand back exactly these bytes."""
    path = tmp_path / "red.png"
    Image.new("RGB", (4, 3), (255, 0, 0)).save(path, format="PNG")
    return path.read_bytes()


@pytest.fixture
def server() -> Iterator[LocalVLMServer]:
    with LocalVLMServer(fixed_answer, cached_tokens=5) as srv:
        yield srv


def oai(srv: LocalVLMServer, **kwargs: object) -> openai.OpenAI:
    options: dict[str, object] = {"api_key": "sk-test", "max_retries": 0, **kwargs}
    return openai.OpenAI(base_url=srv.openai_base_url, **options)  # type: ignore[arg-type]


def ask_gemini(
    srv: LocalVLMServer,
    contents: types.ContentListUnionDict = "hi",
    config: types.GenerateContentConfig | None = None,
    *,
    api_key: str = "g-test",
    model: str = "m",
) -> types.GenerateContentResponse:
    # The client must outlive the call: genai.Client.__del__ closes the HTTP client its `models` share,
    # so `genai.Client(...).models.generate_content(...)` fails with "client has been closed".
    options = types.HttpOptions(base_url=srv.gemini_base_url)
    with genai.Client(api_key=api_key, http_options=options) as client:
        return client.models.generate_content(model=model, contents=contents, config=config)


def ask_openai(client: openai.OpenAI, *, schema: bool = False) -> str | None:
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": SCHEMA}}
    extra = {"response_format": fmt} if schema else {}
    response = client.chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": PROMPT}], **extra  # type: ignore[arg-type]
    )
    return response.choices[0].message.content


def expected_prompt_tokens(*texts: str, images: int) -> int:
    return sum(math.ceil(len(t) / 4) for t in texts) + IMAGE_TOKENS * images


# --------------------------------------------------------------------------------------------------------
# Round trips


def test_openai_round_trip_parses_messages_image_and_schema(server: LocalVLMServer, png: bytes) -> None:
    data_url = "data:image/png;base64," + base64.b64encode(png).decode()
    response = oai(server).chat.completions.create(
        model="gpt-test",
        messages=[
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": [
                {"type": "text", "text": PROMPT},
                {"type": "image_url", "image_url": {"url": data_url, "detail": "low"}},
            ]},
        ],
        response_format={"type": "json_schema", "json_schema": {"name": "label", "schema": SCHEMA, "strict": True}},
        temperature=0.0,
        max_completion_tokens=64,
        extra_headers={"x-trace": "1"},
    )
    assert response.choices[0].message.content == ANSWER
    assert response.choices[0].finish_reason == "stop"
    assert response.model == "gpt-test"
    (request,) = server.requests
    assert (request.api, request.model, request.system, request.texts) == ("openai", "gpt-test", SYSTEM, (PROMPT,))
    assert request.images == (png,)
    assert request.image_details == ("low",) and request.image_urls == ()
    assert request.schema == SCHEMA and request.schema_name == "label" and request.json_mode
    assert request.temperature == 0.0 and request.max_tokens == 64 and request.api_key == "sk-test"
    prompt = expected_prompt_tokens(SYSTEM, PROMPT, images=1)
    usage = response.usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (prompt, math.ceil(len(ANSWER) / 4))
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details.cached_tokens == 5


def test_openai_json_object_and_remote_image_url(server: LocalVLMServer) -> None:
    oai(server).chat.completions.create(
        model="gpt-test",
        messages=[
            {"role": "developer", "content": "dev rules"},
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]},
        ],
        response_format={"type": "json_object"},
        max_tokens=10,
    )
    (request,) = server.requests
    assert request.system == "dev rules" and request.image_urls == ("https://example.com/a.png",)
    assert request.images == () and request.image_details == ()
    assert request.json_mode and request.schema is None and request.max_tokens == 10


@pytest.mark.parametrize("schema_field", ["response_schema", "response_json_schema"])
def test_gemini_round_trip_parses_contents_image_and_schema(
    server: LocalVLMServer, png: bytes, schema_field: str
) -> None:
    schema = {k: v for k, v in SCHEMA.items() if k != "additionalProperties"}
    config = types.GenerateContentConfig(
        system_instruction=SYSTEM,
        response_mime_type="application/json",
        media_resolution=types.MediaResolution.MEDIA_RESOLUTION_LOW,
        temperature=0.2,
        max_output_tokens=32,
        **{schema_field: schema},
    )
    image = types.Part.from_bytes(data=png, mime_type="image/png")
    response = ask_gemini(server, [PROMPT, image], config, model="gemini-test")
    assert response.text == ANSWER
    assert response.candidates and response.candidates[0].finish_reason == types.FinishReason.STOP
    assert response.model_version == "gemini-test"
    (request,) = server.requests
    assert (request.api, request.model, request.system, request.texts) == ("gemini", "gemini-test", SYSTEM, (PROMPT,))
    assert request.images == (png,) and request.json_mode and request.api_key == "g-test"
    assert request.media_resolution == "MEDIA_RESOLUTION_LOW"
    assert request.temperature == 0.2 and request.max_tokens == 32
    assert request.schema is not None and set(request.schema["properties"]) == {"label", "count"}
    if schema_field == "response_json_schema":
        assert request.schema == schema  # passed through untouched; response_schema is rewritten by the SDK
    usage = response.usage_metadata
    assert usage is not None
    assert usage.prompt_token_count == expected_prompt_tokens(SYSTEM, PROMPT, images=1)
    assert usage.candidates_token_count == math.ceil(len(ANSWER) / 4)
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count
    assert usage.cached_content_token_count == 5


def test_answer_function_sees_each_request(png: bytes) -> None:
    def answer(request: ParsedRequest) -> str:
        return f"{request.api}:{len(request.images)}:{request.texts[-1]}"

    with LocalVLMServer(answer) as srv:
        assert ask_openai(oai(srv)) == f"openai:0:{PROMPT}"
        reply = ask_gemini(srv, ["hi", types.Part.from_bytes(data=png, mime_type="image/png")])
        assert reply.text == "gemini:1:hi"
        assert srv.request_count == 2


# --------------------------------------------------------------------------------------------------------
# Faults


def test_rate_limit_carries_retry_after(server: LocalVLMServer) -> None:
    server.script(Fault(status=429, retry_after=2), Fault(status=429, retry_after=0.5))
    with pytest.raises(openai.RateLimitError) as caught:
        ask_openai(oai(server))
    assert caught.value.response.headers["retry-after"] == "2"
    assert caught.value.code == "rate_limit_exceeded"
    with pytest.raises(genai_errors.APIError) as gcaught:
        ask_gemini(server)
    assert gcaught.value.code == 429 and gcaught.value.status == "RESOURCE_EXHAUSTED"
    assert ask_openai(oai(server)) == ANSWER  # faults are consumed one per request
    assert server.request_count == 3


def test_server_error_in_both_shapes(server: LocalVLMServer) -> None:
    server.script(Fault(status=500), Fault(status=500))
    with pytest.raises(openai.InternalServerError):
        ask_openai(oai(server))
    with pytest.raises(genai_errors.ServerError) as caught:
        ask_gemini(server)
    assert caught.value.code == 500 and caught.value.status == "INTERNAL"


def test_invalid_json_text_is_returned_as_is(server: LocalVLMServer) -> None:
    server.script(Fault(text='{"label": "cat", '), Fault(text="not json"))
    assert ask_openai(oai(server), schema=True) == '{"label": "cat", '
    assert ask_gemini(server).text == "not json"


def test_reject_schema_then_plain_request_succeeds(server: LocalVLMServer) -> None:
    server.script(Fault(reject_schema=True), Fault(reject_schema=True))
    with pytest.raises(openai.BadRequestError) as caught:
        ask_openai(oai(server), schema=True)
    assert "json_schema not supported" in str(caught.value)
    assert ask_openai(oai(server)) == ANSWER  # second fault: no schema asked, so it is ignored
    assert ask_openai(oai(server), schema=True) == ANSWER


def test_gemini_reject_schema(server: LocalVLMServer) -> None:
    server.script(Fault(reject_schema=True))
    config = types.GenerateContentConfig(response_mime_type="application/json", response_json_schema=SCHEMA)
    with pytest.raises(genai_errors.ClientError) as caught:
        ask_gemini(server, config=config)
    assert caught.value.code == 400


def test_hang_triggers_client_timeout_and_server_recovers(server: LocalVLMServer) -> None:
    server.script(Fault(hang_s=5))
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        ask_openai(oai(server, timeout=0.3))
    assert time.monotonic() - started < 2
    assert ask_openai(oai(server)) == ANSWER


def test_answer_failure_becomes_500() -> None:
    def broken(_: ParsedRequest) -> str:
        raise RuntimeError("boom")

    with LocalVLMServer(broken) as srv, pytest.raises(openai.InternalServerError, match="boom"):
        ask_openai(oai(srv))


# --------------------------------------------------------------------------------------------------------
# Concurrency, auth, routing, lifecycle


def test_parallel_requests_overlap() -> None:
    with LocalVLMServer(fixed_answer, latency_s=0.2) as srv:
        client = oai(srv)
        ask_openai(client)  # warm up imports and the first connection outside the timing
        started = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda _: ask_openai(client), range(16)))
        elapsed = time.monotonic() - started
    assert answers == [ANSWER] * 16
    assert elapsed < 0.6, f"16 requests with 0.2 s latency took {elapsed:.2f} s: requests are serialized"


def test_api_key_required() -> None:
    with LocalVLMServer(fixed_answer, require_api_key="right") as srv:
        with pytest.raises(openai.AuthenticationError):
            ask_openai(oai(srv))
        assert ask_openai(oai(srv, api_key="right")) == ANSWER
        with pytest.raises(genai_errors.ClientError) as caught:
            ask_gemini(srv)
        assert caught.value.code == 401 and caught.value.status == "UNAUTHENTICATED"
        assert ask_gemini(srv, api_key="right").text == ANSWER
        assert [r.api_key for r in srv.requests] == ["sk-test", "right", "g-test", "right"]


def post(url: str, body: dict[str, object] | bytes) -> tuple[int, dict[str, object]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(io.BytesIO(error.read()))


def test_routes_query_key_and_errors(server: LocalVLMServer) -> None:
    gemini = {"contents": [{"parts": [{"text": "x"}]}]}
    status, body = post(server.url + "/v1beta/models/gem:generateContent?key=q-key", gemini)
    assert status == 200 and server.requests[-1].api_key == "q-key" and server.requests[-1].model == "gem"
    assert post(server.url + "/v1/embeddings", {})[0] == 404
    assert post(server.url + "/v1/models/gem:streamGenerateContent", {})[0] == 404
    status, body = post(server.openai_base_url + "/chat/completions", b"{not json")
    assert status == 400 and "error" in body
    status, body = post(server.openai_base_url + "/chat/completions", {"messages": [], "stream": True})
    assert status == 400


def test_snake_case_chunked_gemini_body(server: LocalVLMServer, png: bytes) -> None:
    """Hand-written clients send snake_case keys and may stream the body chunked; both are accepted."""
    part = {"inline_data": {"mime_type": "image/png", "data": base64.b64encode(png).decode()}}
    body = {
        "system_instruction": {"parts": [{"text": SYSTEM}]},
        "contents": [{"role": "user", "parts": [{"text": PROMPT}, part]}, {"role": "model", "parts": [{"text": "x"}]}],
        "generation_config": {"response_mime_type": "application/json", "max_output_tokens": 7},
    }
    connection = http.client.HTTPConnection("127.0.0.1", int(server.url.rsplit(":", 1)[1]), timeout=5)
    data = json.dumps(body).encode()
    connection.request(
        "POST", "/v1beta/models/gem:generateContent", body=iter([data[:10], data[10:]]),
        headers={"x-goog-api-key": "h-key", "Content-Type": "application/json"}, encode_chunked=True,
    )
    response = connection.getresponse()
    assert response.status == 200 and json.load(response)["candidates"][0]["content"]["parts"][0]["text"] == ANSWER
    connection.close()
    (request,) = server.requests
    assert (request.system, request.texts, request.images) == (SYSTEM, (PROMPT,), (png,))
    assert request.json_mode and request.schema is None and request.max_tokens == 7 and request.api_key == "h-key"


def test_max_requests_refuses_with_503() -> None:
    with LocalVLMServer(fixed_answer, max_requests=1) as srv:
        assert ask_openai(oai(srv)) == ANSWER
        with pytest.raises(openai.InternalServerError) as caught:
            ask_openai(oai(srv))
        assert caught.value.status_code == 503
        assert srv.request_count == 1


def test_stop_is_prompt_with_hanging_request_and_idle_connections() -> None:
    srv = LocalVLMServer(fixed_answer).start()
    client = oai(srv, timeout=5)
    ask_openai(client)  # leaves an idle keep-alive connection in the client's pool
    srv.script(Fault(hang_s=30))
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(ask_openai, client)
        while srv.request_count < 2:
            time.sleep(0.01)
        started = time.monotonic()
        srv.stop()
        assert time.monotonic() - started < 1.0
        # The woken handler answers 503 (or the connection is already gone): never a normal answer.
        with pytest.raises(openai.APIError):
            pending.result(timeout=5)
