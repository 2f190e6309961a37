"""The judges as SQL functions: pairwise_judge (winner aliases normalised, anything else re-asked, then a soft
'Failed') and viescore (one image: a score; two: the winner by score; v1 scalar and v2 lists read by prompt
id), table-driven, answered by a scripted server through the real openai SDK."""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Any

import pytest
from conftest import MakeProject, ProjectDir
from PIL import Image
from vlm_support import OPENAI_SECRET, ledger, project_yml

from dataproj.vlm.judges import normalize_winner, parse_vie_score
from dataproj.vlm.local_server import LocalVLMServer, ParsedRequest


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_SECRET)


# ---- the rules, table-driven ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "expected"), [
    ("Image A", "Image A"), ("image_a", "Image A"), ("image a", "Image A"), ("IMAGE A", "Image A"),
    ("a", "Image A"), ("A", "Image A"), ("  Image A \n", "Image A"),
    ("Image B", "Image B"), ("image_b", "Image B"), ("image b", "Image B"), ("b", "Image B"), ("B ", "Image B"),
    ("Tie", "Tie"), ("tie", "Tie"), ("TIE", "Tie"), ("equal", "Tie"), ("Equal", "Tie"), ("both", "Tie"),
    ("none", "Tie"), ("None", "Tie"),
    ("Image C", None), ("c", None), ("", None), ("image-a", None), ("imagea", None), ("left", None),
    ("Image A or B", None), ("draw", None), (None, None), (1, None), (["Image A"], None), ({"winner": "a"}, None),
])
def test_normalize_winner(raw: Any, expected: str | None) -> None:
    assert normalize_winner(raw) == expected


@pytest.mark.parametrize(("data", "prompt_id", "expected"), [
    ({"score": 7}, "vlm/assessment/viescore", 7.0),  # v1: the scalar
    ({"score": 7.5}, "vlm/assessment/viescore", 7.5),
    ({"score": 0}, "vlm/assessment/viescore", 0.0),
    ({"score": [20, 12]}, "vlm/assessment/viescore", 12.0),  # v2: otherwise score[1]
    ({"score": [20, 12]}, "vlm/assessment/viescore/instruction_following", 20.0),  # score[0]
    ({"score": [20, 12]}, "vlm/assessment/viescore/visual_quality", 12.0),  # min
    ({"score": [9, 20]}, "vlm/assessment/viescore/visual_quality", 9.0),
    ({"score": [9, 20]}, "vlm/assessment/viescore", 20.0),
    ({"score": [9, 20]}, "vlm/assessment/viescore/instruction_following", 9.0),
    ({"score": [3, 3]}, "team/visual_quality_v9", 3.0),
])
def test_parse_vie_score(data: dict[str, Any], prompt_id: str, expected: float) -> None:
    assert parse_vie_score(data, prompt_id) == expected


# ---- pairwise_judge end to end ----------------------------------------------------------------------------

# (instruction, the answers given to successive asks, expected value, expected number of asks)
PAIRWISE = [
    ("alias image_a", ['{"winner": "image_a"}'], "Image A", 1),
    ("exact", ['{"winner": "Image A", "reasoning": "A adds the circle"}'], "Image A", 1),
    ("letter a", ['{"winner": "A"}'], "Image A", 1),
    ("alias image b", ['{"winner": "image b"}'], "Image B", 1),
    ("padded b", ['{"winner": " b "}'], "Image B", 1),
    ("tie", ['{"winner": "TIE"}'], "Tie", 1),
    ("equal", ['{"winner": "equal"}'], "Tie", 1),
    ("both", ['{"winner": "Both"}'], "Tie", 1),
    ("none", ['{"winner": "none"}'], "Tie", 1),
    ("fenced", ['```json\n{"winner": "image_b"}\n```'], "Image B", 1),
    ("retried", ['{"winner": "Image C"}', "no idea", '{"winner": "b"}'], "Image B", 3),
    ("unknown alias", ['{"winner": "left"}'], "Failed", 3),
    ("not json", ["I cannot decide."], "Failed", 3),
    ("no winner", ['{"reasoning": "both are fine"}'], "Failed", 3),
    ("null winner", ['{"winner": null}'], "Failed", 3),
    ("number winner", ['{"winner": 1}'], "Failed", 3),
]


class Script:
    """Answers keyed by the instruction in the prompt; the n-th ask gets the n-th answer (the last repeats)."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asks: Counter[str] = Counter()
        self.images: dict[str, tuple[bytes, ...]] = {}
        self.lock = threading.Lock()

    def __call__(self, request: ParsedRequest) -> str:
        instruction = request.texts[0].removeprefix("Instruction: ")
        with self.lock:
            n = self.asks[instruction]
            self.asks[instruction] += 1
            self.images[instruction] = request.images
        answers = self.answers[instruction]
        return answers[min(n, len(answers) - 1)]


def _images(project: ProjectDir) -> dict[str, bytes]:
    colours = {"src": (200, 200, 200), "a": (250, 0, 0), "b": (0, 0, 250), "c": (0, 250, 0), "d": (0, 250, 0)}
    found = {}
    for name, colour in colours.items():
        path = project.path(f"images/{name}.png")
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (16 + len(found), 16), colour).save(path)
        found[name] = path.read_bytes()
    return found


def _judge_project(make_project: MakeProject, server: LocalVLMServer, model_sql: str, extra: str = "") -> ProjectDir:
    project = make_project({"project.yml": project_yml(server, extra=extra), "models/j.sql": model_sql})
    _images(project)
    return project


def test_pairwise_judge_normalises_retries_and_fails_softly(make_project: MakeProject) -> None:
    script = Script({instruction: answers for instruction, answers, _, _ in PAIRWISE})
    rows = ", ".join(f"('{instruction}')" for instruction, *_ in PAIRWISE)
    with LocalVLMServer(script) as server:
        project = _judge_project(make_project, server, f"""\
            {{{{ config(materialized='table', failure_budget=1) }}}}
            select instruction, pairwise_judge(instruction, 'images/src.png', 'images/a.png', 'images/b.png') as j
            from (values {rows}) t(instruction)
            """)
        project.ok("run")
        results = dict(project.rows("select instruction, j from j"))
        images = _images(project)
    for instruction, answers, expected, asks in PAIRWISE:
        result = results[instruction]
        assert result["type"] == "pairwise_comparison", instruction
        assert result["value"] == expected, (instruction, result)
        assert script.asks[instruction] == asks, instruction
        last = answers[min(asks, len(answers)) - 1]
        assert result["meta"] == {"raw_response": last}, instruction  # the raw answer is kept, also on failure
        assert result["raw_response"] == last
        assert result["status"] == ("failed" if expected == "Failed" else "ok"), instruction
        if expected == "Failed":
            assert "invalid output after 3 attempt(s)" in result["error"]
    assert script.images["exact"] == (images["src"], images["a"], images["b"])  # source, A, B
    calls = ledger(project)
    assert len(calls) == len(PAIRWISE)
    assert Counter(c["status"] for c in calls) == Counter(
        "failed" if expected == "Failed" else "ok" for *_, expected, _ in PAIRWISE)


@pytest.mark.parametrize("answer", ['["Image A"]', '"Image A"'])
def test_pairwise_judge_non_object_json_is_retried_then_failed(make_project: MakeProject, answer: str) -> None:
    script = Script({"x": [answer]})
    with LocalVLMServer(script) as server:
        project = _judge_project(make_project, server, """\
            {{ config(materialized='table', failure_budget=1) }}
            select pairwise_judge('x', 'images/src.png', 'images/a.png', 'images/b.png') as j
            """)
        project.ok("run")
        [(result,)] = project.rows("select j from j")
    assert script.asks["x"] == 3
    assert (result["value"], result["meta"]["raw_response"], result["status"]) == ("Failed", answer, "failed")


def test_pairwise_output_retries_setting(make_project: MakeProject) -> None:
    script = Script({"x": ['{"winner": "Image C"}']})
    with LocalVLMServer(script) as server:
        project = _judge_project(make_project, server, """\
            {{ config(materialized='table', failure_budget=1) }}
            select pairwise_judge('x', 'images/src.png', 'images/a.png', 'images/b.png') as j
            """)
        project.write({"project.yml": project_yml(server, gw="output_retries: 0")})
        project.ok("run")
        [(result,)] = project.rows("select j from j")
    assert script.asks["x"] == 1 and result["value"] == "Failed"


# ---- viescore end to end ----------------------------------------------------------------------------------

V2_SCORES = {"a": [20, 12], "b": [18, 15], "c": [9, 20], "d": [9, 20]}  # image -> the model's v2 answer


class ScoreByImage:
    """A VIEScore model: the score depends on the edited image (the second image of the request)."""

    def __init__(self, images: dict[str, bytes], answers: dict[str, str]) -> None:
        self.by_bytes = {images[name]: text for name, text in answers.items()}
        self.asks = 0

    def __call__(self, request: ParsedRequest) -> str:
        self.asks += 1
        assert len(request.images) == 2  # source, edited
        return self.by_bytes.get(request.images[1], "no score for this image")


VIESCORE_SQL = """\
{{ config(materialized='table', failure_budget=1) }}
select name, viescore('edit', 'images/src.png', images) as v,
       viescore_instruction_following('edit', 'images/src.png', images) as f,
       viescore_visual_quality('edit', 'images/src.png', images) as q
from (values ('one', ['images/a.png']), ('ab', ['images/a.png', 'images/b.png']),
             ('ac', ['images/a.png', 'images/c.png']), ('cd', ['images/c.png', 'images/d.png']),
             ('bad', ['images/a.png', 'images/src.png']), ('three', ['images/a.png', 'images/b.png', 'images/c.png']))
     t(name, images)
"""


def _v2(scores: list[int]) -> str:
    return json.dumps({"reasoning": "ok", "score": scores})


def test_viescore_v2_single_and_pairwise(make_project: MakeProject) -> None:
    with LocalVLMServer(lambda _r: "unused") as server:
        project = _judge_project(make_project, server, VIESCORE_SQL)
        images = _images(project)
        server.answer = ScoreByImage(images, {name: _v2(s) for name, s in V2_SCORES.items()})
        project.ok("run")
        rows = {name: (v, f, q) for name, v, f, q in project.rows("select name, v, f, q from j")}
    # one image: single_score with the score as the value
    v, f, q = rows["one"]
    assert (v["type"], v["value"], v["meta"]["vie_score"]) == ("single_score", "12", [12.0])
    assert (f["value"], q["value"]) == ("20", "12")
    assert v["meta"]["raw_response"] == {"edited_image_0": _v2([20, 12])}
    assert v["status"] == "ok"
    # two images: the winner by score; each function reads the v2 list its own way
    expected = {  # name: (viescore -> score[1], instruction_following -> score[0], visual_quality -> min)
        "ab": (("Image B", [12, 15]), ("Image A", [20, 18]), ("Image B", [12, 15])),
        "ac": (("Image B", [12, 20]), ("Image A", [20, 9]), ("Image A", [12, 9])),
        "cd": (("Tie", [20, 20]), ("Tie", [9, 9]), ("Tie", [9, 9])),
    }
    for name, wanted in expected.items():
        for result, (value, scores) in zip(rows[name], wanted, strict=True):
            assert result["type"] == "pairwise_comparison", name
            assert (result["value"], result["meta"]["vie_score"]) == (value, scores), (name, result)
            assert set(result["meta"]["raw_response"]) == {"edited_image_0", "edited_image_1"}
    # an image whose score never validates: Failed, None in its place, raw responses kept
    for result in rows["bad"]:
        assert (result["value"], result["status"]) == ("Failed", "failed")
        assert result["meta"]["vie_score"][1] is None and result["meta"]["vie_score"][0] is not None
        assert result["meta"]["raw_response"]["edited_image_1"] == "no score for this image"
    # three images: not a viescore call
    for result in rows["three"]:
        assert result["status"] == "failed" and "one or two edited images" in result["error"]


def test_viescore_v1_scalar(make_project: MakeProject) -> None:
    answers = {"a": '{"score": 7.5, "reason": "good"}', "b": '{"score": 9, "reason": "better"}',
               "c": '{"score": 11, "reason": "out of range"}', "d": '{"score": 7.5, "reason": "same"}'}
    with LocalVLMServer(lambda _r: "unused") as server:
        project = _judge_project(make_project, server, """\
            {{ config(materialized='table', failure_budget=1) }}
            select name, viescore('edit', 'images/src.png', images) as v
            from (values ('a', ['images/a.png']), ('ab', ['images/a.png', 'images/b.png']),
                         ('ad', ['images/a.png', 'images/d.png']), ('c', ['images/c.png'])) t(name, images)
            """, extra="prompts:\n  vlm/assessment/viescore: {version: v1}\n")
        script = ScoreByImage(_images(project), answers)
        server.answer = script
        project.ok("run")
        rows = dict(project.rows("select name, v from j"))
    assert (rows["a"]["type"], rows["a"]["value"], rows["a"]["meta"]["vie_score"]) == ("single_score", "7.5", [7.5])
    assert (rows["ab"]["value"], rows["ab"]["meta"]["vie_score"]) == ("Image B", [7.5, 9.0])
    assert (rows["ad"]["value"], rows["ad"]["meta"]["vie_score"]) == ("Tie", [7.5, 7.5])
    assert (rows["c"]["value"], rows["c"]["meta"]["vie_score"]) == ("Failed", [None])  # 11 > 10: re-asked, failed
    assert rows["c"]["meta"]["raw_response"] == {"edited_image_0": answers["c"]}
    assert script.asks == 1 + 2 + 2 + 3  # a; a and b; a and d; c three times (output_retries 2)
