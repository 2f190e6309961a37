"""CLIP similarity as SQL functions: which scorer is used, open_clip scores through the UDF equal open_clip's own
(a random-weight ViT-S-32: no weights are downloaded), the cache, per-row failures, and the scene_match fallback."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import MakeProject

from dataproj.runtime.executor import RowFailure
from dataproj.vision.clip import clip_scorer, open_clip_weights_cached, scene_match

ROOT = Path(__file__).resolve().parents[1]
SCENES = ROOT / "seeds" / "scenes"
PAIRS = [("a red circle on a dark background", "labshots/scene_021.png"),
         ("a white star on a dark background", "parkcam/scene_016.png"),
         ("a blue square on a light background", "parkcam/scene_011.png")]


def test_the_scorer_is_open_clip_with_weights_and_the_fallback_without() -> None:
    expected = "open_clip:ViT-B-32/openai" if open_clip_weights_cached() else "fallback:scene_match"
    assert clip_scorer("ViT-B-32", "openai", "scene_match") == expected
    assert clip_scorer("ViT-B-32", "random", "") == "open_clip:ViT-B-32/random"
    if not open_clip_weights_cached():
        with pytest.raises(RowFailure, match="CLIP weights ViT-B-32/openai are not in the local caches and no "
                                             "fallback is configured"):
            clip_scorer("ViT-B-32", "openai", "")
    with pytest.raises(RowFailure, match="unknown similarity fallback 'magic'"):
        clip_scorer("ViT-B-32", "no-such-tag", "magic")


def test_weights_in_the_hugging_face_cache_are_found_and_an_empty_cache_is_quick(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check for cached weights must not cost an open_clip import when no weights file is there at all."""
    import huggingface_hub.constants

    from dataproj.vision.models import cached_clip_weights

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no legacy ~/.cache/clip either
    assert cached_clip_weights("ViT-B-32", "openai") is None
    snapshot = tmp_path / "hub" / "models--timm--vit_base_patch32_clip_224.openai" / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    (snapshot / "open_clip_model.safetensors").write_bytes(b"weights")
    (tmp_path / "hub" / "models--timm--vit_base_patch32_clip_224.openai" / "refs").mkdir()
    (tmp_path / "hub" / "models--timm--vit_base_patch32_clip_224.openai" / "refs" / "main").write_text("0123abc")
    assert cached_clip_weights("ViT-B-32", "openai") == str(snapshot / "open_clip_model.safetensors")
    assert cached_clip_weights("ViT-B-32", "laion2b_s34b_b79k") is None  # another repo


def test_scene_match_scores_what_the_pixels_show() -> None:
    assert scene_match("a red circle on a dark background", str(SCENES / "labshots/scene_021.png")) == 1.0
    # white star: yes; dark: yes (a white star on a dark gradient)
    assert scene_match("a white star on a dark background", str(SCENES / "parkcam/scene_016.png")) == 1.0
    # red circle: no; dark: yes
    assert scene_match("a red circle on a dark background", str(SCENES / "parkcam/scene_016.png")) == 0.5
    # blue square: yes; light: yes; textured: no
    assert scene_match("blue square, light textured background", str(SCENES / "parkcam/scene_011.png")) == 0.666667
    assert scene_match("nothing we can check", str(SCENES / "parkcam/scene_011.png")) == 0.0


def test_open_clip_scores_through_sql_equal_open_clip_and_are_cached(make_project: MakeProject) -> None:
    import torch
    from PIL import Image

    from dataproj.vision.models import load_clip

    rows = "\n".join(f"{text},images/{Path(path).name}" for text, path in PAIRS)
    project = make_project({
        "seeds/pairs.csv": f"text,path\n{rows}\nan orange triangle,images/missing.png\n",
        "models/scored.sql": """\
            {{ config(materialized='table') }}
            select text, path, clip_similarity(text, path, 'open_clip:ViT-S-32/random') as r
            from {{ ref('pairs') }}
            """})
    for _, path in PAIRS:
        target = project.path(f"images/{Path(path).name}")
        target.parent.mkdir(exist_ok=True)
        shutil.copy(SCENES / path, target)
    project.ok("build")
    scored = {text: r for text, r in project.rows("select text, r from scored")}
    assert scored["an orange triangle"]["status"] == "failed"
    assert "missing image file" in scored["an orange triangle"]["error"]

    bundle = load_clip("ViT-S-32", "random", random_weights=True)
    with torch.inference_mode():
        images = torch.stack([bundle.preprocess(Image.open(SCENES / p).convert("RGB")) for _, p in PAIRS])
        image_features, text_features, scale = bundle.model(images, bundle.tokenizer([t for t, _ in PAIRS]))[:3]
        expected = (scale * (image_features * text_features).sum(dim=-1)).tolist()
    for (text, _), value in zip(PAIRS, expected, strict=True):
        assert scored[text]["status"] == "ok" and scored[text]["scorer"] == "open_clip:ViT-S-32/random"
        assert scored[text]["score"] == pytest.approx(value, abs=1e-4)

    project.ok("run", "--select", "scored", "--full-refresh")
    results = {r["name"]: r for r in project.run_results()["results"]}
    assert (results["scored"]["calls"], results["scored"]["cache_hits"]) == (0, 4)  # the failure is replayed too
