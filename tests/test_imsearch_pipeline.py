"""The image-search pipeline end to end on the bundled sample, offline: the scheduled workflow's `dataproj` steps
(.github/workflows/dataset.yml) run unchanged in a copy of the pipeline's files, and their outputs are read back
with the tools their users use (DuckDB, datasets, ir_measures, pytrec_eval)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "dataset.yml"
EXPORTS = ("images", "annotations", "seeds", "query_plan", "qrels", "qrels_with_score")


def imsearch_vars(**overrides: Any) -> dict[str, Any]:
    """vars.imsearch of the repository's project.yml, with top-level keys replaced by `overrides`."""
    config = yaml.safe_load((ROOT / "project.yml").read_text(encoding="utf-8"))
    return {**config["vars"]["imsearch"], **overrides}


def make_imsearch_project(root: Path, settings: dict[str, Any] | None = None, *,
                          images: list[str] | None = None) -> Path:
    """The imsearch pipeline's files (models, prompts, seeds, sample scenes and truth) in a project of its own.

    `images` keeps only those files of seeds/scenes (relative paths), for small projects."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "models" / "imsearch", root / "models" / "imsearch")
    shutil.copytree(ROOT / "prompts" / "imsearch", root / "prompts" / "imsearch")
    shutil.copytree(ROOT / "seeds" / "imsearch", root / "seeds" / "imsearch")
    shutil.copy(ROOT / "seeds" / "scene_truth.jsonl", root / "seeds" / "scene_truth.jsonl")
    scenes = ROOT / "seeds" / "scenes"
    for rel in images or [p.relative_to(scenes).as_posix() for p in scenes.rglob("*") if p.is_file()]:
        (root / "seeds" / "scenes" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(scenes / rel, root / "seeds" / "scenes" / rel)
    config = {"name": "imsearch_test", "threads": 4, "vars": {"imsearch": settings or imsearch_vars()},
              "seeds": {"scenes": {"+format": "images"}}}
    (root / "project.yml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return root


def workflow_scripts() -> list[str]:
    """The `run:` scripts of the workflow steps that call dataproj, in order."""
    steps = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))["jobs"]["build"]["steps"]
    return [step["run"] for step in steps if "dataproj" in step.get("run", "")]


def run_workflow(project: Path, steps: int | None = None) -> list[subprocess.CompletedProcess[str]]:
    """Run the workflow's dataproj steps (the first `steps` of them) in `project`, as CI's shell would."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HF_REPO_ID")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["HF_HOME"] = str(project / ".hf_home")
    done = []
    for script in workflow_scripts()[:steps]:
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=project, env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{script}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        done.append(result)
    return done


def query(project: Path, sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(project / "warehouse" / "dataproj.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    settings = imsearch_vars(summary={"dpi": 40, "sample_images": 12})
    project = make_imsearch_project(tmp_path_factory.mktemp("imsearch") / "project", settings)
    first = run_workflow(project)
    calls_after_first = query(project, "select count(*) from dataproj_calls")[0][0]
    second = run_workflow(project, steps=1)  # the next scheduled build
    return {"project": project, "first": first, "second": second, "calls_after_first": calls_after_first}


def test_the_workflow_builds_every_reference_export(built: dict[str, Any]) -> None:
    exports = built["project"] / "warehouse" / "exports"
    for name in EXPORTS:
        assert (exports / f"{name}.jsonl").stat().st_size > 0
        assert (exports / f"{name}.parquet").stat().st_size > 0
    assert (exports / "qrels.trec").is_file() and (exports / "qrels_with_score.run").is_file()
    summary = {p.name for p in (exports / "summary").iterdir()}
    assert {"image_proportion_donuts.png", "dataset_proportion_donuts.png", "query_relevancy_distribution.png",
            "relevance_overview.png", "relevance_by_dominant_shape.png", "query_text_length_distribution.png",
            "similarity_score_analysis.png", "confidence_by_category_boxplot.png", "wordcloud_tags.png",
            "wordcloud_summaries.png", "random_image_sample.png", "query_relevancy_stats.csv", "top_tags.csv",
            "cost_summary.csv", "config_values.csv", "dataset_summary_stats.csv", "relevance_quality.csv",
            "relevance_quality.jsonl"} <= summary
    events = [json.loads(line) for line in built["first"][0].stdout.splitlines() if line.startswith("{")]
    failed = [e for e in events if e.get("status") in ("error", "fail", "skipped")]
    assert not failed, failed


def test_a_second_scheduled_run_pays_nothing_and_then_nothing_is_rebuilt(built: dict[str, Any]) -> None:
    project = built["project"]
    assert query(project, "select count(*) from dataproj_calls")[0][0] == built["calls_after_first"]
    events = [json.loads(line) for line in built["second"][0].stdout.splitlines() if line.startswith("{")]
    assert sum(e.get("calls", 0) for e in events if e.get("name") in ("annotations", "qrels")) == 0
    assert "imsearch_vision_annotation" in built["first"][-1].stdout  # `dataproj cache stats`
    # The first rerun rebuilds annotations (incremental: its SQL gains the filter on the existing table, which
    # state:modified sees as a change) and what depends on it, all from the cache; after that, nothing.
    build_step = run_workflow(project, steps=1)[0]
    assert "nothing to do" in build_step.stdout
    assert (project / "warehouse" / "exports" / "qrels_with_score.jsonl").is_file()


def test_images_follow_the_rights_map_and_merge_metadata(built: dict[str, Any]) -> None:
    rows = {r["image_id"]: r for r in map(json.loads, (built["project"] / "warehouse" / "exports" / "images.jsonl")
                                          .read_text(encoding="utf-8").splitlines())}
    assert len(rows) == 60
    assert rows["parkcam/scene_007.jpg"] == {  # exact file entry; its empty doi falls back to the default's
        "image_id": "parkcam/scene_007.jpg", "image_url": "https://data.example.org/dataproj/scenes/parkcam/scene_007.jpg",
        "mime_type": "image/jpeg", "license": "CC0 1.0", "doi": "10.0000/dataproj.scenes",
        "original_dataset_name": "ParkCam JPEG", "site": "city park", "camera": "fixed pole camera",
        "captured_on": "2024-06-08"}
    longest = rows["labshots/scene_031.png"]  # 'labshots/scene_03' beats 'labshots/'; its empty license -> default
    assert (longest["license"], longest["doi"], longest["original_dataset_name"]) == (
        "CC BY 4.0", "10.0000/dataproj.labshots.b", "LabShots B")
    unknown = rows["labshots/scene_020.png"]  # dataset name UNKNOWN -> the id's first path part
    assert (unknown["license"], unknown["original_dataset_name"]) == ("CC BY-SA 4.0", "labshots")
    default = rows["fieldkit/scene_040.png"]  # no file or prefix entry: the default, named after the folder
    assert (default["license"], default["doi"], default["original_dataset_name"], default["camera"]) == (
        "CC BY 4.0", "10.0000/dataproj.scenes", "fieldkit", None)
    assert rows["parkcam/scene_000.png"]["mime_type"] == "image/png"


def test_seeds_are_evenly_spaced_as_in_the_reference(built: dict[str, Any]) -> None:
    ids = sorted(r[0] for r in query(built["project"], "select image_id from images"))
    seeds = query(built["project"], "select query_id, seed_image_ids from query_seeds order by query_id")
    assert seeds == [(f"query_{i + 1:03d}", [ids[int(i * (60 / 10))]]) for i in range(10)]


def test_annotations_match_the_ground_truth_of_the_scenes(built: dict[str, Any]) -> None:
    truth = [json.loads(line) for line in (ROOT / "seeds" / "scene_truth.jsonl").read_text().splitlines()]
    rows = {r[0]: r[1:] for r in query(built["project"], """
        select image_id, status, dominant_shape, dominant_color, background_tone, background_kind, object_count,
               has_red, has_circle, multiple_objects, tags, confidence.dominant_shape from annotations""")}
    counts = {1: "one", 2: "two", 3: "three", 4: "four_plus"}
    for scene in truth:
        image_id = scene["image_path"].removeprefix("scenes/")
        largest = max(scene["objects"], key=lambda o: (o["area_px"], -o["object_id"]))
        status, shape, color, tone, kind, count, red, circle, multiple, tags, confidence = rows[image_id]
        assert status == "ok", image_id
        assert (shape, color, tone, kind, count) == (largest["shape"], largest["color"], scene["background"]["tone"],
                                                     scene["background"]["kind"], counts[len(scene["objects"])])
        assert red == any(o["color"] == "red" for o in scene["objects"])
        assert circle == any(o["shape"] == "circle" for o in scene["objects"])
        assert multiple == (len(scene["objects"]) > 1)
        assert {f"{o['color']}_{o['shape']}" for o in scene["objects"]} <= set(tags)
        assert 8 <= len(tags) <= 20 and 0 <= confidence <= 1


def test_query_plan_is_the_reference_plan_on_the_sample(built: dict[str, Any]) -> None:
    from test_imsearch_plan import bench, reference_for

    project = built["project"]
    table = duckdb.connect(str(project / "warehouse" / "dataproj.duckdb"), read_only=True)
    try:
        annotations = table.sql("select * from annotations").to_arrow_table()
    finally:
        table.close()
    qp = imsearch_vars()["query_plan"]
    params = bench.PlanParams(num_seeds=qp["num_seeds"], core=tuple(qp["core_facets"]),
                              diversity=tuple(qp["diversity_facets"]), pos=qp["pos_total"],
                              neutral=qp["neutral_total"], hard=qp["neg_hard"], nearmiss=qp["neg_nearmiss"],
                              easy=qp["neg_easy"], random_seed=qp["random_seed"])
    expected = reference_for(project, annotations, params)
    planned = {r[0]: (r[1], r[2]) for r in query(project, "select query_id, candidate_image_ids, candidate_roles "
                                                          "from query_plan")}
    assert planned == expected
    roles = [role for _, roles in planned.values() for role in roles]
    assert {"seed", "positive", "neutral", "hard", "nearmiss", "easy"} <= set(roles)


def test_qrels_cover_every_candidate_and_agree_with_the_ground_truth(built: dict[str, Any]) -> None:
    project = built["project"]
    plans = dict(query(project, "select query_id, candidate_image_ids from query_plan"))
    qrels = query(project, "select query_id, image_id, candidate_rank, relevance_label, judge_status, query_text "
                           "from qrels order by query_id, candidate_rank")
    assert len(qrels) == sum(len(c) for c in plans.values())
    for query_id, candidates in plans.items():
        rows = [r for r in qrels if r[0] == query_id]
        assert [r[1] for r in rows] == candidates and {r[4] for r in rows} == {"ok"}
        assert rows[0][3] == 1  # the seed is relevant to its own query
    assert qrels[0][5] == "a blue square on a light background"
    quality = dict(query(project, "select scope, agreement from imsearch_quality"))
    assert quality["all"] == 1.0
    scorers = query(project, "select distinct similarity_scorer from qrels_with_score")
    assert scorers == [("fallback:scene_match",)]
    assert query(project, "select count(*) from qrels_with_score where similarity_score is null")[0][0] == 0


def test_trec_files_read_back_with_ir_measures_and_pytrec_eval(built: dict[str, Any]) -> None:
    import ir_measures
    import pytrec_eval

    exports = built["project"] / "warehouse" / "exports"
    qrels = list(ir_measures.read_trec_qrels(str(exports / "qrels.trec")))
    judged = query(built["project"], "select query_id, image_id, relevance_label from qrels order by all")
    assert sorted((q.query_id, q.doc_id, q.relevance) for q in qrels) == sorted(judged)
    run = list(ir_measures.read_trec_run(str(exports / "qrels_with_score.run")))
    assert len(run) == len(judged)
    with (exports / "qrels.trec").open() as handle:
        parsed = pytrec_eval.parse_qrel(handle)
    with (exports / "qrels_with_score.run").open() as handle:
        scores = pytrec_eval.parse_run(handle)
    evaluation = pytrec_eval.RelevanceEvaluator(parsed, {"ndcg"}).evaluate(scores)
    assert set(evaluation) == {r[0] for r in query(built["project"], "select query_id from query_plan")}
    assert all(0 < e["ndcg"] <= 1 for e in evaluation.values())


def test_the_saved_hugging_face_dataset_loads_with_seeds_first(built: dict[str, Any]) -> None:
    from datasets import Image, load_from_disk

    out = built["project"] / "warehouse" / "exports" / "hf_dataset"
    dataset = load_from_disk(str(out / "dataset"))
    qrels = query(built["project"], "select query_id, image_id, relevance_label, candidate_role from qrels "
                                    "order by query_id, candidate_rank")
    assert len(dataset) == len(qrels)
    assert isinstance(dataset.features["image"], Image)
    assert [(r["query_id"], r["image_id"], r["relevance_label"]) for r in dataset.select_columns(
        ["query_id", "image_id", "relevance_label"])] == [q[:3] for q in qrels]
    first_rows = {}
    for row in dataset.select_columns(["query_id", "candidate_role"]):
        first_rows.setdefault(row["query_id"], row["candidate_role"])
    assert set(first_rows.values()) == {"seed"}
    image = dataset[0]["image"]
    truth = {json.loads(line)["image_path"]: json.loads(line) for line in
             (ROOT / "seeds" / "scene_truth.jsonl").read_text().splitlines()}
    scene = truth["scenes/" + dataset[0]["image_id"]]
    assert image.size == (scene["width"], scene["height"])
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "| queries | 10 |" in card and f"| rows (query, image pairs) | {len(qrels)} |" in card
    assert "| CC BY 4.0 |" in card and "fallback:scene_match" in card
    metadata = json.loads((out / "dataset_metadata.json").read_text())
    assert metadata["total_rows"] == len(qrels) and metadata["missing_images"] == 0


def test_publish_pushes_one_commit_to_a_hub_with_the_real_client(built: dict[str, Any]) -> None:
    """`dataproj publish hf --repo-id` against a local Hub endpoint (HF_ENDPOINT), through huggingface_hub's
    create_repo and create_commit: Git LFS uploads for the large files, base64 for the small ones."""
    import io

    import pyarrow.parquet as pq

    from dataproj.publish.local_hub import LocalHub

    project = built["project"]
    with LocalHub(token="hf_local_test_token") as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_XET": "1", "HF_TOKEN": "hf_local_test_token",
               "HF_HOME": str(project / ".hf_home"), "HF_HUB_DISABLE_TELEMETRY": "1"}
        done = subprocess.run([sys.executable, "-m", "dataproj", "publish", "hf", "--repo-id", "bench-org/scenes",
                               "--private", "--project-dir", str(project)], env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        repo = hub.repos["datasets/bench-org/scenes"]
        assert repo.private and len(repo.commits) == 1
        assert {"README.md", "annotations.jsonl", "data/train-00000-of-00001.parquet",
                "summary/relevance_quality.csv", "summary/image_proportion_donuts.png"} <= set(repo.files)
        assert all(r.authorization == "Bearer hf_local_test_token" for r in hub.requests if r.method == "POST")
        assert any(r.path.endswith("/info/lfs/objects/batch") for r in hub.requests)  # the shard went as LFS
        pushed = pq.read_table(io.BytesIO(repo.files["data/train-00000-of-00001.parquet"]))
        local = (project / "warehouse" / "exports" / "hf_dataset" / "README.md").read_bytes()
        assert repo.files["README.md"] == local
        assert pushed.num_rows == query(project, "select count(*) from qrels where relevance_label is not null")[0][0]
        assert pushed.column("image").to_pylist()[0]["bytes"][:8] == b"\x89PNG\r\n\x1a\n"
        assert f"pushed to bench-org/scenes: {hub.url}/datasets/bench-org/scenes/commit/" in done.stdout


def test_publish_needs_a_token_to_push(built: dict[str, Any]) -> None:
    env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}
    done = subprocess.run([sys.executable, "-m", "dataproj", "publish", "hf", "--repo-id", "x/y", "--project-dir",
                           str(built["project"])], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "error: pushing to the Hugging Face Hub needs a token: set HF_TOKEN" in done.stderr
