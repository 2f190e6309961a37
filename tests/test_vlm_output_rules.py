"""What an answer must be beyond parsing: output schemas rendered from the project's vars (so enums from a
taxonomy reach the API), and output checks against the call's own inputs (a judge labels exactly its
candidates). A broken rule is invalid output: re-asked with the problem named, then a failed call that
`--retry-failed` asks again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import MakeProject
from vlm_support import LABEL_ASSET, copy_scene, label_model, project_yml, struct_rows

from dataproj.errors import ConfigError
from dataproj.vlm.checks import CheckFailed, check_answer, values_at
from dataproj.vlm.local_server import LocalVLMServer, ParsedRequest
from dataproj.vlm.prompts import OutputCheck, PromptStore

VAR_SCHEMA = """\
output_schema:
  name: LabelOutput
  json_schema: |
    type: object
    properties:
      label: {type: string, enum: {{ var('labels') | json }}}
      count: {type: integer, minimum: 0}
"""
TEMPLATED_ASSET = LABEL_ASSET.split("output_schema:")[0] + VAR_SCHEMA


def _store(tmp_path: Path, text: str, variables: dict[str, Any] | None) -> PromptStore:
    path = tmp_path / "prompts" / "test" / "label" / "v1.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return PromptStore(tmp_path / "prompts", variables)


# ---- checks -------------------------------------------------------------------------------------------------


def test_values_at_walks_lists_and_keys() -> None:
    answer = {"judgments": [{"image_id": "a"}, {"image_id": "b"}, {"other": 1}, "junk"], "tags": ["x", None, "y"]}
    assert values_at(answer, "judgments[].image_id") == ["a", "b"]
    assert values_at(answer, "tags[]") == ["x", "y"]
    assert values_at(answer, "missing[].image_id") == []
    assert values_at({"judgments": None}, "judgments[].image_id") == []


COVERS = OutputCheck(kind="covers", answer="judgments[].image_id", input="candidates[].image_id")
CANDIDATES = json.dumps([{"image_id": i} for i in ("a", "b", "c")])  # a JSON argument arrives as text


def _judged(*ids: str) -> dict[str, Any]:
    return {"judgments": [{"image_id": i, "relevance_label": 1} for i in ids]}


@pytest.mark.parametrize(("ids", "problem"), [
    (("c", "a", "b"), None),
    (("a", "b"), "judgments[].image_id must name each candidates[].image_id exactly once, missing c"),
    (("a", "b", "c", "z"), "judgments[].image_id must name each candidates[].image_id exactly once, "
                           "not in candidates[].image_id: z"),
    (("a", "b", "b", "c"), "judgments[].image_id must name each candidates[].image_id exactly once, "
                           "named more than once: b"),
    ((), "judgments[].image_id must name each candidates[].image_id exactly once, missing a, b, c"),
])
def test_covers_names_what_is_missing_extra_or_repeated(ids: tuple[str, ...], problem: str | None) -> None:
    if problem is None:
        check_answer([COVERS], _judged(*ids), {"candidates": CANDIDATES})
        return
    with pytest.raises(CheckFailed) as err:
        check_answer([COVERS], _judged(*ids), {"candidates": CANDIDATES})
    assert str(err.value) == problem


def test_distinct_and_long_lists_are_shortened() -> None:
    distinct = OutputCheck(kind="distinct", answer="tags[]")
    check_answer([distinct], {"tags": ["a", "b"]}, {})
    with pytest.raises(CheckFailed, match=r"^tags\[\] repeats a$"):
        check_answer([distinct], {"tags": ["a", "b", "a"]}, {})
    many = json.dumps([{"image_id": f"i{n}"} for n in range(8)])
    with pytest.raises(CheckFailed, match=r"missing i0, i1, i2, i3, i4 and 3 more"):
        check_answer([COVERS], _judged(), {"candidates": many})


@pytest.mark.parametrize(("checks", "message"), [
    ("  - {kind: covers, answer: 'x[]'}", "`input:` is required by kind covers"),
    ("  - {kind: distinct, answer: 'x[]', input: 'note'}", "allowed only there"),
    ("  - {kind: covers, answer: 'x[]', input: 'candidates[].id'}", "does not start with one of the inputs"),
    ("  - {kind: unique, answer: 'x[]'}", "covers"),
    ("  - {kind: covers, answer: 'x[]', input: 'note'}", "input 'note' is text, not a list to cover"),
])
def test_bad_checks_are_config_errors_naming_the_asset(tmp_path: Path, checks: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        _store(tmp_path, LABEL_ASSET + "output_checks:\n" + checks + "\n", None)
    assert "v1.yaml" in str(err.value.path)


# ---- output schemas rendered from vars ---------------------------------------------------------------------------


def test_schema_template_renders_from_vars_into_the_model_and_the_key(tmp_path: Path) -> None:
    asset = _store(tmp_path, TEMPLATED_ASSET, {"labels": ["cat", "dog"], "other": 1}).get("test/label")
    assert asset.json_schema["properties"]["label"] == {"type": "string", "enum": ["cat", "dog"]}
    model = asset.output_model
    assert model.model_validate({"label": "dog", "count": 1}).label == "dog"
    with pytest.raises(ValueError, match="Input should be 'cat' or 'dog'"):
        model.model_validate({"label": "bird", "count": 1})
    # The cache key follows the rendered schema: another taxonomy is another key, an unrelated var is not.
    same = _store(tmp_path, TEMPLATED_ASSET, {"labels": ["cat", "dog"], "other": 2}).get("test/label")
    wider = _store(tmp_path, TEMPLATED_ASSET, {"labels": ["cat", "dog", "bird"]}).get("test/label")
    assert asset.digest == same.digest != wider.digest


@pytest.mark.parametrize(("variables", "template", "message"), [
    ({}, VAR_SCHEMA, "output_schema uses var\\('labels'\\), which is not set"),
    ({"labels": ["a"]}, VAR_SCHEMA.replace("{{ var('labels') | json }}", "{{ var('labels') }"), "template"),
    ({"labels": ["a"]}, VAR_SCHEMA.replace("type: object", "type: object\n    bad: [unclosed"), "YAML"),
    ({"labels": ["a"]}, "output_schema:\n  name: X\n  json_schema: '- just a list'\n", "not a JSON schema object"),
])
def test_schema_template_errors_name_the_asset(tmp_path: Path, variables: dict[str, Any], template: str,
                                               message: str) -> None:
    asset = _store(tmp_path, LABEL_ASSET.split("output_schema:")[0] + template, variables).get("test/label")
    with pytest.raises(ConfigError, match=message) as err:
        _ = asset.output_model
    assert "v1.yaml" in str(err.value.path)


def test_api_receives_the_rendered_enum_and_vars_change_the_answer_key(make_project: MakeProject) -> None:
    """The schema reaches the API with the taxonomy's enum; an answer outside it fails after the re-asks; with
    --vars widening the taxonomy the call is a new one and the same answer is valid."""
    def bird(request: ParsedRequest) -> str:
        return '{"label": "bird", "count": 1}'

    with LocalVLMServer(bird) as server:
        project = make_project({
            "project.yml": project_yml(server, gw="output_retries: 1", extra="vars: {labels: [cat, dog]}\n"),
            "prompts/test/label/v1.yaml": TEMPLATED_ASSET, "models/m.sql": label_model()})
        copy_scene(project)
        project.ok("run")
        [row] = struct_rows(project, "m")
        assert row["status"] == "failed"
        assert row["error"].startswith("invalid output after 2 attempt(s): label: Input should be 'cat' or 'dog'")
        assert server.request_count == 2
        assert server.requests[0].schema["properties"]["label"]["enum"] == ["cat", "dog"]

        project.ok("run", "--vars", "{labels: [cat, dog, bird]}")
        [row] = struct_rows(project, "m")
        assert (row["status"], row["label"]) == ("ok", "bird")
        assert server.request_count == 3
        assert server.requests[-1].schema["properties"]["label"]["enum"] == ["cat", "dog", "bird"]
