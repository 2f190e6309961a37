"""Profile a dataproj command in-process, worker threads included.

`python -m cProfile` only sees the main thread, but `dataproj run` builds every node on a worker
thread. This wraps `dataproj.runner.run_node` in a second profiler, so both halves are visible.

Usage (in a project folder, e.g. bench/.work/dataproj_chain after engine_bench.py):
    rm -rf warehouse && python ../../profile_run.py run --threads 1
    python ../../profile_run.py --top 40 ls
Writes PREFIX.main.prof and PREFIX.worker.prof (default prefix: profile) for snakeviz/pstats.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from typing import Any


def profiled_worker(profiler: cProfile.Profile) -> None:
    """Route every node build through `profiler` (one worker at a time with --threads 1)."""
    from dataproj import runner

    original = runner.run_node

    def run_node(*args: Any, **kwargs: Any) -> Any:
        profiler.enable()
        try:
            return original(*args, **kwargs)
        finally:
            profiler.disable()

    runner.run_node = run_node


def report(path: str, title: str, top: int) -> None:
    print(f"\n===== {title} ({path}), by cumulative time")
    pstats.Stats(path).sort_stats("cumulative").print_stats(top)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--top", type=int, default=30, help="rows of each report")
    parser.add_argument("--prefix", default="profile", help="output file prefix")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="dataproj arguments, e.g. run --threads 1")
    args = parser.parse_args()
    main_profiler, worker_profiler = cProfile.Profile(), cProfile.Profile()
    started = time.perf_counter()
    main_profiler.enable()
    from dataproj import cli  # imports are part of the picture

    profiled_worker(worker_profiler)
    code = cli.main(args.command)
    main_profiler.disable()
    print(f"dataproj {' '.join(args.command)}: exit {code}, {time.perf_counter() - started:.2f} s under the profiler",
          file=sys.stderr)
    main_profiler.dump_stats(f"{args.prefix}.main.prof")
    report(f"{args.prefix}.main.prof", "main thread", args.top)
    if worker_profiler.getstats():
        worker_profiler.dump_stats(f"{args.prefix}.worker.prof")
        report(f"{args.prefix}.worker.prof", "node builds (worker threads)", args.top)
    return code


if __name__ == "__main__":
    sys.exit(main())
