"""The image-edit annotation pipeline end to end on a copy of the bundled project: grouped.jsonl in the reference's
exact shape, metrics equal to the reference libraries' in the warehouse, reasons for every NULL, the judges, the
train pairs' tiers, the quality against the generator's truth, task selection, config errors, a row that cannot
be read, and grounding through the real openai SDK."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from conftest import ProjectDir
from PIL import Image
from skimage.metrics import structural_similarity

from dataproj.vision.images import load_pair, unedited_mask
from dataproj.vision.models import alexnet_weights_cached, cached_clip_weights, load_lpips
from dataproj.vlm.serve import offline_server

REPO = Path(__file__).resolve().parents[1]
PROJECT_FILES = ("project.yml", "models", "seeds", "prompts", "macros", "udfs")
VIESCORE = {"prompt_id": "vlm/assessment/viescore", "version": "v2", "function": "viescore"}
EDIT_SELECTION = ("edit_truth", "subject_add", "subject_remove", "color_alter", "edit")


def _copy_project(root: Path) -> ProjectDir:
    root.mkdir()
    for name in PROJECT_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.exists():
            shutil.copy(source, root / name)
    return ProjectDir(root)


def _edit_vars(**extra: Any) -> str:
    """The repository's vars.edit with viescore added to every task's judges, as a --vars mapping."""
    config = yaml.safe_load((REPO / "project.yml").read_text())["vars"]["edit"]
    for task in config.values():
        task["judges"]["viescore"] = VIESCORE
    return json.dumps({"edit": config, **extra})


def _build(project: ProjectDir, vars_json: str) -> None:
    project.ok("build", "--select", *EDIT_SELECTION, "--vars", vars_json)


@pytest.fixture(scope="module")
def added(tmp_path_factory: pytest.TempPathFactory) -> ProjectDir:
    """subject_add with random-weight LPIPS and EMD (so every code path runs) and both judges."""
    project = _copy_project(tmp_path_factory.mktemp("edit") / "add")
    _build(project, _edit_vars(edit_metric_weights="random"))
    return project


def _dicts(project: ProjectDir, sql: str) -> list[dict[str, Any]]:
    with project.db() as con:
        relation = con.sql(sql)
        return [dict(zip(relation.columns, row, strict=True)) for row in relation.fetchall()]


def _truth(project: ProjectDir) -> dict[str, dict[str, Any]]:
    return {row["item_key"]: row for row in _dicts(project, "select * from edit_truth")}


def test_grouped_export_has_the_reference_shape(added: ProjectDir) -> None:
    lines = added.path("warehouse/exports/edit/subject_add_grouped.jsonl").read_text().splitlines()
    pool = json.loads((REPO / "seeds/candidate_pools/subject_add.json").read_text())
    instructions = {item["key"]: item["instruction"] for item in pool["meta_info"]}
    assert len(lines) == len(instructions) == 15
    for line in lines:
        group = json.loads(line)
        assert list(group) == ["key", "results"]
        assert len(group["results"]) == 3
        for result in group["results"]:
            assert list(result) == ["source_image_path", "edited_image_path", "instruction", "unedit_area"]
            assert list(result["unedit_area"]) == ["lpips", "emd", "ssim"]
            assert result["instruction"] == instructions[group["key"]]
            assert Path(REPO / result["edited_image_path"]).is_file()
            values = list(result["unedit_area"].values())
            assert all(isinstance(v, float) for v in values) or values == [None, None, None]


def test_metrics_in_the_warehouse_equal_the_reference_libraries(added: ProjectDir) -> None:
    rows = _dicts(added, "select item_key, source_image_path, edited_image_path, boxes, lpips, ssim "
                         "from unedit_metrics where boxes is not null order by item_key limit 6")
    reference = load_lpips(random_backbone=True)
    for row in rows:
        source = np.asarray(Image.open(REPO / row["source_image_path"]).convert("RGB"))
        edited = np.asarray(Image.open(REPO / row["edited_image_path"]).convert("RGB"))
        mask = unedited_mask(*source.shape[:2], row["boxes"])
        _, full = structural_similarity(source, edited, win_size=11, gaussian_weights=True, sigma=1.5,
                                        data_range=255, channel_axis=2, full=True)
        assert row["ssim"] == pytest.approx(full[5:-5, 5:-5][mask[5:-5, 5:-5] == 1].mean(), abs=1e-6)
        pair = load_pair(REPO / row["source_image_path"], REPO / row["edited_image_path"], row["boxes"])
        s = torch.from_numpy(np.array(pair.source)).permute(2, 0, 1).float()[None] / 127.5 - 1
        e = torch.from_numpy(np.array(pair.edited)).permute(2, 0, 1).float()[None] / 127.5 - 1
        m = torch.from_numpy(pair.mask)
        with torch.no_grad():
            expected = float(reference(e * m + s * (1 - m), s)) / float(pair.mask.mean())
        assert row["lpips"] == pytest.approx(expected, rel=1e-4, abs=1e-9)


def test_a_skipped_metric_is_null_with_its_reason(added: ProjectDir) -> None:
    truth = _truth(added)
    rows = _dicts(added, "select * from unedit_metrics")
    no_box = {r["item_key"] for r in rows if r["ssim_reason"] == "no box found"}
    # a failed add leaves nothing to ground on the edited image: exactly the no_edit candidates
    assert no_box == {k for k, t in truth.items() if t["edit_task"] == "subject_add" and t["variant"] == "no_edit"}
    for row in rows:
        measured = row["item_key"] not in no_box
        assert (row["lpips"] is not None, row["emd"] is not None, row["ssim"] is not None) == (measured,) * 3
        assert row["metric_status"] == ("ok" if measured else "skipped")
        if not measured:
            assert row["lpips_reason"] == row["emd_reason"] == "no box found"


def test_regions_are_the_edited_objects(added: ProjectDir) -> None:
    truth = _truth(added)
    for row in _dicts(added, "select item_key, boxes, edited_objects from edit_regions where boxes is not null"):
        expected = truth[row["item_key"]]
        assert row["edited_objects"] == [expected["edited_object"]]
        assert [round(v) for v in row["boxes"][0]] == expected["edit_box"]  # 0-1000 and back, in pixels


def test_judges_compare_every_pair_of_a_group(added: ProjectDir) -> None:
    rows = _dicts(added, "select * from judged")
    assert len(rows) == 15 * 3
    assert Counter(r["key"] for r in rows) == Counter({key: 3 for key in {r["key"] for r in rows}})
    assert {r["pairwise_winner"] for r in rows} <= {"Image A", "Image B", "Tie"}
    assert all(r["viescore_a"] is not None and r["viescore_b"] is not None for r in rows)
    truth = _truth(added)
    for row in rows:  # the judges always prefer an edit that was made to one that was not
        variants = (truth[row["item_key_a"]]["variant"], truth[row["item_key_b"]]["variant"])
        if "no_edit" in variants:
            winner = "Image B" if variants[0] == "no_edit" else "Image A"
            assert row["pairwise_winner"] == row["viescore_winner"] == winner


def test_quality_against_the_truth(added: ProjectDir) -> None:
    [quality] = _dicts(added, "select * from edit_quality")
    assert quality["edit_task"] == "subject_add" and quality["groups"] == 15
    assert quality["grounding_accuracy"] == 1.0
    assert quality["faithful_first_by_metrics"] == 1.0
    assert quality["faithful_over_shift_by_metrics"] == 1.0
    assert quality["faithful_first_by_judges_then_metrics"] == 1.0
    assert quality["faithful_first_by_viescore"] >= 0.7
    assert quality["mean_ssim_faithful"] > quality["mean_ssim_background_shift"]
    assert quality["mean_lpips_faithful"] == 0.0  # every faithful edit stays inside its box
    assert quality["mean_lpips_background_shift"] > 0


def test_train_pairs_follow_the_reference_tiers(added: ProjectDir) -> None:
    tiers = {r["item_key"]: r for r in _dicts(added, "select * from edit_tiers")}
    pairs = _dicts(added, "select * from train_pairs")
    exported = [json.loads(line) for line in
                added.path("warehouse/exports/edit/subject_add_train_pairs.jsonl").read_text().splitlines()]
    assert len(pairs) == len(exported) == 15
    allowed = {"Elite_vs_Failure": ("A", "C"), "Normal_vs_Failure": ("B", "C"), "Elite_vs_Normal": ("A", "B")}
    for pair in pairs:
        chosen, rejected = tiers[pair["chosen_item_key"]], tiers[pair["rejected_item_key"]]
        assert (chosen["tier"], rejected["tier"]) == allowed[pair["pair_type"]]
        assert chosen["ssim"] >= rejected["ssim"]
        first = chosen if pair["winner"] == "Image A" else rejected
        assert pair["edited_image_paths"][0] == first["edited_image_path"]
        assert pair["gpt_response"] == f'```json\n{{\n    "winner": "{pair["winner"]}"\n}}\n```\n'
    assert {p["winner"] for p in pairs} == {"Image A", "Image B"}  # the order is shuffled
    for tier in tiers.values():
        z = tier["z_unedit_area"]
        assert tier["tier"] == ("C" if z <= -0.5 else "A" if z > 0.8 else "B")


@pytest.fixture(scope="module")
def altered(tmp_path_factory: pytest.TempPathFactory) -> ProjectDir:
    """color_alter selected by --vars, with the default (pretrained) weights, one edited image missing (the failed
    edit of the first group)."""
    project = _copy_project(tmp_path_factory.mktemp("edit") / "alter")
    pool_path = project.path("seeds/candidate_pools/color_alter.json")
    pool = json.loads(pool_path.read_text())
    pool["models"][2]["results"][0]["image_path"] = "seeds/edits/color_alter/missing.png"  # a no_edit candidate
    pool_path.write_text(json.dumps(pool))
    project.ok("build", "--select", *EDIT_SELECTION, "--vars", "{edit_task: color_alter}")
    return project


def test_the_task_is_selected_by_a_var(altered: ProjectDir) -> None:
    assert altered.path("warehouse/exports/edit/color_alter_grouped.jsonl").is_file()
    [quality] = _dicts(altered, "select * from edit_quality")
    assert quality["edit_task"] == "color_alter"
    assert quality["grounding_accuracy"] == pytest.approx(44 / 45)  # all but the candidate whose image is missing
    assert quality["faithful_over_shift_by_metrics"] == 1.0
    assert quality["faithful_first_by_judges_then_metrics"] == 1.0


def test_an_unreadable_image_fails_its_row_only(altered: ProjectDir) -> None:
    [row] = _dicts(altered, "select * from unedit_metrics where edited_image_path like '%missing.png'")
    assert row["ssim"] is None and row["metric_status"] == "skipped"
    assert row["ssim_reason"].startswith("failed call: ") and "missing file" in row["ssim_reason"]
    assert "missing.png" in row["ssim_reason"]
    assert altered.statuses()["expression_edit_candidates_2"] == "warn"  # image_error is null, severity warn
    key = row["key"]
    assert len(_dicts(altered, f"select * from judged where key = '{key}'")) == 1  # the two readable candidates


@pytest.mark.skipif(alexnet_weights_cached() or cached_clip_weights("ViT-B-32", "openai") is not None,
                    reason="pretrained weights are in the local caches")
def test_without_weights_lpips_and_emd_are_null_with_the_reason(altered: ProjectDir) -> None:
    rows = _dicts(altered, "select * from unedit_metrics where metric_status = 'ok'")
    assert len(rows) > 20
    assert {(r["lpips"], r["emd"], r["lpips_reason"], r["emd_reason"]) for r in rows} == {
        (None, None, "weights unavailable", "weights unavailable")}
    assert all(r["ssim"] is not None for r in rows)


def test_grounding_through_the_openai_sdk_gives_the_same_boxes(altered: ProjectDir) -> None:
    before = {r["item_key"]: r["boxes"] for r in _dicts(altered, "select item_key, boxes from edit_regions")}
    config = yaml.safe_load(altered.path("project.yml").read_text())
    with offline_server(altered.path("prompts")) as server:
        local = {"type": "openai", "base_url": server.openai_base_url, "model": "offline-via-api"}
        config["backends"] = {**(config.get("backends") or {}), "local": local}
        config["vlm"] = {"backend": "local"}
        altered.path("project.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        altered.ok("run", "--select", "edit_config", "edit_instructions", "edit_regions",
                   "--vars", "{edit_task: color_alter}")
        assert any(request.schema_name == "EditGrounding" for request in server.requests)
    after = {r["item_key"]: r["boxes"] for r in _dicts(altered, "select item_key, boxes from edit_regions")}
    assert after == before


@pytest.mark.parametrize(("vars_json", "message"), [
    ("{edit: {subject_add: {metrics: [ssim, psnr]}}}", "vars.edit.subject_add.metrics.1"),
    ("{edit: {subject_add: {metricz: [ssim]}}}", "unknown key 'vars.edit.subject_add.metricz'"),
    ("{edit: {subject_add: {metrics: [ssim], train_pairs: {areas: {unedit_area: {primary_key: lpips}}}}}}",
     "train_pairs uses 'lpips', which `metrics` does not compute"),
    ("{edit_task: subject_swap}", "ref('subject_swap'): no model or seed named 'subject_swap'"),
    ("{edit_metric_weights: heavy}", "edit_metric_weights must be 'pretrained' or 'random'"),
])
def test_config_errors_name_the_key(added: ProjectDir, vars_json: str, message: str) -> None:
    result = added.cli("run", "--select", "edit_config", "--vars", vars_json)
    assert result.code != 0
    assert message in result.text


def test_a_prompt_version_the_engine_does_not_run_is_an_error(added: ProjectDir) -> None:
    config = yaml.safe_load((REPO / "project.yml").read_text())["vars"]["edit"]
    config["subject_add"]["grounder"]["version"] = "v0"
    result = added.cli("run", "--select", "edit_config", "--vars", json.dumps({"edit": config}))
    assert result.code != 0
    assert "vars.edit.subject_add.grounder" in result.text and "no version 'v0'" in result.text
