"""The gemini backend: the real google-genai SDK against the local server's generateContent - the request it
sends (system instruction, inline image parts, JSON schema, generation config), parsing, and its settings."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from conftest import MakeProject, ProjectDir
from vlm_support import (
    GOOGLE_SECRET,
    LABEL_ANSWER,
    LABEL_ASSET,
    LABEL_STRICT_SCHEMA,
    copy_scene,
    fixed,
    label_model,
    project_yml,
    struct_rows,
)

from dataproj.errors import ConfigError
from dataproj.vlm.clients import GeminiClient
from dataproj.vlm.local_server import LocalVLMServer
from dataproj.vlm.settings import GeminiBackend, load_backends


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_API_KEY", GOOGLE_SECRET)


def _project(make_project: MakeProject, server: LocalVLMServer, *, gm: str = "", **files: str) -> ProjectDir:
    project = make_project({"project.yml": project_yml(server, default="gm", gm=gm),
                            "prompts/test/label/v1.yaml": LABEL_ASSET,
                            "models/m.sql": label_model(config="failure_budget=1"), **files})
    copy_scene(project)
    return project


def test_request_shape(make_project: MakeProject) -> None:
    with LocalVLMServer(fixed(LABEL_ANSWER)) as server:
        project = _project(make_project, server)
        project.ok("run")
        [request] = server.requests
        [row] = struct_rows(project, "m")
    body = request.body
    assert request.api == "gemini" and request.model == "gem-test"  # the model named in the URL path
    assert request.api_key == GOOGLE_SECRET
    assert body["systemInstruction"]["parts"] == [{"text": "You label images for the test suite."}]
    [content] = body["contents"]
    assert content["role"] == "user"
    parts = content["parts"]
    assert [next(iter(p)) for p in parts] == ["text", "inlineData", "text"]
    assert parts[0]["text"] == "Note: hello"
    inline = parts[1]["inlineData"]
    assert inline.get("mimeType", inline.get("mime_type")) == "image/png"  # the SDK spells it either way
    image = project.path("images/scene.png").read_bytes()
    assert base64.urlsafe_b64decode(inline["data"] + "=" * (-len(inline["data"]) % 4)) == image
    assert request.images == (image,)
    config = body["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseJsonSchema"] == LABEL_STRICT_SCHEMA
    assert config["temperature"] == 0.3 and config["maxOutputTokens"] == 8192
    assert config["mediaResolution"] == "MEDIA_RESOLUTION_LOW"
    assert row == {"label": "cat", "count": 2, "status": "ok", "error": None, "raw_response": LABEL_ANSWER}


def test_backend_parameters_reach_the_request(make_project: MakeProject) -> None:
    with LocalVLMServer(fixed(LABEL_ANSWER)) as server:
        project = _project(make_project, server, gm="model: gemini-other, temperature: 0.9, max_output_tokens: 321, "
                                                    "media_resolution: MEDIA_RESOLUTION_HIGH")
        project.ok("run")
        [request] = server.requests
    assert (request.model, request.temperature, request.max_tokens, request.media_resolution) == (
        "gemini-other", 0.9, 321, "MEDIA_RESOLUTION_HIGH")


def test_prompt_temperature_beats_the_backend_default(make_project: MakeProject) -> None:
    with LocalVLMServer(fixed(LABEL_ANSWER)) as server:
        project = _project(make_project, server)
        project.write({"prompts/test/label/v1.yaml": LABEL_ASSET + "parameters: {temperature: 0.0}\n"})
        project.ok("run")
        assert server.requests[-1].temperature == 0.0
        project.write({"project.yml": project_yml(server, default="gm", extra=(
            "prompts:\n  test/label: {temperature: 0.55}\n"))})
        project.ok("run")
        assert server.requests[-1].temperature == 0.55


def test_chatty_answer_is_parsed(make_project: MakeProject) -> None:
    with LocalVLMServer(fixed(f"```json\n{LABEL_ANSWER}\n```")) as server:
        project = _project(make_project, server)
        project.ok("run")
        [row] = struct_rows(project, "m")
    assert (row["label"], row["count"], row["status"]) == ("cat", 2, "ok")


# ---- settings and the client ------------------------------------------------------------------------------


def test_gemini_defaults() -> None:
    gemini = load_backends({}, Path("project.yml"))["gemini"]
    assert isinstance(gemini, GeminiBackend)
    assert gemini.model == "gemini-3.1-flash-lite-preview"
    assert (gemini.temperature, gemini.max_output_tokens, gemini.timeout_s) == (0.3, 8192, 120.0)
    assert gemini.api_key_env == "GOOGLE_API_KEY"


def test_backend_overrides_merge_over_defaults() -> None:
    backends = load_backends({"gemini": {"model": "gemini-2.5-pro"}, "mine": {"type": "gemini"}},
                             Path("project.yml"))
    assert backends["gemini"].model == "gemini-2.5-pro" and backends["gemini"].temperature == 0.3
    assert backends["mine"].model == "gemini-3.1-flash-lite-preview"


def test_client_timeout_in_milliseconds() -> None:
    client = GeminiClient(GeminiBackend(type="gemini", base_url="http://127.0.0.1:9", timeout_s=2.5))
    options = client.client._api_client._http_options
    assert options.timeout == 2500
    assert options.retry_options is None  # the SDK does not retry: the runtime does


def test_missing_key_is_a_clear_error(make_project: MakeProject, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOOGLE_API_KEY")
    with pytest.raises(ConfigError, match="GOOGLE_API_KEY"):
        GeminiClient(GeminiBackend(type="gemini"))
    with LocalVLMServer(fixed(LABEL_ANSWER)) as server:
        project = _project(make_project, server)
        project.ok("run")
        [row] = struct_rows(project, "m")
        assert server.request_count == 0
    assert row["status"] == "failed" and "GOOGLE_API_KEY" in row["error"]
