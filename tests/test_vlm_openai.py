"""The openai backend: the real openai SDK against the local server - the request it sends (messages, image
parts, structured-output schema, parameters), parsing the answer into the prompt's STRUCT, and servers
without structured output."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from conftest import MakeProject, ProjectDir
from vlm_support import (
    LABEL_ANSWER,
    LABEL_ASSET,
    LABEL_STRICT_SCHEMA,
    OPENAI_SECRET,
    copy_scene,
    fixed,
    label_model,
    ledger,
    project_yml,
    struct_rows,
)

from dataproj.errors import ConfigError
from dataproj.vlm.clients import OpenAIClient
from dataproj.vlm.local_server import Fault, LocalVLMServer
from dataproj.vlm.prompts import PromptStore
from dataproj.vlm.settings import OpenAIBackend, load_backends


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_SECRET)


def _project(make_project: MakeProject, server: LocalVLMServer, *, gw: str = "", **files: str) -> ProjectDir:
    project = make_project({"project.yml": project_yml(server, gw=gw), "prompts/test/label/v1.yaml": LABEL_ASSET,
                            "models/m.sql": label_model(config="failure_budget=1"), **files})
    copy_scene(project)
    return project


def _schema_in_words(system: str) -> object:
    head, sep, schema = system.partition("matching this JSON schema:\n")
    assert sep and head.startswith("You label images for the test suite."), system
    return json.loads(schema)


def test_request_shape(make_project: MakeProject) -> None:
    with LocalVLMServer(fixed(LABEL_ANSWER)) as server:
        project = _project(make_project, server)
        project.ok("run")
        [request] = server.requests
    body = request.body
    assert request.api == "openai" and body["model"] == "gpt-test"
    assert request.api_key == OPENAI_SECRET  # sent as the bearer token
    assert body["messages"][0] == {"role": "system", "content": "You label images for the test suite."}
    user = body["messages"][1]
    assert user["role"] == "user" and len(body["messages"]) == 2
    kinds = [part["type"] for part in user["content"]]
    assert kinds == ["text", "image_url", "text"]  # the asset's block order
    assert user["content"][0]["text"] == "Note: hello"
    image = user["content"][1]["image_url"]
    assert image["detail"] == "low"
    header, payload = image["url"].split(",", 1)
    assert header == "data:image/png;base64"
    assert base64.b64decode(payload) == project.path("images/scene.png").read_bytes()
    assert request.images == (project.path("images/scene.png").read_bytes(),)
    assert body["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "LabelOutput", "schema": LABEL_STRICT_SCHEMA, "strict": True}}
    assert body["temperature"] == 0.7 and body["max_tokens"] == 4096
    assert not body.get("stream")


def test_backend_parameters_reach_the_request(make_project: MakeProject) -> None:
    with LocalVLMServer(fixed(LABEL_ANSWER)) as server:
        project = _project(make_project, server,
                           gw="model: my-vlm, temperature: 0.2, max_tokens: 77, image_detail: high")
        project.ok("run")
        [request] = server.requests
    assert (request.model, request.temperature, request.max_tokens, request.image_details) == (
        "my-vlm", 0.2, 77, ("high",))


def test_structured_answer_becomes_struct_fields(make_project: MakeProject) -> None:
    answers = {"plain": LABEL_ANSWER, "fenced": f"```json\n{LABEL_ANSWER}\n```",
               "chatty": f"Here you go: {LABEL_ANSWER} Bye."}
    with LocalVLMServer(lambda r: answers[r.texts[0].removeprefix("Note: ")]) as server:
        project = _project(make_project, server, **{"models/m.sql": label_model(
            rows=[(note, "images/scene.png") for note in answers])})
        project.ok("run")
        rows = {row["raw_response"]: row for row in struct_rows(project, "m")}
    assert set(rows) == set(answers.values())
    for row in rows.values():
        assert (row["label"], row["count"], row["status"], row["error"]) == ("cat", 2, "ok", None)


def test_server_without_structured_output_is_asked_in_words(make_project: MakeProject) -> None:
    """A 400 naming response_format switches the client to JSON mode with the schema in the system prompt."""
    with LocalVLMServer(fixed(LABEL_ANSWER)) as server:
        server.script(Fault(reject_schema=True))
        project = _project(make_project, server)
        project.ok("run")
        [row] = struct_rows(project, "m")
        first, second = server.requests
    assert row["status"] == "ok" and row["label"] == "cat"
    assert first.schema == LABEL_STRICT_SCHEMA
    assert second.schema is None
    assert second.body["response_format"] == {"type": "json_object"}
    assert _schema_in_words(second.system) == LABEL_STRICT_SCHEMA


@pytest.mark.parametrize(("mode", "response_format"), [("json_object", {"type": "json_object"}), ("text", None)])
def test_structured_output_setting(make_project: MakeProject, mode: str, response_format: object) -> None:
    with LocalVLMServer(fixed(f"The answer: {LABEL_ANSWER}")) as server:
        project = _project(make_project, server, gw=f"structured_output: {mode}")
        project.ok("run")
        [request] = server.requests
        [row] = struct_rows(project, "m")
    assert request.body.get("response_format") == response_format
    assert _schema_in_words(request.system) == LABEL_STRICT_SCHEMA
    assert row["status"] == "ok" and row["count"] == 2


def test_other_bad_requests_are_not_retried_as_schema_problems(make_project: MakeProject) -> None:
    with LocalVLMServer(fixed(LABEL_ANSWER)) as server:
        server.script(Fault(status=400))
        project = _project(make_project, server)
        project.ok("run")
        [row] = struct_rows(project, "m")
        assert server.request_count == 1  # a 400 is final
    assert row["status"] == "failed" and "400" in row["error"]
    [call] = ledger(project)
    assert (call["status"], call["attempts"]) == ("failed", 1)


# ---- settings and the client ------------------------------------------------------------------------------


def test_openai_defaults() -> None:
    backends = load_backends({}, Path("project.yml"))
    openai = backends["openai"]
    assert isinstance(openai, OpenAIBackend)
    assert (openai.temperature, openai.max_tokens, openai.timeout_s) == (0.7, 4096, 60.0)
    assert openai.api_key_env == "OPENAI_API_KEY" and openai.base_url is None
    assert openai.output_retries == 2 and openai.max_attempts == 4


def test_client_uses_the_backend_timeout_and_no_sdk_retries() -> None:
    client = OpenAIClient(OpenAIBackend(type="openai", base_url="http://127.0.0.1:9/v1", timeout_s=12.5))
    assert client.client.timeout == 12.5
    assert client.client.max_retries == 0  # retries are the runtime's (limits.call_with_retries)
    assert client.client.api_key == OPENAI_SECRET


def test_key_from_another_environment_variable(make_project: MakeProject, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_GATEWAY_KEY", "gateway-key-123")
    with LocalVLMServer(fixed(LABEL_ANSWER)) as server:
        project = _project(make_project, server, gw="api_key_env: MY_GATEWAY_KEY")
        project.ok("run")
        assert server.requests[0].api_key == "gateway-key-123"


def test_missing_key_for_the_real_api_is_a_clear_error(make_project: MakeProject,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        OpenAIClient(OpenAIBackend(type="openai"))
    project = make_project({"project.yml": "name: nokey\nvlm: {backend: openai}\n",
                            "prompts/test/label/v1.yaml": LABEL_ASSET,
                            "models/m.sql": label_model(config="failure_budget=1")})
    copy_scene(project)
    project.ok("run")
    [row] = struct_rows(project, "m")
    assert row["status"] == "failed" and "OPENAI_API_KEY" in row["error"]


def test_unknown_backend_key_is_a_config_error(make_project: MakeProject) -> None:
    with LocalVLMServer(fixed(LABEL_ANSWER)) as server:
        project = _project(make_project, server, gw="temprature: 0.1")
        result = project.cli("run")
    assert result.code == 2
    assert "backends.gw.temprature" in result.err and "temperature" in result.err


def test_engine_assets_render_for_openai(make_project: MakeProject) -> None:
    """The shipped pairwise asset: source, A and B images in that order, with the judge's temperature 0."""
    with LocalVLMServer(fixed('{"winner": "Image A"}')) as server:
        project = _project(make_project, server, **{"models/m.sql": """\
            {{ config(materialized='table') }}
            select pairwise_judge('add a red circle', 'images/scene.png', 'images/a.png', 'images/b.png') as j
            """})
        copy_scene(project, "images/a.png", Path(project.path("images/scene.png")))
        project.path("images/b.png").write_bytes(b"\x89PNG-not-really-but-distinct")
        project.ok("run")
        [request] = server.requests
    asset = PromptStore(None).get("vlm/assessment/visual_consistency/pairwise")
    content = request.body["messages"][1]["content"]
    assert [p["type"] for p in content] == ["text", "text", "image_url", "text", "image_url", "text", "image_url",
                                            "text"]
    assert content[0]["text"] == "Instruction: add a red circle"
    assert len(request.images) == 3 and request.images[2] == b"\x89PNG-not-really-but-distinct"
    assert request.temperature == asset.spec.parameters["temperature"] == 0.0
    assert request.schema_name == "PairJudgeOutput"
    assert set(request.schema["properties"]) == {"winner", "reasoning"}
