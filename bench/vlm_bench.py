"""Calls/s through the openai backend (the real SDK) against a local OpenAI-compatible server.

The server runs in its own process and answers after a fixed latency, so with max_workers concurrent calls
the limit is max_workers / latency calls/s. In one run this measures:
  - a bare thread pool calling the SDK directly (the ceiling this machine reaches with the same payloads),
  - dataproj: a model calling pairwise_judge on distinct rows (render, SDK call, validation, cache, ledger),
  - the rerun of that model (all cache hits, zero calls).
`--answers offline` makes the server answer from the offline backend (image analysis, CPU-heavy on 2 cores);
`constant` (the default) returns a fixed verdict so the client path is what is measured.

    python bench/vlm_bench.py [--calls 400] [--latency 0.2] [--workers 16] [--answers constant|offline]
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from dataproj.cli import main as dataproj

ROOT = Path(__file__).resolve().parents[1]
SCENES = sorted(str(p) for p in (ROOT / "seeds" / "scenes").rglob("*.png"))[:3]
SERVER = """
import json, sys, time
from pathlib import Path
from dataproj.vlm.local_server import LocalVLMServer
from dataproj.vlm.serve import OfflineAnswerer
from dataproj.vlm.prompts import PromptStore
latency, answers = float(sys.argv[1]), sys.argv[2]
answer = (OfflineAnswerer(PromptStore(Path(sys.argv[3]))) if answers == "offline"
          else (lambda request: json.dumps({"winner": "Image A", "reasoning": "fixed"})))
server = LocalVLMServer(answer, latency_s=latency).start()
print(server.openai_base_url, flush=True)
time.sleep(600)
"""


def start_server(latency: float, answers: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen([sys.executable, "-c", SERVER, str(latency), answers, str(ROOT / "prompts")],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def bare_pool(base_url: str, calls: int, workers: int) -> float:
    """The same requests straight through the SDK from a thread pool: calls/s."""
    import openai

    client = openai.OpenAI(api_key="sk-bench", base_url=base_url, max_retries=0)

    def call(i: int) -> str:
        images = [{"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(
            Path(p).read_bytes()).decode(), "detail": "low"}} for p in SCENES]
        content = [{"type": "text", "text": f"Instruction: add a red circle #{i}"}, *images]
        reply = client.chat.completions.create(model="bench", messages=[{"role": "user", "content": content}])
        return reply.choices[0].message.content or ""

    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(call, range(calls)))
    return calls / (time.perf_counter() - started)


def make_project(folder: Path, base_url: str, workers: int, calls: int) -> None:
    """A model that judges `calls` distinct pairs (distinct instructions, so none is a cache hit)."""
    (folder / "models").mkdir(parents=True)
    (folder / "project.yml").write_text(
        "name: vlm_bench\nvlm: {backend: local}\n"
        f"backends:\n  local: {{type: openai, base_url: '{base_url}', model: bench, max_workers: {workers}}}\n")
    source, a, b = SCENES
    (folder / "models" / "judged.sql").write_text(
        "{{ config(materialized='table') }}\n"
        f"select i, pairwise_judge('add a red circle #' || i, '{source}', '{a}', '{b}') as verdict\n"
        f"from range({calls}) t(i)\n")


def timed_run(folder: Path) -> float:
    started = time.perf_counter()
    assert dataproj(["run", "--project-dir", str(folder), "--log-format", "json"]) == 0, "the run failed"
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--answers", choices=["constant", "offline"], default="constant")
    args = parser.parse_args()
    os.environ["OPENAI_API_KEY"] = "sk-bench"
    server, base_url = start_server(args.latency, args.answers)
    folder = Path(tempfile.mkdtemp(prefix="dataproj-vlm-bench-"))
    try:
        bare = bare_pool(base_url, args.calls, args.workers)
        make_project(folder, base_url, args.workers, args.calls)
        first = timed_run(folder)
        rerun = timed_run(folder)
    finally:
        server.terminate()
        shutil.rmtree(folder, ignore_errors=True)
    limit = args.workers / args.latency
    ours = args.calls / first
    print(f"\nlimit {limit:.0f} calls/s ({args.workers} workers / {args.latency} s), answers: {args.answers}")
    print(f"bare SDK thread pool   {bare:6.1f} calls/s   ratio to limit {bare / limit:.2f}")
    print(f"dataproj run           {ours:6.1f} calls/s   ratio to limit {ours / limit:.2f}   "
          f"ratio to bare pool {ours / bare:.2f}   (run wall time, start-up included)")
    print(f"rerun: 0 calls, {rerun:.2f} s = {rerun / first:.3f} of the first run")


if __name__ == "__main__":
    main()
