"""Image-search benchmark: the query_plan model against the reference's Python planner, and CLIP similarity
through the UDF against open_clip's own forward pass. Every ratio is measured in this one run.

  plan   generated annotation rows (no pixels: facets and tags only), 3 core facets, 1,000 queries, 40
         negatives (25 hard / 10 near-miss / 5 easy), diversity facets background_kind and object_count. The
         query_plan model is built with `dataproj run` in a child process: its node time (run_results.json),
         the command's wall time and the child's peak RSS, at 100,000 and 1,000,000 rows. The reference planner
         (reference_plan below: imsearch_benchmaker's TagOverlapQueryPlan, same loops, same Random(42)) runs on
         10,000 x 100 in the same run; the brief quotes ~4.5 s for it there and ~630 s at 100,000 x 1,000, so
         630 s x (measured / 4.5 s) is the reference's time on this machine at 100,000 x 1,000.
         Goals: >= 50x faster than that at 100,000 x 1,000; 1,000,000 x 1,000 under 60 s.
  clip   N distinct images (sample scenes with a few pixels changed each) with distinct query texts through
         clip_similarity in a dataproj model (random-weight ViT-B-32, batch 32, cold cache), vs open_clip's
         forward pass on the same images, texts and batch size, image decode included: images/s ratio
         (goal >= 0.8).

Usage: python bench/imsearch_bench.py [plan] [clip] [--rows 100000 1000000] [--queries 1000]
       [--reference-rows 10000] [--reference-queries 100] [--clip-images 128] [--work-dir DIR] [--keep]
       [--no-write]       (writes bench/RESULTS_imsearch.md unless --no-write; exits 1 when a goal is missed)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHAPES = ["circle", "square", "triangle", "star"]
COLORS = ["red", "orange", "yellow", "green", "blue", "purple", "white", "black"]
TONES = ["light", "dark"]
KINDS = ["plain", "gradient", "textured"]
COUNTS = ["one", "two", "three", "four_plus"]
SIZES = ["small", "medium", "large"]
VOCABULARY = (COLORS + SHAPES + [f"{c}_{s}" for c in COLORS for s in SHAPES]
              + [f"{t}_background" for t in TONES] + [f"{k}_background" for k in KINDS]
              + ["one_object", "two_objects", "three_objects", "four_objects", "single_object", "multiple_objects"]
              + [f"{s}_object" for s in SIZES])
TAXONOMY = {"dominant_shape": SHAPES, "dominant_color": COLORS, "background_tone": TONES,
            "background_kind": KINDS, "object_count": COUNTS}
BOOLEANS = ["has_red", "has_circle", "multiple_objects"]
REFERENCE_QUOTED_S = {(10_000, 100): 4.5, (100_000, 1_000): 630.0}


# ---- generated annotations ----------------------------------------------------------------------------------------


def generate_annotations(n: int, seed: int = 7) -> Any:
    """n annotation rows shaped like the pipeline's: facets, booleans and 6-19 vocabulary tags consistent with them
    (dominant object, background, count) plus a few other objects' tags."""
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    shape, color = rng.integers(0, 4, n), rng.integers(0, 8, n)
    tone, kind, count = rng.integers(0, 2, n), rng.integers(0, 3, n), rng.integers(0, 4, n)
    index = {t: i for i, t in enumerate(VOCABULARY)}
    fixed = np.stack([
        np.array([index[c] for c in COLORS])[color], np.array([index[s] for s in SHAPES])[shape],
        np.array([index[f"{c}_{s}"] for c in COLORS for s in SHAPES])[color * 4 + shape],
        np.array([index[f"{t}_background"] for t in TONES])[tone],
        np.array([index[f"{k}_background"] for k in KINDS])[kind],
        np.array([index[w] for w in ("one_object", "two_objects", "three_objects", "four_objects")])[count],
        np.where(count == 0, index["single_object"], index["multiple_objects"]),
        np.array([index[f"{s}_object"] for s in SIZES])[rng.integers(0, 3, n)]], axis=1)
    # Other objects: up to `count` more coloured shapes, their colours and shapes.
    other_color, other_shape = rng.integers(0, 8, (n, 3)), rng.integers(0, 4, (n, 3))
    present = np.arange(3)[None, :] < count[:, None]
    extra = np.concatenate([
        np.array([index[f"{c}_{s}"] for c in COLORS for s in SHAPES])[other_color * 4 + other_shape],
        np.array([index[c] for c in COLORS])[other_color], np.array([index[s] for s in SHAPES])[other_shape]], axis=1)
    extra_present = np.concatenate([present, present, present], axis=1)
    codes = np.concatenate([fixed, extra], axis=1)
    keep = np.concatenate([np.ones_like(fixed, dtype=bool), extra_present], axis=1)
    # Distinct codes per row, kept in order.
    rows = [list(dict.fromkeys(r[k].tolist())) for r, k in zip(codes, keep, strict=True)]
    offsets = np.zeros(n + 1, dtype=np.int32)
    offsets[1:] = np.cumsum([len(r) for r in rows])
    flat = pa.array(np.concatenate([np.asarray(r, dtype=np.int32) for r in rows]))
    tags = pa.ListArray.from_arrays(pa.array(offsets), pa.array(VOCABULARY).take(flat))
    has_red = (color == 0) | (present & (other_color == 0)).any(axis=1)
    has_circle = (shape == 0) | (present & (other_shape == 0)).any(axis=1)
    return pa.table({
        "image_id": pa.array([f"gen/{i // 1000:04d}/img_{i:07d}.jpg" for i in range(n)]),
        "status": pa.array(["ok"] * n),
        "dominant_shape": pa.array(SHAPES).take(pa.array(shape)),
        "dominant_color": pa.array(COLORS).take(pa.array(color)),
        "background_tone": pa.array(TONES).take(pa.array(tone)),
        "background_kind": pa.array(KINDS).take(pa.array(kind)),
        "object_count": pa.array(COUNTS).take(pa.array(count)), "has_red": pa.array(has_red),
        "has_circle": pa.array(has_circle), "multiple_objects": pa.array(count > 0), "tags": tags})


@dataclass(frozen=True)
class PlanParams:
    num_seeds: int = 1000
    core: tuple[str, ...] = ("dominant_shape", "dominant_color", "background_tone")
    off: tuple[str, ...] = ()
    diversity: tuple[str, ...] = ("background_kind", "object_count")
    pos: int = 0
    neutral: int = 0
    hard: int = 25
    nearmiss: int = 10
    easy: int = 5
    random_seed: int = 42

    @property
    def total(self) -> int:
        return self.hard + self.nearmiss + self.easy

    def vars(self) -> dict[str, Any]:
        return {"imsearch": {
            "taxonomy_facets": TAXONOMY, "boolean_facets": BOOLEANS,
            "tags": {"vocabulary": VOCABULARY, "min": 1, "max": 40},
            "query_plan": {"num_seeds": self.num_seeds, "seed_prefix": "query_", "core_facets": list(self.core),
                           "off_facets": list(self.off), "diversity_facets": list(self.diversity),
                           "pos_total": self.pos, "neutral_total": self.neutral, "neg_total": self.total,
                           "neg_hard": self.hard, "neg_nearmiss": self.nearmiss, "neg_easy": self.easy,
                           "random_seed": self.random_seed}}}


def make_plan_project(folder: Path, annotations: Any, params: PlanParams) -> Path:
    """A project with the real query_seeds and query_plan models over `annotations` (and `images`) seeds."""
    import pyarrow.parquet as pq
    import yaml

    models = folder / "models" / "imsearch"
    models.mkdir(parents=True, exist_ok=True)
    for name in ("query_seeds.sql", "query_plan.sql"):
        shutil.copy(ROOT / "models" / "imsearch" / name, models / name)
    (folder / "seeds").mkdir(exist_ok=True)
    pq.write_table(annotations, folder / "seeds" / "annotations.parquet")
    pq.write_table(annotations.select(["image_id"]), folder / "seeds" / "images.parquet")
    config = {"name": "imsearch_plan_bench", "threads": 2, "vars": params.vars()}
    (folder / "project.yml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return folder


def measured_run(folder: Path, *args: str) -> dict[str, float]:
    """`dataproj ARGS` in a child process: wall seconds and the child's peak RSS (MiB)."""
    wrapper = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
               "code = subprocess.run(sys.argv[1:]).returncode; "
               "print(code, time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    done = subprocess.run([sys.executable, "-c", wrapper, sys.executable, "-m", "dataproj", *args,
                           "--project-dir", str(folder)], capture_output=True, text=True, cwd=folder)
    code, wall, rss_kib = done.stdout.strip().splitlines()[-1].split()
    if int(code) != 0:
        raise RuntimeError(f"dataproj {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return {"wall_s": float(wall), "peak_rss_mib": int(rss_kib) / 1024}


def node_seconds(folder: Path, name: str) -> float:
    results = json.loads((folder / "warehouse" / "target" / "run_results.json").read_text(encoding="utf-8"))
    return next(r["execution_time"] for r in results["results"] if r["name"] == name)


# ---- the reference planner ------------------------------------------------------------------------------------------


@dataclass
class ImageRec:
    image_id: str
    facets: dict[str, Any]
    tags: set[str]


def jaccard(a: set[str], b: set[str]) -> float:
    if not a and not b:
        return 0.0
    union = len(a | b)
    return len(a & b) / union if union else 0.0


def majority_vote(values: list[Any], fallback: str = "unknown") -> Any:
    counts = Counter(v for v in values if v is not None)
    if not counts:
        return fallback
    top = counts.most_common()[0][1]
    return sorted((v for v, n in counts.items() if n == top), key=str)[0]


def derive_profile(seeds: list[ImageRec], keys: list[str]) -> dict[str, Any]:
    profile: dict[str, Any] = {}
    for key in keys:
        values = [r.facets.get(key) for r in seeds]
        if all(isinstance(v, bool) for v in values if v is not None):
            profile[key] = bool(round(sum(v is True for v in values) / max(1, len(values))))
        else:
            profile[key] = majority_vote(values)
    profile["seed_tags"] = set().union(*[r.tags for r in seeds]) if seeds else set()
    return profile


def one_facet_off(img: ImageRec, prof: dict[str, Any], keys: list[str], off: str) -> bool:
    if any(img.facets.get(k) != prof.get(k) for k in keys if k != off):
        return False
    return img.facets.get(off) != prof.get(off)


def score_by_tags(candidates: list[ImageRec], seed_tags: set[str]) -> list[tuple[float, ImageRec]]:
    scored = [(jaccard(c.tags, seed_tags), c) for c in candidates]
    scored.sort(key=lambda x: (-x[0], x[1].image_id))
    return scored


def pick_with_diversity(scored: list[tuple[float, ImageRec]], k: int, already: set[str], diversity: list[str],
                        cap: int) -> list[str]:
    picked: list[str] = []
    counts: Counter[tuple[str, ...]] = Counter()
    for _, img in scored:
        if len(picked) >= k:
            break
        if img.image_id in already:
            continue
        key = tuple(str(img.facets.get(f, "")) for f in diversity)
        if diversity and counts[key] >= cap:
            continue
        picked.append(img.image_id)
        already.add(img.image_id)
        if diversity:
            counts[key] += 1
    return picked


def reference_plan(annotations: dict[str, ImageRec], seeds: list[tuple[str, list[str]]], params: PlanParams,
                   order: Any = None) -> dict[str, tuple[list[str], list[str]]]:
    """imsearch_benchmaker's TagOverlapQueryPlan (its loops, its caps 6 / 5, its relaxations), with the positives
    and neutrals its docs describe picked first. Randomness: the reference's one Random(seed or 42) shuffling
    each pool, or, given `order(query_id) -> image ids`, the first images of that order (how the SQL model
    draws)."""
    rng = random.Random(params.random_seed or 42)
    core, off, div = list(params.core), list(params.off) or list(params.core), list(params.diversity)
    all_ids = list(annotations)
    idx_core: dict[tuple[Any, ...], list[ImageRec]] = defaultdict(list)
    for rec in annotations.values():
        idx_core[tuple(rec.facets.get(k) for k in core)].append(rec)

    def shuffled(pool: list[str], query_id: str) -> list[str]:
        if order is None:
            rng.shuffle(pool)
            return pool
        members = set(pool)
        return [i for i in order(query_id) if i in members]

    plan = {}
    for query_id, seed_ids in seeds:
        prof = derive_profile([annotations[s] for s in seed_ids], core)
        seed_tags, already = prof["seed_tags"], set(seed_ids)
        bucket = idx_core[tuple(prof.get(k) for k in core)]
        pos = pick_with_diversity(score_by_tags(bucket, seed_tags), params.pos, already, [], 0)
        oneoff = [r for r in annotations.values() if sum(r.facets.get(k) != prof.get(k) for k in core) == 1]
        neutral = pick_with_diversity(score_by_tags(oneoff, seed_tags), params.neutral, already, [], 0)
        hard = pick_with_diversity(score_by_tags(bucket, seed_tags), params.hard, already, div, 6)
        for i in range(len(core) - 1, 0, -1):
            if len(hard) >= params.hard:
                break
            relaxed = [r for r in annotations.values() if all(r.facets.get(k) == prof.get(k) for k in core[:i])]
            hard += pick_with_diversity(score_by_tags(relaxed, seed_tags), params.hard - len(hard), already, div, 6)
        near_map = {r.image_id: r for f in off for r in annotations.values() if one_facet_off(r, prof, core, f)}
        near = pick_with_diversity(score_by_tags(list(near_map.values()), seed_tags), params.nearmiss, already, div, 5)
        if len(near) < params.nearmiss:
            relaxed = [r for r in annotations.values() if r.facets.get(core[0]) == prof.get(core[0])]
            near += pick_with_diversity(score_by_tags(relaxed, seed_tags), params.nearmiss - len(near), already,
                                        div, 5)
        need = max(2, len(core) // 2)
        pool = [r.image_id for r in annotations.values() if r.image_id not in already
                and sum(r.facets.get(k) != prof.get(k) for k in core) >= need and jaccard(r.tags, seed_tags) <= 0.10]
        easy = [i for i in shuffled(pool, query_id) if i not in already][:params.easy]
        already.update(easy)
        randoms: list[str] = []
        if len(easy) < params.easy:
            others = [i for i in all_ids if i not in already]
            randoms = shuffled(others, query_id)[:params.easy - len(easy)]
            already.update(randoms)
        negatives = hard[:params.hard] + near[:params.nearmiss] + easy + randoms
        if len(negatives) < params.total:
            topup = shuffled([i for i in all_ids if i not in already], query_id)[:params.total - len(negatives)]
            already.update(topup)
            randoms += topup
        roles = (["seed"] * len(seed_ids) + ["positive"] * len(pos) + ["neutral"] * len(neutral)
                 + ["hard"] * len(hard) + ["nearmiss"] * len(near) + ["easy"] * len(easy) + ["random"] * len(randoms))
        plan[query_id] = (list(seed_ids) + pos + neutral + hard + near + easy + randoms, roles)
    return plan


def records(table: Any) -> dict[str, ImageRec]:
    facets = [*TAXONOMY, *BOOLEANS]
    columns = {name: table.column(name).to_pylist() for name in ["image_id", "tags", *facets]}
    return {image_id: ImageRec(image_id, {f: columns[f][i] for f in facets}, set(columns["tags"][i]))
            for i, image_id in enumerate(columns["image_id"])}


def evenly_spaced_seeds(image_ids: list[str], count: int, prefix: str = "query_") -> list[tuple[str, list[str]]]:
    ordered = sorted(image_ids)
    step = len(ordered) / count
    return [(f"{prefix}{i + 1:03d}", [ordered[int(i * step)]]) for i in range(count)]


# ---- plan benchmark -----------------------------------------------------------------------------------------------


def bench_plan(work: Path, rows: list[int], queries: int, ref_rows: int, ref_queries: int) -> dict[str, Any]:
    results: dict[str, Any] = {"sql": []}
    started = time.perf_counter()
    table = generate_annotations(ref_rows)
    params = PlanParams(num_seeds=ref_queries)
    seeds = evenly_spaced_seeds(table.column("image_id").to_pylist(), ref_queries)
    annotations = records(table)
    started = time.perf_counter()
    reference_plan(annotations, seeds, params)
    results["reference"] = {"rows": ref_rows, "queries": ref_queries, "seconds": time.perf_counter() - started}
    for n, q in [(ref_rows, ref_queries), *((r, queries) for r in rows)]:
        folder = work / f"plan_{n}_{q}"
        shutil.rmtree(folder, ignore_errors=True)
        make_plan_project(folder, generate_annotations(n), PlanParams(num_seeds=q))
        measured_run(folder, "build", "--select", "annotations", "images", "query_seeds")
        measured = measured_run(folder, "run", "--select", "query_plan")
        entry = {"rows": n, "queries": q, "node_s": node_seconds(folder, "query_plan"), **measured}
        results["sql"].append(entry)
        print(f"  query_plan {n:>9,} x {q:,}: {entry['node_s']:.2f} s (command {entry['wall_s']:.2f} s, "
              f"peak RSS {entry['peak_rss_mib']:.0f} MiB)", flush=True)
        shutil.rmtree(folder, ignore_errors=True)
    return results


# ---- clip benchmark -----------------------------------------------------------------------------------------------


def distinct_images(folder: Path, count: int) -> list[Path]:
    """`count` images with distinct content: the sample scenes, each copy with a few pixels set from its index."""
    from PIL import Image

    sources = sorted((ROOT / "seeds" / "scenes").rglob("*.png"))
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        with Image.open(sources[i % len(sources)]) as image:
            copy = image.convert("RGB")
        for bit in range(16):
            copy.putpixel((bit, 0), (255, 255, 255) if (i >> bit) & 1 else (0, 0, 0))
        path = folder / f"img_{i:05d}.png"
        copy.save(path)
        paths.append(path)
    return paths


def open_clip_forward(paths: list[Path], texts: list[str], batch: int) -> float:
    """Seconds for open_clip's forward pass over the pairs in batches: decode, preprocess, encode both, score."""
    import torch
    from PIL import Image

    from dataproj.vision.models import load_clip

    bundle = load_clip("ViT-B-32", "random", random_weights=True)
    started = time.perf_counter()
    for start in range(0, len(paths), batch):
        images = []
        for path in paths[start:start + batch]:
            with Image.open(path) as image:
                images.append(bundle.preprocess(image.convert("RGB")))
        with torch.inference_mode():
            image_features, text_features, scale = bundle.model(torch.stack(images),
                                                                bundle.tokenizer(texts[start:start + batch]))[:3]
            (scale * (image_features * text_features).sum(dim=-1)).tolist()
    return time.perf_counter() - started


def bench_clip(work: Path, count: int, batch: int = 32, rounds: int = 3) -> dict[str, Any]:
    """Alternating rounds of open_clip's forward pass and of the UDF (each UDF round recomputes every call with
    --refresh-cache); the best round of each is compared, which is the fairest reading on a shared machine."""
    from dataproj.cli import main as dataproj
    from dataproj.vision.models import load_clip

    folder = work / "clip"
    shutil.rmtree(folder, ignore_errors=True)
    paths = distinct_images(folder / "images", count)
    texts = [f"a {COLORS[i % 8]} {SHAPES[(i // 8) % 4]} on a {TONES[(i // 32) % 2]} background (picture {i})"
             for i in range(count)]
    (folder / "seeds").mkdir()
    (folder / "seeds" / "pairs.csv").write_text(
        "text,path\n" + "".join(f"{t},{p.relative_to(folder).as_posix()}\n" for t, p in zip(texts, paths, strict=True)))
    (folder / "models").mkdir()
    (folder / "models" / "clip_scores.sql").write_text(
        "{{ config(materialized='table') }}\nselect text, path, "
        "clip_similarity(text, path, 'open_clip:ViT-B-32/random') as r from {{ ref('pairs') }}\n")
    (folder / "project.yml").write_text("name: clip_bench\nthreads: 1\n")
    load_clip("ViT-B-32", "random", random_weights=True)
    open_clip_forward(paths[:batch], texts[:batch], batch)  # warm-up: kernels, allocator
    assert dataproj(["seed", "--project-dir", str(folder)]) == 0
    baseline, udf = [], []
    for _ in range(rounds):
        baseline.append(open_clip_forward(paths, texts, batch))
        assert dataproj(["run", "--select", "clip_scores", "--refresh-cache", "clip_similarity",
                         "--project-dir", str(folder)]) == 0
        udf.append(node_seconds(folder, "clip_scores"))
    udf_s, baseline_s = min(udf), min(baseline)
    return {"images": count, "batch": batch, "rounds": rounds, "udf_s": udf_s, "open_clip_s": baseline_s,
            "udf_all": udf, "open_clip_all": baseline, "udf_images_per_s": count / udf_s,
            "open_clip_images_per_s": count / baseline_s, "ratio": baseline_s / udf_s}


# ---- report -------------------------------------------------------------------------------------------------------


def report(plan: dict[str, Any] | None, clip: dict[str, Any] | None) -> tuple[str, bool]:
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    lines = ["# imsearch benchmark", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, load average "
             f"{load} when the report was written (the machine is shared: ratios are taken within one run); "
             "command: `python bench/imsearch_bench.py`.", ""]
    ok = True
    if plan is not None:
        ref = plan["reference"]
        quoted = REFERENCE_QUOTED_S.get((ref["rows"], ref["queries"]))
        scale = ref["seconds"] / quoted if quoted else 1.0
        reference_100k = REFERENCE_QUOTED_S[(100_000, 1_000)] * scale
        lines += ["## query_plan (SQL) vs the reference planner", "",
                  f"Reference planner (port of TagOverlapQueryPlan) at {ref['rows']:,} x {ref['queries']:,}: "
                  f"{ref['seconds']:.2f} s measured here (the brief quotes {quoted} s), so about "
                  f"{reference_100k:.0f} s at 100,000 x 1,000 on this machine.", "",
                  "| annotation rows | queries | query_plan node (s) | command wall (s) | peak RSS (MiB) "
                  "| vs reference |",
                  "|---:|---:|---:|---:|---:|---|"]
        for entry in plan["sql"]:
            if (entry["rows"], entry["queries"]) == (ref["rows"], ref["queries"]):
                versus = f"{ref['seconds'] / entry['node_s']:.0f}x faster (measured in this run)"
            elif (entry["rows"], entry["queries"]) == (100_000, 1_000):
                speedup = reference_100k / entry["node_s"]
                ok &= speedup >= 50
                versus = f"{speedup:.0f}x faster than {reference_100k:.0f} s (goal >= 50x)"
            elif (entry["rows"], entry["queries"]) == (1_000_000, 1_000):
                ok &= entry["node_s"] < 60
                versus = f"goal < 60 s: {'met' if entry['node_s'] < 60 else 'missed'}"
            else:
                versus = ""
            lines.append(f"| {entry['rows']:,} | {entry['queries']:,} | {entry['node_s']:.2f} | "
                         f"{entry['wall_s']:.2f} | {entry['peak_rss_mib']:.0f} | {versus} |")
        lines.append("")
    if clip is not None:
        ok &= clip["ratio"] >= 0.8
        joined = ", ".join
        lines += ["## CLIP similarity through the UDF vs open_clip's forward pass", "",
                  f"{clip['images']} distinct images and texts, random-weight ViT-B-32, batch {clip['batch']}, "
                  f"decode included; {clip['rounds']} alternating rounds, every UDF round recomputing its calls "
                  "(--refresh-cache); best round of each.", "",
                  "| path | best (s) | images/s | all rounds (s) |", "|---|---:|---:|---|",
                  f"| clip_similarity in a dataproj model | {clip['udf_s']:.2f} | {clip['udf_images_per_s']:.1f} | "
                  f"{joined(f'{v:.1f}' for v in clip['udf_all'])} |",
                  f"| open_clip forward pass | {clip['open_clip_s']:.2f} | {clip['open_clip_images_per_s']:.1f} | "
                  f"{joined(f'{v:.1f}' for v in clip['open_clip_all'])} |",
                  "", f"Ratio UDF / open_clip (images/s): **{clip['ratio']:.2f}** (goal >= 0.8).", ""]
    return "\n".join(lines), ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("parts", nargs="*", metavar="plan|clip", help="what to measure (default: both)")
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--reference-rows", type=int, default=10_000)
    parser.add_argument("--reference-queries", type=int, default=100)
    parser.add_argument("--clip-images", type=int, default=128)
    parser.add_argument("--work-dir", type=Path)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    parts = set(args.parts or ["plan", "clip"])
    if parts - {"plan", "clip"}:
        parser.error(f"unknown part(s) {sorted(parts - {'plan', 'clip'})}: choose plan and/or clip")
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="imsearch-bench-"))
    try:
        plan = bench_plan(work, args.rows, args.queries, args.reference_rows, args.reference_queries) \
            if "plan" in parts else None
        clip = bench_clip(work, args.clip_images) if "clip" in parts else None
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    text, ok = report(plan, clip)
    print(text)
    if not args.no_write:
        (ROOT / "bench" / "RESULTS_imsearch.md").write_text(text, encoding="utf-8")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
