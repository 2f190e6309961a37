"""The offline backend: deterministic judge answers computed from the images. Edits are made here with Pillow
from a sample scene - a red circle added (faithful), the same on a darkened image (unfaithful) and an
unchanged copy (failed edit) - and the judges must rank them; the offline server gives the same answers to
the real SDKs; a prompt family the offline backend does not know is a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import MakeProject, ProjectDir
from vlm_support import GOOGLE_SECRET, LABEL_ASSET, OPENAI_SECRET, copy_scene, label_model, ledger, make_edits

from dataproj.vlm.offline import FAMILIES, UnknownFamilyError, answer
from dataproj.vlm.offline_judges import EditIntent, parse_instruction
from dataproj.vlm.serve import offline_server

INSTRUCTION = "Add a red circle"
PAIRS = {  # name: (image A, image B, expected winner)
    "faithful_vs_unfaithful": ("faithful", "unfaithful", "Image A"),
    "unfaithful_vs_faithful": ("unfaithful", "faithful", "Image B"),
    "faithful_vs_failed": ("faithful", "failed", "Image A"),
    "failed_vs_faithful": ("failed", "faithful", "Image B"),
    "unfaithful_vs_failed": ("unfaithful", "failed", "Image A"),
    "faithful_vs_itself": ("faithful", "faithful", "Tie"),
}
EDITS = ("faithful", "unfaithful", "failed")


def _judge_sql(suffix: str = "", pairs: tuple[str, ...] = tuple(PAIRS), edits: tuple[str, ...] = EDITS) -> str:
    """Every pair judged by pairwise_judge and two-image viescore; every edit scored by the three viescores."""
    pair_rows = ", ".join(f"('{name}', 'edits/{PAIRS[name][0]}.png', 'edits/{PAIRS[name][1]}.png')" for name in pairs)
    singles = ", ".join(f"('{e}', 'edits/{e}.png')" for e in edits)
    return f"""\
        {{{{ config(materialized='table') }}}}
        select 'pair' as kind, name,
               pairwise_judge{suffix}('{INSTRUCTION}', 'edits/source.png', a, b) as j,
               viescore{suffix}('{INSTRUCTION}', 'edits/source.png', [a, b]) as v,
               null::varchar as f, null::varchar as q
        from (values {pair_rows}) t(name, a, b)
        union all
        select 'single', name, null, viescore{suffix}('{INSTRUCTION}', 'edits/source.png', [img]),
               viescore_instruction_following{suffix}('{INSTRUCTION}', 'edits/source.png', [img]).value,
               viescore_visual_quality{suffix}('{INSTRUCTION}', 'edits/source.png', [img]).value
        from (values {singles}) t(name, img)
        """


def _offline_project(make_project: MakeProject) -> ProjectDir:
    """No backends configured: the offline backend is the default."""
    project = make_project({"project.yml": "name: offline_demo\n", "models/judged.sql": _judge_sql()})
    make_edits(project.path("edits"))
    return project


def _results(project: ProjectDir) -> tuple[dict[str, dict], dict[str, tuple]]:
    pairs = {name: (j, v) for kind, name, j, v in project.rows("select kind, name, j, v from judged")
             if kind == "pair"}
    singles = {name: (v, f, q) for kind, name, v, f, q in project.rows("select kind, name, v, f, q from judged")
               if kind == "single"}
    return pairs, singles


def test_offline_judges_prefer_the_faithful_edit(make_project: MakeProject) -> None:
    project = _offline_project(make_project)
    project.ok("run")
    pairs, singles = _results(project)
    for name, (_, _, winner) in PAIRS.items():
        judged, scored = pairs[name]
        assert (judged["type"], judged["value"], judged["status"]) == ("pairwise_comparison", winner, "ok"), name
        assert "Image A scores" in judged["meta"]["raw_response"]
        assert scored["type"] == "pairwise_comparison"
        assert scored["value"] == winner, (name, scored["meta"]["vie_score"])
    overall = {name: float(v["value"]) for name, (v, _, _) in singles.items()}
    following = {name: float(f) for name, (_, f, _) in singles.items()}
    quality = {name: float(q) for name, (_, _, q) in singles.items()}
    assert overall["faithful"] > overall["unfaithful"] > overall["failed"], overall
    assert following["faithful"] == following["unfaithful"] > following["failed"], following
    assert quality["faithful"] > quality["unfaithful"] > quality["failed"], quality
    assert overall["faithful"] == 25  # the full score on v2's 0..25 scale
    for v, _, _ in singles.values():
        assert v["type"] == "single_score" and len(v["meta"]["vie_score"]) == 1
    calls = ledger(project)
    assert {c["backend"] for c in calls} == {"offline"} and {c["model"] for c in calls} == {"offline-skimage-1"}
    assert all(c["status"] == "ok" and c["input_tokens"] > 0 for c in calls)


def test_offline_answers_through_both_sdks_match(make_project: MakeProject, monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    """The offline server answers the same as the offline backend, via openai and google-genai."""
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_SECRET)
    monkeypatch.setenv("GOOGLE_API_KEY", GOOGLE_SECRET)
    with offline_server(None) as server:
        yml = (f"name: offline_demo\nbackends:\n"
               f'  gw: {{type: openai, base_url: "{server.openai_base_url}", model: gpt-test}}\n'
               f'  gm: {{type: gemini, base_url: "{server.gemini_base_url}", model: gem-test}}\n')
        subset = {"pairs": ("unfaithful_vs_faithful",), "edits": ("unfaithful",)}
        project = make_project({"project.yml": yml, "models/judged.sql": _judge_sql("__offline", **subset),
                                "models/via_openai.sql": _judge_sql("__gw", **subset),
                                "models/via_gemini.sql": _judge_sql("__gm", **subset)})
        make_edits(project.path("edits"))
        project.ok("run")
        apis = {r.api for r in server.requests}
    expected = project.rows("select kind, name, j.value, v.value, f, q from judged order by kind, name")
    for table in ("via_openai", "via_gemini"):
        got = project.rows(f"select kind, name, j.value, v.value, f, q from {table} order by kind, name")
        assert got == expected, table
    assert apis == {"openai", "gemini"}


def test_unknown_family_is_a_clear_error(make_project: MakeProject) -> None:
    with pytest.raises(UnknownFamilyError, match="cannot answer prompt family 'label'") as err:
        answer("label", "", ["Note: x"], [], None, None)
    assert "pairwise_judge" in str(err.value) and "viescore" in str(err.value)
    assert "label" not in FAMILIES
    project = make_project({"project.yml": "name: offline_demo\n", "prompts/test/label/v1.yaml": LABEL_ASSET,
                            "models/m.sql": label_model()})
    copy_scene(project)
    project.ok("run")  # one failed row is within the failure budget
    [(row,)] = project.rows("select r from m")
    assert row["status"] == "failed" and row["label"] is None
    assert "cannot answer prompt family 'label'" in row["error"] and "real backend" in row["error"]
    [call] = ledger(project)
    assert call["status"] == "failed" and "cannot answer prompt family 'label'" in call["error"]
    assert call["attempts"] == 1  # not retried: asking again cannot help


@pytest.mark.parametrize(("text", "intent"), [
    ("Add a red circle", EditIntent("add", "red", "circle")),
    ("add one small blue star to the left", EditIntent("add", "blue", "star")),
    ("Remove the yellow square", EditIntent("remove", "yellow", "square")),
    ("Change the purple circle to green", EditIntent("recolor", "purple", "circle", "green")),
    ("make the large orange triangle blue", EditIntent("recolor", "orange", "triangle", "blue")),
    ("Make it look nicer", EditIntent("unknown")),
])
def test_instruction_grammar(text: str, intent: EditIntent) -> None:
    assert parse_instruction(text) == intent


def test_offline_scores_follow_the_edit(tmp_path: Path) -> None:
    """The answer functions themselves: pairwise winners and v1 / v2 viescore values for each edit."""
    edits = make_edits(tmp_path / "edits")
    source = str(edits["source"])
    text = [f"Instruction: {INSTRUCTION}"]
    v1 = {e: answer("viescore", "", text, [source, str(edits[e])], {"properties": {"score": {"type": "number"}}},
                    None)["score"] for e in EDITS}
    v2 = {e: answer("viescore", "", text, [source, str(edits[e])], {"properties": {"score": {"type": "array"}}},
                    None)["score"] for e in EDITS}
    assert v1 == {"faithful": 10.0, "unfaithful": 6.0, "failed": 4.0}
    assert v2 == {"faithful": [25, 25], "unfaithful": [25, 15], "failed": [0, 10]}
    assert answer("pairwise_judge", "", text, [source, str(edits["unfaithful"]), str(edits["faithful"])], None,
                  None)["winner"] == "Image B"
