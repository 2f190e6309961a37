"""The vision annotation and the relevance judge of the image-search pipeline: the offline answers, and the
checks the models make of any backend's answers, exercised with the real openai SDK against a local server."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml
from conftest import run_main
from PIL import Image
from test_imsearch_pipeline import ROOT, imsearch_vars, make_imsearch_project

from dataproj.vlm.local_server import LocalVLMServer, ParsedRequest
from dataproj.vlm.offline import answer
from dataproj.vlm.offline_imsearch import DATA_LABEL, OfflineAnswerError
from dataproj.vlm.prompts import PromptStore
from dataproj.vlm.serve import OfflineAnswerer

SCENES = ROOT / "seeds" / "scenes"
SMALL = ["fieldkit/scene_040.png", "fieldkit/scene_045.jpg", "fieldkit/scene_052.png", "fieldkit/scene_055.png",
         "labshots/scene_021.png", "labshots/scene_022.png", "labshots/scene_031.png", "labshots/scene_039.png",
         "parkcam/scene_011.png", "parkcam/scene_012.png", "parkcam/scene_015.png", "parkcam/scene_017.png"]


def spec_text(**overrides: Any) -> str:
    settings = imsearch_vars()
    spec = {"taxonomy": settings["taxonomy_facets"], "booleans": settings["boolean_facets"],
            "tags": {"vocabulary": settings["tags"]["vocabulary"], "min": 8, "max": 20}} | overrides
    return "ANNOTATION SPEC (JSON):\n" + json.dumps(spec)


def test_offline_annotation_answers_every_facet_from_the_pixels() -> None:
    result = answer("imsearch_vision_annotation", "", [spec_text()], [str(SCENES / "labshots/scene_021.png")], None,
                    None)
    facets = {"dominant_shape": "circle", "dominant_color": "red", "background_tone": "dark",
              "background_kind": "plain", "object_count": "two", "has_red": True, "has_circle": True,
              "multiple_objects": True}
    assert {f: result[f] for f in facets} == facets
    assert set(result["confidence"]) == set(facets)
    assert all(0 <= c <= 1 for c in result["confidence"].values())
    assert result["tags"][:2] == ["red_circle", "white_star"]
    assert result["summary"] == ("Two objects on a dark charcoal plain background: a large red circle and a large "
                                 "white star.")
    assert len(result["summary"].split()) <= 30


def test_offline_annotation_refuses_facets_it_cannot_see() -> None:
    with pytest.raises(OfflineAnswerError, match="cannot compute taxonomy facet 'weather'"):
        answer("imsearch_vision_annotation", "", [spec_text(taxonomy={"weather": ["sunny", "rainy"]})],
               [str(SCENES / "labshots/scene_021.png")], None, None)
    with pytest.raises(OfflineAnswerError, match="the image shows 'star', which is not an allowed value"):
        answer("imsearch_vision_annotation", "", [spec_text(taxonomy={"dominant_shape": ["circle", "square"]})],
               [str(SCENES / "parkcam/scene_016.png")], None, None)


def test_offline_judge_writes_the_query_from_the_seed_and_labels_by_annotations() -> None:
    seed = {"image_id": "s", "dominant_color": "orange", "dominant_shape": "circle", "background_tone": "dark",
            "tags": ["orange_circle", "dark_background"]}
    candidates = [seed,
                  {"image_id": "a", "tags": ["blue_square", "orange_circle", "dark_background"]},  # not dominant
                  {"image_id": "b", "tags": ["orange_circle", "light_background"]},  # wrong tone
                  {"image_id": "c", "tags": ["orange_square", "blue_circle", "dark_background"]}]  # split pair
    data = {"query_id": "q", "seed_images": [seed], "candidates": candidates}
    result = answer("imsearch_relevance_judge", "", [f"{DATA_LABEL}\n{json.dumps(data)}"], [], None, None)
    assert result == {"query_text": "an orange circle on a dark background",
                      "judgments": [{"image_id": i, "relevance_label": label}
                                    for i, label in (("s", 1), ("a", 1), ("b", 0), ("c", 0))]}


# ---- answers of another backend: checked, re-asked, failed visibly ------------------------------------------------


class Scripted:
    """Answers like the offline backend, except: the vision annotation of 256x256 images names a shape and a tag
    outside the spec; the judge drops the last candidate of query_002 once and of query_003 on its first three
    requests (all the attempts of a run), and names a candidate twice in query_002's first answer."""

    def __init__(self) -> None:
        self.offline = OfflineAnswerer(PromptStore(ROOT / "prompts"))
        self.judge_requests: Counter[str] = Counter()
        self.reasks: list[str] = []  # the text each re-ask added

    def __call__(self, request: ParsedRequest) -> str:
        value = json.loads(self.offline(request))
        self.reasks += [t for t in request.texts if t.startswith("Your previous answer could not be used")]
        if "judgments" in value:
            data = json.loads(next(t for t in request.texts if DATA_LABEL in t).split(DATA_LABEL, 1)[1])
            self.judge_requests[data["query_id"]] += 1
            seen = self.judge_requests[data["query_id"]]
            if (data["query_id"], seen) in (("query_002", 1), ("query_003", 1), ("query_003", 2), ("query_003", 3)):
                value["judgments"] = value["judgments"][:-1]
            if (data["query_id"], seen) == ("query_002", 1):
                value["judgments"].append(value["judgments"][0])
        elif request.images:
            with Image.open(io.BytesIO(request.images[0])) as image:
                square = image.size == (256, 256)
            if square:
                value["dominant_shape"] = "hexagon"
                value["tags"] = [*value["tags"], "sparkly"]
        return json.dumps(value)


def scripted_project(root: Path, server: LocalVLMServer, **overrides: Any) -> Path:
    settings = imsearch_vars(**overrides)
    settings["query_plan"] = {**settings["query_plan"], "num_seeds": 3, "pos_total": 1, "neutral_total": 1,
                              "neg_total": 4, "neg_hard": 2, "neg_nearmiss": 1, "neg_easy": 1}
    project = make_imsearch_project(root, settings, images=SMALL)
    config = yaml.safe_load((project / "project.yml").read_text())
    config["backends"] = {"gw": {"type": "openai", "base_url": server.openai_base_url, "model": "gpt-test",
                                 "backoff_initial_s": 0.01}}
    config["vlm"] = {"backend": "gw"}
    # 3 of 12 annotations fail on purpose: more than the default budget of 20% of calls
    config.setdefault("models", {}).setdefault("imsearch", {})["annotations"] = {"+failure_budget": 0.5}
    (project / "project.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    return project


def rows(project: Path, sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(project / "warehouse" / "dataproj.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_answers_outside_the_spec_and_judgments_missing_candidates_are_kept_as_failures(tmp_path: Path) -> None:
    scripted = Scripted()
    server = LocalVLMServer(scripted).start()
    try:
        project = scripted_project(tmp_path / "p", server)
        result = run_main(["build", "--select", "+qrels", "--project-dir", str(project)])
        assert result.code == 0, result.text
        annotations = dict(rows(project, "select image_id, status || coalesce(': ' || error, '') from annotations"))
        # The output schema is rendered from vars.imsearch, so an answer outside it is invalid output: asked again
        # (three attempts, the backend's output_retries 2), then failed with the first problem named.
        assert annotations["fieldkit/scene_040.png"] == (
            "failed: invalid output after 3 attempt(s): dominant_shape: Input should be 'circle', 'square', "
            "'triangle' or 'star'")
        assert annotations["fieldkit/scene_045.jpg"] == "ok"
        invalid = {"fieldkit/scene_040.png", "labshots/scene_022.png", "parkcam/scene_012.png"}  # the 256x256 ones
        assert {i for i, status in annotations.items() if status != "ok"} == invalid
        planned = {i for (ids,) in rows(project, "select candidate_image_ids[2:] from query_plan") for i in ids}
        assert planned and not planned & invalid  # a failed annotation is never a candidate

        verdicts = dict(rows(project, "select query_id, any_value(judge_status || coalesce(': ' || judge_error, '')) "
                                      "from qrels group by 1"))
        # query_001's seed (the first image) has no usable annotation: its plan fails, its seed row stays visible.
        assert verdicts["query_001"] == "failed: seed images without a usable annotation: fieldkit/scene_040.png"
        assert verdicts["query_002"] == "ok"
        candidates = rows(project, "select candidate_image_ids from query_plan where query_id = 'query_003'")[0][0]
        assert verdicts["query_003"] == (
            "failed: invalid output after 3 attempt(s): judgments[].image_id must name each "
            f"candidates[].image_id exactly once, missing {candidates[-1]}")
        labels = rows(project, "select count(*), count(relevance_label) from qrels where query_id = 'query_003'")
        assert labels == [(len(candidates), 0)]  # kept and visible, without labels
        assert scripted.judge_requests == {"query_002": 2, "query_003": 3}
        # Each re-ask names the problem of the answer before it.
        assert any(f"missing {candidates[-1]}" in text for text in scripted.reasks)
        assert any("named more than once" in text for text in scripted.reasks)

        # The failed judge call is a failed call, not a cached success: --retry-failed asks again for that query
        # only; every other answer comes from the cache.
        result = run_main(["run", "--select", "qrels", "--retry-failed", "--project-dir", str(project)])
        assert result.code == 0, result.text
        assert scripted.judge_requests == {"query_002": 2, "query_003": 4}
        assert dict(rows(project, "select query_id, any_value(judge_status) from qrels group by 1")) == {
            "query_001": "failed", "query_002": "ok", "query_003": "ok"}
        assert rows(project, "select count(*) = count(relevance_label) from qrels where query_id = 'query_003'") == [
            (True,)]
    finally:
        server.stop()


def test_new_images_annotate_only_themselves(tmp_path: Path) -> None:
    project = make_imsearch_project(tmp_path / "p", images=SMALL[:4])
    build = ["build", "--select", "+annotations", "--exclude", "resource_type:test", "--project-dir", str(project)]
    assert run_main(build).code == 0
    added = project / "seeds" / "scenes" / "labshots" / "scene_021.png"
    added.parent.mkdir(parents=True, exist_ok=True)
    added.write_bytes((SCENES / "labshots" / "scene_021.png").read_bytes())
    result = run_main(build)
    assert result.code == 0, result.text
    node = next(r for r in json.loads((project / "warehouse/target/run_results.json").read_text())["results"]
                if r["name"] == "annotations")
    assert (node["rows"], node["calls"], node["cache_hits"]) == (1, 1, 0)
    assert rows(project, "select count(*), count_if(status = 'ok') from annotations") == [(5, 5)]
