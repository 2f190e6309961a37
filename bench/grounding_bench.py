"""The 2D grounding pipelines through the openai backend (the real SDK) against the local OpenAI-compatible
server, which runs in its own process (so it does not share this process's GIL), answers from the offline
backend and waits a fixed latency before each answer. In one run this measures:

1. grounding calls/s: `grounding_ground_phrases` (image_grounding step 1) on --calls distinct rows with
   --workers concurrent calls and --latency s per call; the limit is workers / latency calls/s. Reported: the
   node's calls/s, its ratio to the limit and to a bare thread pool sending the same rendered requests
   through the same client (the ceiling of this machine), and the call latency the ledger recorded.
2. image_referring_expression wall time: the four steps on the 60 sample scenes (fresh call cache each time),
   with the runner free to run steps 0 and 1 at once (project threads) and forced serial (`--threads 1`), for
   a backend pool big enough for both steps at once (128) and for one that one step alone fills (30).

    python bench/grounding_bench.py [--calls 400] [--latency 0.2] [--workers 16] [--refexp-latency 1.0]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import yaml

from dataproj.cli import main as dataproj

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / ".work" / "grounding"
SERVER = """
import sys, time
from pathlib import Path
from dataproj.vlm.serve import offline_server
server = offline_server(Path(sys.argv[2]), latency_s=float(sys.argv[1])).start()
print(server.openai_base_url, flush=True)
time.sleep(1800)
"""


def start_server(latency: float) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen([sys.executable, "-c", SERVER, str(latency), str(ROOT / "prompts")],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def make_project(folder: Path, base_url: str, workers: int) -> None:
    """The grounding models, prompts and inputs, with every grounding prompt on an openai backend `local`."""
    if folder.exists():
        shutil.rmtree(folder)
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "models" / "grounding", folder / "models" / "grounding", ignore=ignore)
    shutil.copytree(ROOT / "prompts" / "grounding", folder / "prompts" / "grounding")
    shutil.copytree(ROOT / "seeds" / "grounding", folder / "seeds" / "grounding", ignore=ignore)
    shutil.copytree(ROOT / "seeds" / "scenes", folder / "seeds" / "scenes")
    shutil.copyfile(ROOT / "seeds" / "scene_truth.jsonl", folder / "seeds" / "scene_truth.jsonl")
    grounding = yaml.safe_load((ROOT / "project.yml").read_text())["vars"]["grounding"]
    config = {"name": "grounding_bench", "threads": 4, "vars": {"grounding": {**grounding, "vlm_backend": "local"}},
              "backends": {"local": {"type": "openai", "base_url": base_url, "model": "bench", "max_workers": workers,
                                     "api_key_env": "GROUNDING_BENCH_KEY"}}}
    (folder / "project.yml").write_text(yaml.safe_dump(config))


def run(folder: Path, *args: str) -> dict[str, Any]:
    code = dataproj([*args, "--project-dir", str(folder), "--log-format", "json"])
    assert code == 0, f"dataproj {' '.join(args)} failed"
    return json.loads((folder / "warehouse" / "target" / "run_results.json").read_text())


def node(results: dict[str, Any], name: str) -> dict[str, Any]:
    return next(r for r in results["results"] if r["name"] == name)


# ---- 1. grounding calls/s -----------------------------------------------------------------------------------


def calls_model(calls: int, salt: str) -> str:
    """`calls` distinct rows (a distinct phrase each, so no cache hits) over the 60 sample images."""
    truth = [json.loads(line) for line in (ROOT / "seeds" / "scene_truth.jsonl").read_text().splitlines()]
    images = ", ".join(f"({n}, 'seeds/{t['image_path']}', {t['width']}, {t['height']})" for n, t in enumerate(truth))
    return ("{{ config(materialized='table', vlm_backend='local') }}\n"
            f"select i, grounding_ground_phrases(to_json(['a blue square {salt}' || i])::varchar, width, height, "
            "image_path) as answer\n"
            f"from range({calls}) as t(i)\n"
            f"join (values {images}) as images(n, image_path, width, height) on images.n = i % {len(truth)}\n")


def bare_pool(base_url: str, calls: int, workers: int) -> float:
    """The same requests (rendered from the same asset, sent by the same client) from a plain thread pool,
    without the engine: calls/s."""
    from dataproj.vlm.calling import parse_output, request_for
    from dataproj.vlm.clients import OpenAIClient
    from dataproj.vlm.prompts import PromptStore
    from dataproj.vlm.settings import OpenAIBackend

    asset = PromptStore(ROOT / "prompts").get("grounding/image_grounding/ground_phrases")
    client = OpenAIClient(OpenAIBackend(type="openai", base_url=base_url, model="bench", max_attempts=1))
    truth = [json.loads(line) for line in (ROOT / "seeds" / "scene_truth.jsonl").read_text().splitlines()]

    def call(i: int) -> None:
        scene = truth[i % len(truth)]
        values = {"expressions": json.dumps([f"a blue square bare {i}"]), "width": scene["width"],
                  "height": scene["height"], "image": str(ROOT / "seeds" / scene["image_path"])}
        parse_output(asset, client.complete(request_for(asset, values)).text, values)

    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(call, range(calls)))
    return calls / (time.perf_counter() - started)


def grounding_throughput(calls: int, latency: float, workers: int) -> dict[str, float]:
    server, base_url = start_server(latency)
    folder = WORK / "calls"
    try:
        make_project(folder, base_url, workers)
        bench = folder / "models" / "bench"
        bench.mkdir()
        (bench / "bench_warmup.sql").write_text(calls_model(60, "warm-up"))  # the server analyses each image once
        (bench / "bench_grounding_calls.sql").write_text(calls_model(calls, "#"))
        run(folder, "run", "--select", "bench_warmup")
        results = run(folder, "run", "--select", "bench_grounding_calls")
        bare = bare_pool(base_url, calls, workers)
    finally:
        server.terminate()
    measured = node(results, "bench_grounding_calls")
    assert measured["calls"] == calls and measured["failed_calls"] == 0, measured
    con = duckdb.connect(str(folder / "warehouse" / "dataproj.duckdb"), read_only=True)
    try:
        p50, p95 = con.execute("select median(latency_s), quantile_cont(latency_s, 0.95) from dataproj_calls "
                               "where node = 'bench_grounding_calls'").fetchone()
    finally:
        con.close()
    rate = calls / measured["execution_time"]
    return {"calls": calls, "seconds": measured["execution_time"], "rate": rate, "limit": workers / latency,
            "ratio": rate / (workers / latency), "p50": p50, "p95": p95, "bare": bare}


# ---- 2. image_referring_expression: steps 0 and 1 at once versus serial ---------------------------------------


def refexp_wall(latency: float, workers: int) -> dict[str, dict[str, float]]:
    server, base_url = start_server(latency)
    folder = WORK / f"refexp_{workers}"
    timings: dict[str, dict[str, float]] = {}
    try:
        make_project(folder, base_url, workers)
        run(folder, "build", "--select", "+tag:image_referring_expression")  # seeds, and the server's warm-up
        for mode, threads in (("concurrent", []), ("serial", ["--threads", "1"])):
            shutil.rmtree(folder / "warehouse" / "cache")  # every call is made again
            started = time.perf_counter()
            results = run(folder, "run", "--select", "tag:image_referring_expression", *threads)
            wall = time.perf_counter() - started
            steps01 = [node(results, "refexp_regions"), node(results, "refexp_captions")]
            span = (max(_time(r["completed_at"]) for r in steps01) - min(_time(r["started_at"]) for r in steps01))
            timings[mode] = {"wall": wall, "run": results["elapsed_time"], "steps01": span,
                             "calls": sum(r["calls"] for r in results["results"])}
    finally:
        server.terminate()
    return timings


def _time(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--refexp-latency", type=float, default=1.0)
    args = parser.parse_args()
    os.environ["GROUNDING_BENCH_KEY"] = "sk-bench"
    WORK.mkdir(parents=True, exist_ok=True)

    calls = grounding_throughput(args.calls, args.latency, args.workers)
    print(f"\n1. grounding_ground_phrases through the openai backend: {calls['calls']} calls, {args.workers} workers, "
          f"server latency {args.latency} s -> limit {calls['limit']:.0f} calls/s")
    print(f"   dataproj node    {calls['rate']:6.1f} calls/s in {calls['seconds']:.2f} s   ratio to limit "
          f"{calls['ratio']:.2f}   ratio to bare pool {calls['rate'] / calls['bare']:.2f}   "
          f"call latency p50 {calls['p50']:.3f} s, p95 {calls['p95']:.3f} s")
    print(f"   bare thread pool {calls['bare']:6.1f} calls/s                ratio to limit "
          f"{calls['bare'] / calls['limit']:.2f}")

    print(f"\n2. image_referring_expression on 60 images, 4 steps, server latency {args.refexp_latency} s")
    for workers in (128, 30):
        timing = refexp_wall(args.refexp_latency, workers)
        together, serial = timing["concurrent"], timing["serial"]
        print(f"   max_workers {workers:3d}: run {together['run']:.2f} s with steps 0 and 1 at once, "
              f"{serial['run']:.2f} s with --threads 1 -> serial / concurrent {serial['run'] / together['run']:.2f}"
              f"   (steps 0+1 span {together['steps01']:.2f} s vs {serial['steps01']:.2f} s: "
              f"{serial['steps01'] / together['steps01']:.2f}; {together['calls']} calls each)")


if __name__ == "__main__":
    main()
