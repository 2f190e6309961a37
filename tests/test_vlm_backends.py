"""Which backend a prompt function uses: `<fn>__<backend>` variants for every VLM backend, `<fn>` for the
default one (vlm.backend, or prompts.<id>.backend), and a model's own `vlm_backend` config."""

from __future__ import annotations

import pytest
from conftest import MakeProject
from vlm_support import (
    GOOGLE_SECRET,
    LABEL_ANSWER,
    LABEL_ASSET,
    OPENAI_SECRET,
    copy_scene,
    fixed,
    label_model,
    ledger,
    project_yml,
)

from dataproj.vlm.local_server import LocalVLMServer


@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_SECRET)
    monkeypatch.setenv("GOOGLE_API_KEY", GOOGLE_SECRET)


def _used(project: object) -> dict[str, set[tuple[str, str, str]]]:
    """node -> {(function, backend, model)} from the ledger."""
    found: dict[str, set[tuple[str, str, str]]] = {}
    for call in ledger(project):  # type: ignore[arg-type]
        found.setdefault(call["node"], set()).add((call["function"], call["backend"], call["model"]))
    return found


def test_variants_default_and_model_override(make_project: MakeProject) -> None:
    # every model labels a different note, so no call is a cache hit of another model's
    models = {
        "plain": label_model(rows=[("plain", "images/scene.png")]),
        "on_gemini": label_model(rows=[("on_gemini", "images/scene.png")], config="vlm_backend='gm'"),
        "explicit": label_model("label_image__gm(note, image)", rows=[("explicit", "images/scene.png")]),
        "explicit_wins": label_model("label_image__gw(note, image)", rows=[("explicit_wins", "images/scene.png")],
                                     config="vlm_backend='gm'"),
        "offline_backend": label_model("label_image__offline(note, image)", rows=[("o", "images/scene.png")],
                                       config="failure_budget=1"),
        "plain_again": label_model(rows=[("plain_again", "images/scene.png")]),
        "gemini_again": label_model(rows=[("gemini_again", "images/scene.png")], config="vlm_backend='gm'"),
    }
    with LocalVLMServer(fixed(LABEL_ANSWER)) as server:
        project = make_project({"project.yml": project_yml(server).replace("threads: 2", "threads: 4"),
                                "prompts/test/label/v1.yaml": LABEL_ASSET,
                                **{f"models/{name}.sql": sql for name, sql in models.items()}})
        copy_scene(project)
        project.ok("run")
        by_note = {r.texts[0].removeprefix("Note: "): (r.api, r.model) for r in server.requests}
    assert by_note == {"plain": ("openai", "gpt-test"), "on_gemini": ("gemini", "gem-test"),
                       "explicit": ("gemini", "gem-test"), "explicit_wins": ("openai", "gpt-test"),
                       "plain_again": ("openai", "gpt-test"), "gemini_again": ("gemini", "gem-test")}
    gw, gm = ("label_image__gw", "gw", "gpt-test"), ("label_image__gm", "gm", "gem-test")
    assert _used(project) == {"plain": {gw}, "on_gemini": {gm}, "explicit": {gm}, "explicit_wins": {gw},
                              "plain_again": {gw}, "gemini_again": {gm},
                              "offline_backend": {("label_image__offline", "offline", "offline-skimage-1")}}
    # the engine's judges get variants too, for every VLM backend (the three defaults included)
    out = project.ok("query", "select function_name from duckdb_functions() where function_name like 'pairwise_j%'",
                     "--format", "csv").out
    assert set(out.split()[1:]) == {"pairwise_judge", "pairwise_judge__gw", "pairwise_judge__gm",
                                    "pairwise_judge__offline", "pairwise_judge__openai", "pairwise_judge__gemini"}


def test_prompt_level_backend(make_project: MakeProject) -> None:
    with LocalVLMServer(fixed(LABEL_ANSWER)) as server:
        extra = "prompts:\n  test/label: {backend: gm}\n"
        project = make_project({"project.yml": project_yml(server, extra=extra),
                                "prompts/test/label/v1.yaml": LABEL_ASSET,
                                "models/a.sql": label_model(rows=[("a", "images/scene.png")]),
                                "models/b.sql": label_model(rows=[("b", "images/scene.png")],
                                                            config="vlm_backend='gw'")})
        copy_scene(project)
        project.ok("run")
        by_note = {r.texts[0].removeprefix("Note: "): r.api for r in server.requests}
    assert by_note == {"a": "gemini", "b": "openai"}  # the prompt's default, and the model's own choice


def test_prompt_level_model_is_sent(make_project: MakeProject) -> None:
    with LocalVLMServer(fixed(LABEL_ANSWER)) as server:
        extra = "prompts:\n  test/label: {model: gpt-special}\n"
        project = make_project({"project.yml": project_yml(server, extra=extra),
                                "prompts/test/label/v1.yaml": LABEL_ASSET, "models/a.sql": label_model()})
        copy_scene(project)
        project.ok("run")
        [request] = server.requests
    assert request.model == "gpt-special"
    assert _used(project) == {"a": {("label_image__gw", "gw", "gpt-special")}}


def test_unknown_model_vlm_backend_is_an_error(make_project: MakeProject) -> None:
    with LocalVLMServer(fixed(LABEL_ANSWER)) as server:
        project = make_project({"project.yml": project_yml(server), "prompts/test/label/v1.yaml": LABEL_ASSET,
                                "models/a.sql": label_model(config="vlm_backend='gemnii'")})
        copy_scene(project)
        result = project.cli("run")
        assert server.request_count == 0
    assert result.code != 0
    assert "gemnii" in result.text


@pytest.mark.parametrize(("yml_extra", "message"), [
    ("vlm: {backend: nope}\n", "vlm.backend: no VLM backend named 'nope'"),
    ("prompts:\n  test/label: {backend: nope}\n", "prompts.test/label.backend: no VLM backend named 'nope'"),
    ("prompts:\n  test/label: {version: v9}\n", "no version 'v9'"),
    ("prompts:\n  test/label: {tempreature: 1}\n", "tempreature"),
])
def test_backend_config_errors(make_project: MakeProject, yml_extra: str, message: str) -> None:
    yml = "name: cfg\n" + yml_extra
    project = make_project({"project.yml": yml, "prompts/test/label/v1.yaml": LABEL_ASSET,
                            "models/a.sql": label_model()})
    result = project.cli("run")
    assert result.code == 2
    assert message in result.err
