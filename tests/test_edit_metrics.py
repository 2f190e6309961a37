"""The unedited-area metrics as SQL functions: ssim / lpips / emd against the reference libraries' own
computations (skimage, lpips, open_clip + POT) on the sample edits, identical images, missing weights, bad rows,
the mask and resizing rules, and CLIP tokens computed once per image."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import ot
import pytest
import torch
from PIL import Image, ImageFilter
from skimage.metrics import structural_similarity

from dataproj.runtime.registry import builtin_specs
from dataproj.runtime.runtime import Runtime
from dataproj.vision import emd, lpips_metric, ssim
from dataproj.vision.images import capped_size, load_pair, unedited_mask
from dataproj.vision.models import alexnet_weights_cached, cached_clip_weights, load_clip, load_lpips

REPO = Path(__file__).resolve().parents[1]
TRUTH = [json.loads(line) for line in (REPO / "seeds/edits/edit_truth.jsonl").read_text().splitlines()]


def _edited_paths() -> dict[str, str]:
    paths = {}
    for task in ("subject_add", "subject_remove", "color_alter"):
        pool = json.loads((REPO / f"seeds/candidate_pools/{task}.json").read_text())
        for model in pool["models"]:
            for result in model["results"]:
                paths[f"{result['key']}_model_{model['name']}"] = result["image_path"]
    return paths


EDITED = _edited_paths()


@pytest.fixture(scope="module")
def con(tmp_path_factory: pytest.TempPathFactory) -> Iterator[duckdb.DuckDBPyConnection]:
    """DuckDB with the engine's functions; relative paths resolve against the repository."""
    runtime = Runtime(REPO, builtin_specs(), tmp_path_factory.mktemp("cache") / "calls.duckdb")
    connection = duckdb.connect()
    runtime.register(connection)
    runtime.begin_node(connection, "test_edit_metrics")
    yield connection
    connection.close()
    runtime.close()


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    return con.execute(sql, params or []).fetchall()


def _reference_ssim(source: str | Path, edited: str | Path, boxes: list[list[float]]) -> float:
    """skimage's full map, cropped by 5 px and averaged where the mask is 1 (REFERENCE.md §3)."""
    a = np.asarray(Image.open(REPO / source).convert("RGB"))
    b_image = Image.open(REPO / edited).convert("RGB")
    b = np.asarray(b_image.resize((a.shape[1], a.shape[0]), Image.Resampling.BICUBIC)
                   if b_image.size != (a.shape[1], a.shape[0]) else b_image)
    mask = unedited_mask(a.shape[0], a.shape[1], boxes)
    _, full = structural_similarity(a, b, win_size=11, gaussian_weights=True, sigma=1.5, data_range=255,
                                    channel_axis=2, full=True)
    return float(full[5:-5, 5:-5][mask[5:-5, 5:-5] == 1].mean())


def _composite(pair: Any) -> tuple[torch.Tensor, torch.Tensor]:
    source = torch.from_numpy(np.array(pair.source)).permute(2, 0, 1).float()[None] / 127.5 - 1
    edited = torch.from_numpy(np.array(pair.edited)).permute(2, 0, 1).float()[None] / 127.5 - 1
    mask = torch.from_numpy(pair.mask)
    return edited * mask + source * (1 - mask), source


def _pot_emd(pair: Any) -> float:
    """open_clip's own token output (output_tokens=True) and POT's ot.dist + ot.emd2."""
    clip = load_clip("ViT-B-32", None, random_weights=True)
    visual = clip.model.visual
    visual.output_tokens = True
    try:
        with torch.no_grad():
            _, source_tokens = visual(clip.preprocess(Image.fromarray(np.array(pair.source)))[None])
            _, edited_tokens = visual(clip.preprocess(Image.fromarray(np.array(pair.edited)))[None])
    finally:
        visual.output_tokens = False
    keep = emd.patch_unedited_fractions(pair.mask, 224, 32) > 0.1
    xs, xt = source_tokens[0].double().numpy(), edited_tokens[0].double().numpy()[keep]
    return float(ot.emd2(np.full(len(xs), 1 / len(xs)), np.full(len(xt), 1 / len(xt)), ot.dist(xs, xt)))


SAMPLE = [t for t in TRUTH if t["edit_task"] != "subject_add" or t["variant"] != "no_edit"][::7]


def test_ssim_equals_skimage_on_the_sample_edits(con: duckdb.DuckDBPyConnection) -> None:
    assert len({(t["edit_task"], t["variant"]) for t in SAMPLE}) >= 6  # tasks x variants, several image sizes
    rows = [(t["source_image_path"], EDITED[t["item_key"]], [t["edit_box"]]) for t in SAMPLE]
    got = _rows(con, "select ssim(a, b, boxes) from (select unnest(?) as a, unnest(?) as b, unnest(?) as boxes)",
                [[r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]])
    for (source, edited, boxes), (value,) in zip(rows, got, strict=True):
        assert value == pytest.approx(_reference_ssim(source, edited, boxes), abs=1e-6)


def test_ssim_map_equals_skimage_full_map(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    scene = np.asarray(Image.open(REPO / "seeds/scenes/fieldkit/scene_041.png").convert("RGB"))
    half = np.zeros((64, 96, 3), np.uint8)
    half[:, 48:] = 255
    cases = [(scene, np.asarray(Image.fromarray(scene).filter(ImageFilter.GaussianBlur(2)))),
             (scene, np.clip(scene.astype(int) + 30, 0, 255).astype(np.uint8)),
             (rng.integers(0, 256, (80, 70, 3), dtype=np.uint8), rng.integers(0, 256, (80, 70, 3), dtype=np.uint8)),
             (half, np.full_like(half, 255))]
    for a, b in cases:
        _, full = structural_similarity(a, b, win_size=11, gaussian_weights=True, sigma=1.5, data_range=255,
                                        channel_axis=2, full=True)
        ours = ssim.ssim_map(a, b)
        assert ours.shape == full[5:-5, 5:-5].shape
        assert np.abs(ours - full[5:-5, 5:-5]).max() < 2e-4  # float32, per pixel
        assert float(ours.mean()) == pytest.approx(float(full[5:-5, 5:-5].mean()), abs=1e-6)


def test_identical_images_give_ssim_1_lpips_0_emd_0(con: duckdb.DuckDBPyConnection) -> None:
    scene = "seeds/scenes/parkcam/scene_000.png"
    [(area, boxed, plain)] = _rows(con, "select unedit_area(?, ?, [], ['lpips', 'emd', 'ssim'], 'random'), "
                                        "unedit_area(?, ?, [[40, 30, 120, 90]], ['lpips', 'ssim'], 'random'), "
                                        "ssim(?, ?, [])", [scene] * 6)
    assert (area["ssim"], area["lpips"], area["emd"]) == (1.0, 0.0, 0.0)
    assert area["status"] == "ok" and area["ssim_reason"] is None
    assert (boxed["ssim"], boxed["lpips"], boxed["emd"], boxed["emd_reason"]) == (1.0, 0.0, None, "not configured")
    assert plain == 1.0


def test_lpips_equals_the_lpips_package_with_the_same_backbone() -> None:
    reference = load_lpips(random_backbone=True)  # the lpips package's LPIPS(net='alex'), random AlexNet
    pairs = [load_pair(REPO / t["source_image_path"], REPO / EDITED[t["item_key"]], [t["edit_box"]])
             for t in SAMPLE[:6]]
    ours = lpips_metric.lpips_values(pairs, lpips_metric.lpips_model("random"))
    with torch.no_grad():
        for pair, (value, reason) in zip(pairs, ours, strict=True):
            expected = float(reference(*_composite(pair))) / pair.unedited_fraction
            assert reason is None
            assert value == pytest.approx(expected, rel=1e-4, abs=1e-9)
    assert any(value > 0 for value, _ in ours)


def test_emd_equals_pot_on_clip_patch_tokens() -> None:
    pairs = [load_pair(REPO / t["source_image_path"], REPO / EDITED[t["item_key"]], [t["edit_box"]])
             for t in SAMPLE[:4]]
    ours = emd.emd_values(pairs, emd.clip_model("random"))
    for pair, (value, reason) in zip(pairs, ours, strict=True):
        assert reason is None
        assert value == pytest.approx(_pot_emd(pair), rel=1e-6, abs=1e-9)


def test_clip_tokens_are_computed_once_per_image(con: duckdb.DuckDBPyConnection) -> None:
    group = [t for t in TRUTH if t["key"] == "parkcam_scene_000_subject_remove"]
    emd.clear_memo()
    sql = ("select unedit_area(a, b, [[0, 0, 40, 40]], ['emd'], 'random').emd from "
           "(select unnest(?) as a, unnest(?) as b) order by b")
    params = [[t["source_image_path"] for t in group], [EDITED[t["item_key"]] for t in group]]
    first = _rows(con, sql, params)
    assert len(emd.PATCH_TOKENS) == 4  # one source and three edits, not six images
    assert _rows(con, sql, params) == first
    assert len(emd.PATCH_TOKENS) == 4


@pytest.mark.skipif(alexnet_weights_cached(), reason="pretrained weights are in the local caches")
def test_unedit_area_is_cached_unless_a_metric_waits_for_weights(tmp_path: Path) -> None:
    """Measured results are stored; a result whose LPIPS is NULL for missing weights is computed again."""
    runtime = Runtime(REPO, builtin_specs(), tmp_path / "calls.duckdb")
    connection = duckdb.connect()
    try:
        runtime.register(connection)
        scene = "seeds/scenes/parkcam/scene_000.png"
        sql = "select unedit_area(?, ?, [], [?], ?)"
        for run, (metric, hits) in enumerate([("ssim", 0), ("lpips", 0), ("ssim", 1), ("lpips", 0)]):
            stats = runtime.begin_node(connection, f"run_{run}")
            [(area,)] = _rows(connection, sql, [scene, scene, metric, "pretrained"])
            assert area[metric] == (1.0 if metric == "ssim" else None)
            assert (stats.cache_hits, stats.calls) == (hits, 1 - hits), (run, metric)
        assert [(entries, failed) for _, entries, failed in runtime.cache.stats()] == [(1, 0)]  # the SSIM one
    finally:
        connection.close()
        runtime.close()


@pytest.mark.skipif(alexnet_weights_cached() or cached_clip_weights("ViT-B-32", "openai") is not None,
                    reason="pretrained weights are in the local caches")
def test_missing_weights_give_null_with_the_reason(con: duckdb.DuckDBPyConnection) -> None:
    scene = "seeds/scenes/parkcam/scene_000.png"
    [(lpips, emd, area)] = _rows(con, "select lpips(?, ?, []), emd(?, ?, []), "
                                      "unedit_area(?, ?, [], ['lpips', 'emd', 'ssim'], 'pretrained')", [scene] * 6)
    assert (lpips, emd) == (None, None)
    assert (area["lpips"], area["emd"], area["ssim"]) == (None, None, 1.0)
    assert area["lpips_reason"] == area["emd_reason"] == "weights unavailable"
    assert area["status"] == "ok"


def test_rows_that_cannot_be_measured_say_why(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    scene = str(REPO / "seeds/scenes/parkcam/scene_000.png")
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (9, 9), (10, 20, 30)).save(tiny)
    rows = _rows(con, """
        select unedit_area(a, b, boxes, metrics, weights) from (values
            (1, ?, ?, null, ['ssim'], 'random'),
            (2, ?, ?, [[1, 2, 3]], ['ssim'], 'random'),
            (3, ?, ?, [], ['ssim'], 'random'),
            (4, ?, ?, [], ['psnr'], 'random'),
            (5, ?, ?, [[0, 0, 320, 240]], ['ssim', 'lpips'], 'random'),
            (6, ?, ?, [], ['ssim'], 'somewhere')
        ) as t(i, a, b, boxes, metrics, weights) order by i""",
                 [scene, scene, scene, scene, scene, str(tmp_path / "missing.png"), scene, scene, scene, scene,
                  str(tiny), str(tiny)])
    no_box, bad_box, missing, unknown, all_box, bad_weights = (r[0] for r in rows)
    assert (no_box["ssim"], no_box["ssim_reason"], no_box["status"]) == (None, "no box found", "ok")
    assert bad_box["status"] == "failed" and "box 0 is not four finite numbers" in bad_box["error"]
    assert missing["status"] == "failed" and "missing.png" in missing["error"]
    assert missing["ssim_reason"].startswith("failed call: missing file")
    assert unknown["status"] == "failed" and "psnr" in unknown["error"]
    assert (all_box["ssim_reason"], all_box["lpips_reason"]) == ("no unedited area", "no unedited area")
    assert bad_weights["status"] == "failed" and "weights must be one of" in bad_weights["error"]
    [(small,)] = _rows(con, "select unedit_area(?, ?, [], ['ssim'], 'random')", [str(tiny), str(tiny)])
    assert (small["ssim"], small["ssim_reason"]) == (None, "image smaller than the 11 px SSIM window")
    assert _rows(con, "select ssim(?, ?, null)", [scene, scene]) == [(None,)]


def test_images_are_capped_and_the_edited_image_resized_to_the_source(tmp_path: Path) -> None:
    assert capped_size(4096, 1024) == (2048, 512)
    assert capped_size(1000, 3000) == (683, 2048)
    assert capped_size(320, 240) == (320, 240)
    big, small = tmp_path / "big.png", tmp_path / "small.png"
    Image.new("RGB", (4096, 1024), (200, 10, 10)).save(big)
    Image.new("RGB", (640, 160), (10, 200, 10)).save(small)
    pair = load_pair(big, small, [[1000, 100, 2001, 301]])  # source pixels: halved by the cap
    assert pair.source.shape == pair.edited.shape == (512, 2048, 3)
    zeros = np.argwhere(pair.mask == 0)
    assert zeros.min(axis=0).tolist() == [50, 500] and zeros.max(axis=0).tolist() == [150, 1000]
    assert pair.mask.sum() == 512 * 2048 - 101 * 501


def test_patch_fractions_follow_the_clip_resize_and_crop() -> None:
    mask = np.ones((240, 320), np.float32)
    mask[:, :160] = 0  # the left half is edited
    # shortest side to 224: 298 x 224, centre crop from x = 37; the edit ends at x = 149 - 37 = 112 in the crop
    fractions = emd.patch_unedited_fractions(mask, 224, 32).reshape(7, 7)
    assert fractions[:, :3].max() == 0
    assert fractions[:, 3] == pytest.approx(np.full(7, 0.5), abs=0.02)
    assert fractions[:, 4:].min() == pytest.approx(1.0)
