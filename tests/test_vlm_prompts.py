"""Prompt assets: prompts/<prompt_id>/<version>.yaml loaded into a store, rendered with data kept inert,
output schemas (inline JSON schema or a registered pydantic model), each asset a SQL function returning a
STRUCT plus status / error / raw_response, and a cache key made of prompt id, version, backend, model and
parameters."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import MakeProject, ProjectDir
from pydantic import ValidationError
from vlm_support import (
    GOOGLE_SECRET,
    LABEL_ANSWER,
    LABEL_ASSET,
    OPENAI_SECRET,
    copy_scene,
    fixed,
    label_model,
    project_yml,
    struct_rows,
)

from dataproj.errors import ConfigError
from dataproj.vlm.calling import request_for
from dataproj.vlm.local_server import LocalVLMServer, ParsedRequest
from dataproj.vlm.prompts import PromptStore
from dataproj.vlm.schema import SchemaError, extract_json, model_from_json_schema, strict_json_schema


@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_SECRET)
    monkeypatch.setenv("GOOGLE_API_KEY", GOOGLE_SECRET)


def _store(tmp_path: Path, files: dict[str, str]) -> PromptStore:
    for rel, text in files.items():
        path = tmp_path / "prompts" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return PromptStore(tmp_path / "prompts")


# ---- the store ----------------------------------------------------------------------------------------------


def test_engine_ships_the_judge_assets() -> None:
    store = PromptStore(None)
    found = {a.prompt_id: (a.version, a.function_name, a.spec.family) for a in store.latest()}
    judges = {pid: found.get(pid) for pid in found if pid.startswith("vlm/assessment/")}
    assert judges == {
        "vlm/assessment/visual_consistency/pairwise": ("v1", "pairwise_judge", "pairwise_judge"),
        "vlm/assessment/viescore": ("v2", "viescore", "viescore"),
        "vlm/assessment/viescore/instruction_following": ("v2", "viescore_instruction_following", "viescore"),
        "vlm/assessment/viescore/visual_quality": ("v2", "viescore_visual_quality", "viescore"),
    }
    assert store.versions("vlm/assessment/viescore") == ["v1", "v2"]
    pairwise = store.get("vlm/assessment/visual_consistency/pairwise")
    assert pairwise.spec.metadata == {"input_schema_name": "PairJudgeInput", "output_schema_name": "PairJudgeOutput"}
    assert pairwise.output_model.__name__ == "PairwiseVerdict"


def test_versions_sort_naturally_and_latest_wins(tmp_path: Path) -> None:
    store = _store(tmp_path, {f"test/label/{v}.yaml": LABEL_ASSET for v in ("v1", "v2", "v9", "v10")})
    assert store.versions("test/label") == ["v1", "v2", "v9", "v10"]
    assert store.get("test/label").version == "v10"
    assert store.get("test/label", "v2").version == "v2"
    assert store.get("test/label").function_name == "label_image"


def test_function_name_defaults_to_last_id_segment(tmp_path: Path) -> None:
    store = _store(tmp_path, {"team/photo-tags/v1.yaml": LABEL_ASSET.replace("function: label_image\n", "")})
    assert store.get("team/photo-tags").function_name == "photo_tags"


def test_project_asset_overrides_engine_asset(tmp_path: Path) -> None:
    engine = PromptStore(None).get("vlm/assessment/viescore", "v1")
    text = engine.path.read_text().replace("You are an expert judge", "You are a strict judge")
    store = _store(tmp_path, {"vlm/assessment/viescore/v1.yaml": text})
    asset = store.get("vlm/assessment/viescore", "v1")
    assert asset.spec.system_prompt.startswith("You are a strict judge")
    assert asset.digest != engine.digest
    assert store.get("vlm/assessment/viescore", "v2").path == engine.path.with_name("v2.yaml")


def test_unknown_prompt_or_version_is_a_config_error() -> None:
    store = PromptStore(None)
    with pytest.raises(ConfigError, match="no prompt asset") as err:
        store.get("vlm/assessment/viescor")
    assert "vlm/assessment/viescore" in (err.value.hint or "")
    with pytest.raises(ConfigError, match="no version 'v7'"):
        store.get("vlm/assessment/viescore", "v7")


@pytest.mark.parametrize(("change", "message"), [
    (lambda t: t.replace("  - image: {source: image}", "  - image: {source: picture}"), "image slot source"),
    (lambda t: t.replace("  - image: {source: image}", "  - {text: x, image: {source: image}}"), "either"),
    (lambda t: t.replace("  - image: {source: image}", "  - {}"), "either"),
    (lambda t: t.replace("  json_schema:", "  model: PairwiseVerdict\n  json_schema:"), "exactly one"),
    (lambda t: t.replace("  note: text", "  note: tensor"), "inputs"),
    (lambda t: t + "temperature: 0.2\n", "unknown key"),
    (lambda t: t.replace("family: label\n", ""), "family"),
    (lambda t: t + "box_fields: [boxes]\n", "box_fields needs box_convention"),
])
def test_invalid_asset_is_a_config_error_naming_the_file(tmp_path: Path, change: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        _store(tmp_path, {"test/label/v1.yaml": change(LABEL_ASSET)})
    assert "v1.yaml" in str(err.value.path)


def test_unregistered_output_model_is_a_config_error(tmp_path: Path) -> None:
    text = LABEL_ASSET.split("output_schema:")[0] + "output_schema:\n  name: X\n  model: NoSuchModel\n"
    asset = _store(tmp_path, {"test/label/v1.yaml": text}).get("test/label")
    with pytest.raises(ConfigError, match="NoSuchModel") as err:
        _ = asset.output_model
    assert "PairwiseVerdict" in (err.value.hint or "")


# ---- rendering: data is data ---------------------------------------------------------------------------------

JINJA_VALUES = [
    "{{ 7 * 7 }}",
    "{% for i in range(3) %}x{% endfor %}",
    "{{ ''.__class__.__mro__ }}",
    "{{ note }}",
    "{# comment #} {{",
]


@pytest.mark.parametrize("value", JINJA_VALUES)
def test_values_from_data_are_never_rendered(tmp_path: Path, value: str) -> None:
    asset = _store(tmp_path, {"test/label/v1.yaml": LABEL_ASSET}).get("test/label")
    system, parts = asset.render({"note": value, "image": "a.png"})
    assert system == "You label images for the test suite."
    assert parts[0] == f"Note: {value}"
    assert parts[1] == ("image", "a.png")


def test_json_and_list_inputs_are_data_too(tmp_path: Path) -> None:
    asset_text = """\
        family: label
        inputs: {meta: json, tags: "text[]", images: images}
        system_prompt: "Tags: {{ tags | join(', ') }}"
        user_prompt:
          - text: "Meta: {{ meta | json }}"
          - text: "Name: {{ meta.name }}"
          - image: {source: images}
          - text: "Second:"
          - image: {source: images, index: 1}
        output_schema: {name: O, json_schema: {type: object, properties: {ok: {type: boolean}}}}
        metadata: {note: "{{ this_would_fail_if_rendered }}"}
        """
    asset = _store(tmp_path, {"test/multi/v1.yaml": textwrap.dedent(asset_text)}).get("test/multi")
    meta = json.dumps({"name": "{{ 1 + 1 }}", "n": 3})
    system, parts = asset.render({"meta": meta, "tags": ["{{ a }}", "b"], "images": ["x.png", "y.png", None]})
    assert system == "Tags: {{ a }}, b"
    assert parts == ['Meta: {"n": 3, "name": "{{ 1 + 1 }}"}', "Name: {{ 1 + 1 }}", ("image", "x.png"),
                     ("image", "y.png"), "Second:", ("image", "y.png")]
    assert asset.spec.metadata == {"note": "{{ this_would_fail_if_rendered }}"}


def test_template_errors_in_the_asset_are_config_errors(tmp_path: Path) -> None:
    text = LABEL_ASSET.replace("Note: {{ note }}", "Note: {{ missing_input }}")
    asset = _store(tmp_path, {"test/label/v1.yaml": text}).get("test/label")
    with pytest.raises(ConfigError, match="missing_input"):
        asset.render({"note": "x", "image": "a.png"})


def test_request_carries_schema_family_and_temperature(tmp_path: Path) -> None:
    asset = _store(tmp_path, {"test/label/v1.yaml": LABEL_ASSET + "parameters: {temperature: 0.25}\n"}).get(
        "test/label")
    request = request_for(asset, {"note": "n", "image": "a.png"})
    assert request.family == "label" and request.schema_name == "LabelOutput"
    assert request.temperature == 0.25
    assert request_for(asset, {"note": "n", "image": "a.png"}, temperature=0.9).temperature == 0.9
    assert request.schema == {"type": "object", "properties": {"label": {"type": "string"},
                                                               "count": {"type": "integer", "minimum": 0}},
                              "required": ["label", "count"], "additionalProperties": False}


# ---- output schemas -------------------------------------------------------------------------------------------

SCHEMA = {
    "type": "object",
    "properties": {
        "kind": {"type": "string", "enum": ["cat", "dog"]},
        "score": {"type": "number", "minimum": 0, "maximum": 10},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
        "where": {"type": "object", "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}}},
        "note": {"type": ["string", "null"]},
    },
    "required": ["kind", "score", "tags", "where"],
}


@pytest.mark.parametrize(("payload", "valid"), [
    ({"kind": "cat", "score": 3.5, "tags": ["a"], "where": {"x": 1, "y": 2}}, True),
    ({"kind": "dog", "score": 10, "tags": [], "where": {"x": 1, "y": 2}, "note": None}, True),
    ({"kind": "cow", "score": 3, "tags": [], "where": {"x": 1, "y": 2}}, False),  # not in the enum
    ({"kind": "cat", "score": 11, "tags": [], "where": {"x": 1, "y": 2}}, False),  # above the maximum
    ({"kind": "cat", "score": 1, "tags": ["a", "b", "c"], "where": {"x": 1, "y": 2}}, False),  # maxItems
    ({"kind": "cat", "score": 1, "tags": []}, False),  # a required field missing
    ({"kind": "cat", "score": 1, "tags": [], "where": {"x": 1, "y": 2}, "extra": 1}, False),  # unknown field
    ({"kind": "cat", "score": 1, "tags": [], "where": {"x": "one", "y": 2}}, False),  # nested type
])
def test_inline_schema_validation(payload: dict[str, Any], valid: bool) -> None:
    model = model_from_json_schema("Thing", SCHEMA)
    if valid:
        model.model_validate(payload)
    else:
        with pytest.raises(ValidationError):
            model.model_validate(payload)


def test_strict_schema_for_the_apis() -> None:
    strict = strict_json_schema(model_from_json_schema("Thing", SCHEMA))
    assert "$defs" not in json.dumps(strict) and "$ref" not in json.dumps(strict)
    assert strict["additionalProperties"] is False
    assert strict["required"] == list(SCHEMA["properties"])  # every property, optional ones included
    assert strict["properties"]["where"]["additionalProperties"] is False
    assert strict["properties"]["where"]["required"] == ["x", "y"]
    assert strict["properties"]["kind"]["enum"] == ["cat", "dog"]
    assert "title" not in json.dumps(strict) and '"default"' not in json.dumps(strict)


@pytest.mark.parametrize("schema", [
    {"type": "array", "items": {"type": "string"}},
    {"type": "object"},
    {"type": "object", "properties": {"x": {"type": "blob"}}},
])
def test_unsupported_schema(schema: dict[str, Any]) -> None:
    with pytest.raises(SchemaError):
        model_from_json_schema("Bad", schema)


@pytest.mark.parametrize(("text", "expected"), [
    ('{"a": 1}', {"a": 1}),
    ('  {"a": 1}\n', {"a": 1}),
    ('```json\n{"a": 1}\n```', {"a": 1}),
    ('Sure! ```\n{"a": [1, 2]}\n``` done', {"a": [1, 2]}),
    ('The answer is {"a": "}"} as asked.', {"a": "}"}),
    ('noise {not json} then {"a": {"b": 2}}', {"a": {"b": 2}}),
    ("[1, 2]", [1, 2]),
])
def test_extract_json(text: str, expected: Any) -> None:
    assert extract_json(text) == expected


@pytest.mark.parametrize("text", ["", "no json here", "{broken", '{"a": 1'])
def test_extract_json_fails(text: str) -> None:
    with pytest.raises(ValueError):
        extract_json(text)


# ---- assets as SQL functions ----------------------------------------------------------------------------------


def _label_project(make_project: MakeProject, server: LocalVLMServer, **files: str) -> ProjectDir:
    project = make_project({"project.yml": project_yml(server), "prompts/test/label/v1.yaml": LABEL_ASSET,
                            "models/m.sql": label_model(), **files})
    copy_scene(project)
    return project


def test_asset_is_a_sql_function_returning_a_struct(make_project: MakeProject) -> None:
    with LocalVLMServer(fixed(LABEL_ANSWER)) as server:
        project = _label_project(make_project, server)
        project.ok("run")
        [row] = struct_rows(project, "m")
        types = dict(project.rows("select column_name, data_type from information_schema.columns "
                                  "where table_name = 'm'"))
    assert row == {"label": "cat", "count": 2, "status": "ok", "error": None, "raw_response": LABEL_ANSWER}
    assert types["r"].replace('"', "") == ("STRUCT(label VARCHAR, count BIGINT, status VARCHAR, error VARCHAR, "
                                           "raw_response VARCHAR)")


def test_template_data_reaches_the_model_verbatim(make_project: MakeProject) -> None:
    """Notes from a seed (data) that look like Jinja are sent to the model exactly as they are."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["note", "image"])
    writer.writerows([value, "images/scene.png"] for value in JINJA_VALUES)
    with LocalVLMServer(fixed(LABEL_ANSWER)) as server:
        project = _label_project(make_project, server, **{
            "seeds/notes.csv": buffer.getvalue(),
            "models/m.sql": """\
                {{ config(materialized='table') }}
                select note, label_image(note, image) as r from {{ ref('notes') }}
                """})
        project.ok("build")
        sent = sorted(r.texts[0] for r in server.requests)
        rows = project.rows("select note, r.status from m order by note")
    assert sent == sorted(f"Note: {v}" for v in JINJA_VALUES)
    assert sorted(rows) == sorted((v, "ok") for v in JINJA_VALUES)


# ---- the cache key --------------------------------------------------------------------------------------------

V2_ASSET = LABEL_ASSET.replace("You label images for the test suite.", "You label images carefully.")


def _write_state(project: ProjectDir, server: LocalVLMServer, state: dict[str, Any]) -> None:
    gw = [f"model: {state.get('model', 'gpt-test')}"]
    gw += [f"{k}: {state[k]}" for k in ("temperature", "output_retries", "max_workers", "max_tokens") if k in state]
    gm = [f"model: {state['gm_model']}"] if "gm_model" in state else []
    prompts = {}
    if "version" in state:
        prompts["version"] = state["version"]
    if "override_temperature" in state:
        prompts["temperature"] = state["override_temperature"]
    extra = f"prompts:\n  test/label: {json.dumps(prompts)}\n" if prompts else ""
    asset = LABEL_ASSET
    if "asset_temperature" in state:
        asset += f"parameters: {{temperature: {state['asset_temperature']}}}\n"
    config = f"vlm_backend='{state['backend']}'" if "backend" in state else ""
    project.write({"project.yml": project_yml(server, gw=", ".join(gw), gm=", ".join(gm), extra=extra),
                   "prompts/test/label/v1.yaml": asset, "prompts/test/label/v2.yaml": V2_ASSET,
                   "models/m.sql": label_model(config=config)})


# (what changes, the state relative to the base project, whether the call is made again)
CACHE_STEPS = [
    ("first run", {"version": "v1"}, True),
    ("nothing", {"version": "v1"}, False),
    ("backend model", {"version": "v1", "model": "gpt-test-2"}, True),
    ("backend temperature", {"version": "v1", "temperature": 0.1}, True),  # and the model changed back
    ("prompt version", {"version": "v2"}, True),
    ("prompt version back", {"version": "v1"}, False),
    ("latest version when unpinned", {}, False),  # v2: already answered
    ("asset parameters", {"version": "v1", "asset_temperature": 0.2}, True),
    ("prompts: temperature", {"version": "v1", "override_temperature": 0.9}, True),
    ("model's vlm_backend", {"version": "v1", "backend": "gm"}, True),
    ("gemini model", {"version": "v1", "backend": "gm", "gm_model": "gem-2"}, True),
    ("output_retries", {"version": "v1", "output_retries": 5}, False),
    ("max_workers", {"version": "v1", "max_workers": 3}, False),
    ("max_tokens", {"version": "v1", "max_tokens": 100}, True),
]


def test_cache_key_is_prompt_version_backend_model_and_parameters(make_project: MakeProject) -> None:
    from PIL import Image

    with LocalVLMServer(fixed(LABEL_ANSWER)) as server:
        project = make_project()
        copy_scene(project)
        made = []
        for what, state, _ in CACHE_STEPS:
            _write_state(project, server, state)
            before = server.request_count
            project.ok("run")
            made.append((what, server.request_count - before))
        expected = [(what, int(recompute)) for what, _, recompute in CACHE_STEPS]
        assert made == expected
        calls_so_far = server.request_count
        Image.new("RGB", (32, 32), (1, 2, 3)).save(project.path("images/scene.png"))
        project.ok("run")
        assert server.request_count == calls_so_far + 1  # same path, new content: a new call
        sent = [(r.api, r.model, r.system.split(" images")[-1], r.temperature, r.max_tokens)
                for r in server.requests[:calls_so_far]]
    assert sent == [
        ("openai", "gpt-test", " for the test suite.", 0.7, 4096),
        ("openai", "gpt-test-2", " for the test suite.", 0.7, 4096),
        ("openai", "gpt-test", " for the test suite.", 0.1, 4096),
        ("openai", "gpt-test", " carefully.", 0.7, 4096),
        ("openai", "gpt-test", " for the test suite.", 0.2, 4096),
        ("openai", "gpt-test", " for the test suite.", 0.9, 4096),
        ("gemini", "gem-test", " for the test suite.", 0.3, 8192),
        ("gemini", "gem-2", " for the test suite.", 0.3, 8192),
        ("openai", "gpt-test", " for the test suite.", 0.7, 100),
    ]


def test_json_schema_echo_server(make_project: MakeProject) -> None:
    """A server that answers the schema's own field names gets them back as struct fields."""

    def echo(request: ParsedRequest) -> str:
        assert request.schema is not None
        return json.dumps({name: ("x" if spec["type"] == "string" else 1)
                           for name, spec in request.schema["properties"].items()})

    with LocalVLMServer(echo) as server:
        project = _label_project(make_project, server)
        project.ok("run")
        [row] = struct_rows(project, "m")
    assert (row["label"], row["count"], row["status"]) == ("x", 1, "ok")


TYPED_ASSET = """\
family: typed
inputs: {n: integer, x: number, flag: boolean, tags: "text[]", meta: json, image: image}
system_prompt: "Typed inputs."
user_prompt:
  - text: "n={{ n }} x={{ x }} flag={{ flag }} tags={{ tags | join('|') }} name={{ meta.name }} next={{ n + 1 }}"
  - image: {source: image}
output_schema:
  name: Typed
  json_schema:
    type: object
    properties: {ok: {type: boolean}, tags: {type: array, items: {type: string}}, ratio: {type: number}}
"""


def test_typed_inputs_and_outputs(make_project: MakeProject) -> None:
    answer = '{"ok": true, "tags": ["a", "b"], "ratio": 0.5}'
    with LocalVLMServer(fixed(answer)) as server:
        project = _label_project(make_project, server, **{
            "prompts/test/typed/v1.yaml": TYPED_ASSET,
            "models/m.sql": """\
                {{ config(materialized='table') }}
                select typed(3, 2.5, true, ['x', 'y'], '{"name": "n1"}', 'images/scene.png') as r
                """})
        project.ok("run")
        [(row,)] = project.rows("select r from m")
        [request] = server.requests
    assert request.texts == ("n=3 x=2.5 flag=True tags=x|y name=n1 next=4",)
    assert row == {"ok": True, "tags": ["a", "b"], "ratio": 0.5, "status": "ok", "error": None,
                   "raw_response": answer}
