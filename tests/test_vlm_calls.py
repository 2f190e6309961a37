"""What happens around one VLM call, for both real SDKs (openai and google-genai) against the local server:
retries on 429 (honouring Retry-After) and on 5xx, timeouts, invalid output re-asked then Failed with the raw
response kept, and usage and cost from each provider's own usage fields in the ledger."""

from __future__ import annotations

import json

import pytest
from conftest import MakeProject, ProjectDir
from vlm_support import (
    GOOGLE_SECRET,
    LABEL_ANSWER,
    LABEL_ASSET,
    OPENAI_SECRET,
    TimedServer,
    copy_scene,
    fixed,
    label_model,
    ledger,
    project_yml,
    struct_rows,
)

from dataproj.vlm.local_server import Fault, LocalVLMServer, estimate_usage

APIS = {"openai": "gw", "gemini": "gm"}
PRICES = """\
prices:
  gpt-test: {input: 2.0, cached_input: 0.5, output: 8.0}
  gem-test: {input: 0.1, cached_input: 0.025, output: 0.4}
"""


@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_SECRET)
    monkeypatch.setenv("GOOGLE_API_KEY", GOOGLE_SECRET)


@pytest.fixture(params=list(APIS))
def api(request: pytest.FixtureRequest) -> str:
    return request.param


def _project(make_project: MakeProject, server: LocalVLMServer, api: str, settings: str = "",
             extra: str = "") -> ProjectDir:
    backend = APIS[api]
    yml = project_yml(server, default=backend, extra=extra, **{backend: settings})
    project = make_project({"project.yml": yml, "prompts/test/label/v1.yaml": LABEL_ASSET,
                            "models/m.sql": label_model(config="failure_budget=1")})
    copy_scene(project)
    return project


def _one_row(project: ProjectDir) -> tuple[dict, dict]:
    [row] = struct_rows(project, "m")
    [call] = ledger(project)
    return row, call


# ---- retries ------------------------------------------------------------------------------------------------


def test_429_waits_for_retry_after(make_project: MakeProject, api: str) -> None:
    with TimedServer(fixed(LABEL_ANSWER)) as server:
        server.script(Fault(status=429, retry_after=0.4))
        project = _project(make_project, server, api)
        project.ok("run")
        row, call = _one_row(project)
        [gap] = server.gaps()
    assert row["status"] == "ok" and row["label"] == "cat"
    assert (call["status"], call["attempts"]) == ("ok", 2)
    assert 0.4 <= gap < 2.5  # backoff_initial_s is 0.01: only Retry-After explains the wait


@pytest.mark.parametrize("api", ["gemini"])
def test_retry_after_is_capped_by_backoff_max(make_project: MakeProject, api: str) -> None:
    with TimedServer(fixed(LABEL_ANSWER)) as server:
        server.script(Fault(status=429, retry_after=60))
        project = _project(make_project, server, api, "backoff_max_s: 0.2")
        project.ok("run")
        row, call = _one_row(project)
        [gap] = server.gaps()
    assert row["status"] == "ok" and call["attempts"] == 2
    assert gap < 2.0


@pytest.mark.parametrize(("api", "status"), [("openai", 500), ("gemini", 503)])
def test_server_errors_are_retried(make_project: MakeProject, api: str, status: int) -> None:
    with LocalVLMServer(fixed(LABEL_ANSWER)) as server:
        server.script(Fault(status=status), Fault(status=status))
        project = _project(make_project, server, api)
        project.ok("run")
        row, call = _one_row(project)
        assert server.request_count == 3
    assert row["status"] == "ok" and row["count"] == 2
    assert (call["status"], call["attempts"], call["error"]) == ("ok", 3, None)


@pytest.mark.parametrize("api", ["gemini"])
def test_persistent_server_error_fails_after_max_attempts(make_project: MakeProject, api: str) -> None:
    with LocalVLMServer(fixed(LABEL_ANSWER)) as server:
        server.script(*[Fault(status=500)] * 3)
        project = _project(make_project, server, api, "max_attempts: 3")
        project.ok("run")  # failure_budget=1: the node succeeds with a failed row
        row, call = _one_row(project)
        assert server.request_count == 3
    assert row["status"] == "failed" and row["label"] is None
    assert "500" in row["error"]
    assert (call["status"], call["attempts"]) == ("failed", 3)
    assert "500" in call["error"]


# ---- timeouts -----------------------------------------------------------------------------------------------


def test_timeout_is_retried(make_project: MakeProject, api: str) -> None:
    with TimedServer(fixed(LABEL_ANSWER)) as server:
        server.script(Fault(hang_s=10))
        project = _project(make_project, server, api, "timeout_s: 0.3")
        project.ok("run")
        row, call = _one_row(project)
        [gap] = server.gaps()
    assert row["status"] == "ok"
    assert (call["status"], call["attempts"]) == ("ok", 2)
    assert 0.3 <= gap < 3.0  # the client gave up after timeout_s, not after the 10 s hang


@pytest.mark.parametrize("api", ["openai"])
def test_timeout_on_every_attempt_fails_the_row(make_project: MakeProject, api: str) -> None:
    with LocalVLMServer(fixed(LABEL_ANSWER)) as server:
        server.script(Fault(hang_s=10), Fault(hang_s=10))
        project = _project(make_project, server, api, "timeout_s: 0.3, max_attempts: 2")
        project.ok("run")
        row, call = _one_row(project)
    assert row["status"] == "failed"
    assert "timeout" in row["error"].lower() or "timed out" in row["error"].lower(), row["error"]
    assert (call["status"], call["attempts"]) == ("failed", 2)


# ---- invalid output -----------------------------------------------------------------------------------------

INVALID = ["not json at all", '{"label": "cat"}', '{"label": "cat", "count": -1}',
           '{"label": "cat", "count": 2, "colour": "red"}', '{"label": 3, "count": "two"}']


def test_invalid_output_is_reasked_then_valid(make_project: MakeProject, api: str) -> None:
    """Each row's first answer is invalid in its own way (not JSON, missing / out-of-range / unknown / mistyped
    field); the re-ask gets a valid one. One more row never answers validly and fails alone."""
    asked: dict[str, int] = {}

    def first_bad(request: object) -> str:
        note = request.texts[0].removeprefix("Note: ")  # type: ignore[attr-defined]
        asked[note] = asked.get(note, 0) + 1
        if note == "always":
            return "still not JSON"
        return INVALID[int(note)] if asked[note] == 1 else LABEL_ANSWER

    with LocalVLMServer(first_bad) as server:
        project = _project(make_project, server, api)
        notes = [str(i) for i in range(len(INVALID))] + ["always"]
        project.write({"models/m.sql": label_model(rows=[(note, "images/scene.png") for note in notes])})
        project.ok("run")
        rows = struct_rows(project, "m")
        calls = ledger(project)
    assert asked == {**{str(i): 2 for i in range(len(INVALID))}, "always": 3}  # output_retries defaults to 2
    assert [(r["status"], r["raw_response"], r["label"]) for r in rows[:-1]] == [
        ("ok", LABEL_ANSWER, "cat")] * len(INVALID)
    assert (rows[-1]["status"], rows[-1]["raw_response"]) == ("failed", "still not JSON")  # the others are unharmed
    assert sorted((c["status"], c["attempts"]) for c in calls) == [("failed", 1)] + [("ok", 1)] * len(INVALID)


@pytest.mark.parametrize(("api", "output_retries"), [("openai", 2), ("gemini", 0)])
def test_invalid_output_fails_after_output_retries(make_project: MakeProject, api: str, output_retries: int) -> None:
    answers = [f"not json, answer {i}" for i in range(output_retries + 1)]
    with LocalVLMServer(fixed(LABEL_ANSWER)) as server:
        server.script(*[Fault(text=text) for text in answers], Fault(text="never asked"))
        project = _project(make_project, server, api, f"output_retries: {output_retries}")
        project.ok("run")
        row, call = _one_row(project)
        assert server.request_count == output_retries + 1
        prompts = [estimate_usage(request, "", 0).prompt for request in server.requests]
        reasks = [[t for t in request.texts if t.startswith("Your previous answer could not be used")]
                  for request in server.requests]
    assert row["status"] == "failed"
    assert row["label"] is None and row["count"] is None
    assert row["raw_response"] == answers[-1]  # the last raw answer is kept
    assert f"invalid output after {output_retries + 1} attempt(s)" in row["error"]
    assert call["status"] == "failed"
    assert call["input_tokens"] == sum(prompts)  # every ask is paid for
    # A re-ask is the same request plus the problem with the answer before it.
    assert reasks[0] == [] and [len(r) for r in reasks[1:]] == [1] * output_retries
    assert all("no JSON object found in the response" in r[0] for r in reasks[1:])


# ---- usage and cost -----------------------------------------------------------------------------------------


def test_usage_and_cost_from_the_provider(make_project: MakeProject, api: str) -> None:
    with LocalVLMServer(fixed(LABEL_ANSWER), cached_tokens=40) as server:
        project = _project(make_project, server, api, extra=PRICES)
        project.ok("run")
        [request] = server.requests
        usage = estimate_usage(request, LABEL_ANSWER, 40)
        row, call = _one_row(project)
    prices = {"openai": (2.0, 0.5, 8.0), "gemini": (0.1, 0.025, 0.4)}[api]
    assert row["status"] == "ok"
    assert call["model"] == {"openai": "gpt-test", "gemini": "gem-test"}[api]
    assert call["backend"] == APIS[api] and call["function"] == f"label_image__{APIS[api]}"
    assert (call["input_tokens"], call["cached_input_tokens"], call["output_tokens"]) == (
        usage.prompt, 40, usage.completion)
    expected = ((usage.prompt - 40) * prices[0] + 40 * prices[1] + usage.completion * prices[2]) / 1e6
    assert call["cost_usd"] == pytest.approx(expected)
    result = next(r for r in project.run_results()["results"] if r["name"] == "m")
    assert result["cost_usd"] == pytest.approx(expected, abs=1e-6)  # rounded to 6 places
    assert (result["calls"], result["cache_hits"], result["failed_calls"]) == (1, 0, 0)


@pytest.mark.parametrize("api", ["openai"])
def test_cache_hits_cost_nothing_and_the_ledger_is_queryable(make_project: MakeProject, api: str) -> None:
    with LocalVLMServer(fixed(LABEL_ANSWER), cached_tokens=3) as server:
        project = _project(make_project, server, api, extra=PRICES)
        project.ok("run")
        project.ok("run", "--full-refresh")
        assert server.request_count == 1
        result = next(r for r in project.run_results()["results"] if r["name"] == "m")
        out = project.ok("query", "select function, backend, model, status, cached_input_tokens from dataproj_calls",
                         "--format", "json").out
    assert (result["calls"], result["cache_hits"], result["cost_usd"]) == (0, 1, 0.0)
    records = [json.loads(line) for line in out.splitlines() if line.strip()]  # JSON lines
    assert records == [{"function": "label_image__gw", "backend": "gw", "model": "gpt-test", "status": "ok",
                        "cached_input_tokens": 3}]  # one call: a cache hit is not a call




class ProviderUsageServer(LocalVLMServer):
    """Answers as the real providers do: OpenAI names a dated snapshot of the model it was asked for, and
    Gemini reports thinking tokens (billed as output) apart from the candidates' tokens."""

    THOUGHTS = 120

    def _respond(self, request, fault):  # type: ignore[no-untyped-def]
        reply = super()._respond(request, fault)
        if request.api == "openai":
            reply.body["model"] = f"{request.model}-2025-01-31"
        else:
            reply.body["usageMetadata"]["thoughtsTokenCount"] = self.THOUGHTS
            reply.body["usageMetadata"]["totalTokenCount"] += self.THOUGHTS
        return reply


@pytest.mark.parametrize("api", ["openai", "gemini"])
def test_cost_as_real_providers_report_usage(make_project: MakeProject, api: str) -> None:
    with ProviderUsageServer(fixed(LABEL_ANSWER)) as server:
        project = _project(make_project, server, api, extra=PRICES)
        project.ok("run")
        [request] = server.requests
        usage = estimate_usage(request, LABEL_ANSWER, 0)
        _, call = _one_row(project)
    input_price, _, output_price = {"openai": (2.0, 0.5, 8.0), "gemini": (0.1, 0.025, 0.4)}[api]
    output = usage.completion + (ProviderUsageServer.THOUGHTS if api == "gemini" else 0)
    assert (call["input_tokens"], call["output_tokens"]) == (usage.prompt, output)
    assert call["cost_usd"] == pytest.approx((usage.prompt * input_price + output * output_price) / 1e6)
