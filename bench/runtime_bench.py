"""Runtime benchmark: what the @udf call path costs, and whether I/O functions run at their backend's limit.

Every number is taken in this one run (the machine is shared and noisy), so the printed ratios compare
measurements made seconds apart:

  overhead  1,000,000 rows through a trivial cached row function `plus_one` (first run all misses, then all
            hits: in the same session and in a new session that loads the cache from disk) and through the
            same function uncached, vs `plus_one_native`, a plain DuckDB row-at-a-time Python UDF
            (goal: cached hit path >= native). `floor` is a bare Arrow UDF with the runtime's argument shape
            (value, hash(value), getvariable(node)) that returns pc.add(x, 1): what this design costs at least.
  io        an io UDF (kind="io", cached=True, backend="http", max_workers 16) calling a local HTTP server
            that sleeps 200 ms per request, over 2,000 distinct rows: calls/s vs the limit 16 / 0.2 s = 80
            (goal >= 95 %); the same requests from a bare ThreadPoolExecutor(16) (what this harness allows
            without dataproj) and a serial baseline of 20 plain calls (about 5 calls/s).
  rerun     the same io query again, in the same session and in a new one: zero requests and zero new
            ledger rows; rerun time / first time.
  crash     `python -m dataproj run` of a table model calling the io function over 1,000 rows (50 ms per
            call); kill -9 at about half the calls, then rerun to completion: total requests vs rows
            (goal: equal, or at most the calls in flight at the kill extra).

Usage: python bench/runtime_bench.py [overhead|io|rerun|crash|all ...] [--rows 1000000] [--repeats 5]
       [--io-rows 2000] [--crash-rows 1000] [--profile] [--json FILE] [--work-dir DIR] [--keep]
       python bench/runtime_bench.py --report FILE   (the table of a saved --json run)
(`rerun` runs `io` first: it reruns that query. --profile adds cProfile top functions of the cached and
uncached row paths, and wall / CPU time of the runtime functions on the io path. Exits 1 when a goal is missed.)
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import platform
import pstats
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
SECTIONS = ["overhead", "io", "rerun", "crash"]
IO_WORKERS = 16
IO_DELAY_S = 0.2
IO_GOAL = 0.95  # of the limit max_workers / delay
CRASH_DELAY_S = 0.05
SERVER_LIFETIME_S = 1800.0  # every server stops by itself after this, whatever happens to the benchmark


# ---- a local HTTP backend --------------------------------------------------------------------------------
class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default (5) would refuse connections from 16 workers at once


class CallServer:
    """Answers GET /?x=N with {"x": N, "y": 2N} after `delay_s`; counts requests, in-flight and arguments."""

    def __init__(self, delay_s: float, lifetime_s: float = SERVER_LIFETIME_S) -> None:
        self.delay_s = delay_s
        self.lock = threading.Lock()
        self.requests = 0  # started
        self.completed = 0  # answered
        self.in_flight = 0
        self.max_in_flight = 0
        self.args: Counter[int] = Counter()
        self.started_at: list[float] = []  # perf_counter() of every request's arrival
        self._httpd = _HTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="bench-http", daemon=True)
        self._timer = threading.Timer(lifetime_s, self.stop)
        self._timer.daemon = True
        self._stopped = False

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                x = int(query.get("x", ["0"])[0])
                with server.lock:
                    server.requests += 1
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                    server.args[x] += 1
                    server.started_at.append(time.perf_counter())
                time.sleep(server.delay_s)
                body = json.dumps({"x": x, "y": 2 * x}).encode()
                with server.lock:  # answered from here on (before the client can see it and call again)
                    server.in_flight -= 1
                    server.completed += 1
                with contextlib.suppress(OSError):  # the client may have been killed meanwhile
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        return Handler

    def timeline(self, since: float, until: float, workers: int) -> dict[str, float]:
        """Of the requests that arrived in [since, until]: seconds to the first, the steady rate (calls/s
        between the first and last full wave of `workers`), and seconds from the last arrival to `until`."""
        with self.lock:
            arrivals = [t for t in self.started_at if since <= t <= until]
        if len(arrivals) < 3 * workers:
            return {}
        return {"first_request_s": arrivals[0] - since,
                "steady_calls_per_s": (len(arrivals) - 2 * workers) / (arrivals[-workers - 1] - arrivals[workers]),
                "after_last_request_s": until - arrivals[-1]}

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return {"requests": self.requests, "completed": self.completed, "in_flight": self.in_flight}

    def reset_peak(self) -> None:
        with self.lock:
            self.max_in_flight = self.in_flight

    def wait_idle(self, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                if self.in_flight == 0:
                    return
            time.sleep(0.01)

    def start(self) -> CallServer:
        self._thread.start()
        self._timer.start()
        return self

    def stop(self) -> None:
        with self.lock:
            if self._stopped:
                return
            self._stopped = True
        self._timer.cancel()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> CallServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---- projects ----------------------------------------------------------------------------------------------
OVERHEAD_UDFS = '''
from dataproj import udf


@udf(cached=True)
def plus_one(x: int) -> int:
    return x + 1


@udf
def plus_one_plain(x: int) -> int:
    return x + 1


@udf(cached=True)
def plus_one_profiled(x: int) -> int:  # the same, with a cache of its own, for the --profile miss run
    return x + 1
'''

IO_UDFS = '''
import json
import urllib.request

from dataproj import udf

URL = {url!r}


@udf(kind="io", cached=True, backend="http")
def call_api(x: int) -> int:
    with urllib.request.urlopen(f"{{URL}}/?x={{x}}", timeout=60) as response:
        return json.loads(response.read())["y"]
'''


def write_project(root: Path, udfs: str, *, backends: bool = False, models: dict[str, str] | None = None) -> Path:
    if root.exists():
        shutil.rmtree(root)
    (root / "udfs").mkdir(parents=True)
    config = "name: runtime_bench\nthreads: 4\n"
    if backends:
        config += f"backends:\n  http:\n    max_workers: {IO_WORKERS}\n"
    (root / "project.yml").write_text(config)
    (root / "udfs" / "f.py").write_text(textwrap.dedent(udfs).lstrip())
    for name, sql in (models or {}).items():
        (root / "models").mkdir(exist_ok=True)
        (root / "models" / f"{name}.sql").write_text(sql)
    return root


@contextlib.contextmanager
def warehouse(root: Path) -> Iterator[Any]:
    from dataproj.commands import open_warehouse
    from dataproj.project import load_project

    with open_warehouse(load_project(root)) as wh:
        yield wh


def timed(con: Any, sql: str) -> tuple[float, list[tuple[Any, ...]]]:
    started = time.perf_counter()
    rows = con.execute(sql).fetchall()
    return time.perf_counter() - started, rows


def ledger_calls(wh: Any, function: str) -> int:
    calls = wh.runtime.ledger.to_arrow()
    return sum(rows or 1 for name, rows in zip(calls.column("function").to_pylist(),
                                               calls.column("rows").to_pylist(), strict=True) if name == function)


def register_baselines(con: Any) -> None:
    """plus_one_native: DuckDB's own row-at-a-time Python UDF; bench_floor: the runtime's shape, no work."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        from duckdb.sqltypes import BIGINT, UBIGINT, VARCHAR
    except ImportError:  # duckdb < 1.4
        from duckdb.typing import BIGINT, UBIGINT, VARCHAR

    con.create_function("plus_one_native", lambda x: x + 1, [BIGINT], BIGINT)

    def floor(x: Any, key: Any, node: Any) -> Any:
        x = x.combine_chunks() if isinstance(x, pa.ChunkedArray) else x
        return pc.add(x, 1)

    con.create_function("__bench_floor", floor, [BIGINT, UBIGINT, VARCHAR], BIGINT, type="arrow",
                        null_handling="special")
    con.execute("create or replace temp macro bench_floor(p) as "
                "__bench_floor(cast(p as BIGINT), hash(cast(p as BIGINT)), getvariable('dataproj_node'))")


# ---- profiling (in this process only: the executor's entry point is wrapped, src/ is untouched) ----------
class Profiler:
    """cProfile of every FunctionExecutor call, whichever DuckDB thread makes it, merged into one report."""

    def __init__(self) -> None:
        self.profiles: list[cProfile.Profile] = []
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        from dataproj.runtime import executor

        original = executor.FunctionExecutor.__call__

        def profiled(this: Any, *args: Any, **kwargs: Any) -> Any:
            profile = cProfile.Profile()
            profile.enable()
            try:
                return original(this, *args, **kwargs)
            finally:
                profile.disable()
                with self._lock:
                    self.profiles.append(profile)

        executor.FunctionExecutor.__call__ = profiled
        try:
            yield
        finally:
            executor.FunctionExecutor.__call__ = original

    def report(self, title: str, top: int = 14) -> str:
        if not self.profiles:
            return f"{title}: nothing profiled\n"
        out = io.StringIO()
        stats = pstats.Stats(self.profiles[0], stream=out)
        for profile in self.profiles[1:]:
            stats.add(profile)
        stats.strip_dirs().sort_stats("tottime").print_stats(top)
        lines = [line for line in out.getvalue().splitlines() if line.strip()]
        return f"--- profile: {title} (cProfile, sorted by own time) ---\n" + "\n".join(lines) + "\n"


class Timers:
    """Wall and thread-CPU time of named runtime functions (wrapped in this process only), e.g. the storing
    of results and ledger rows that the io path does on DuckDB's thread between completions."""

    TARGETS = [("dataproj.runtime.executor", "FunctionExecutor._finish"), ("dataproj.runtime.cache", "CallCache.store"),
               ("dataproj.runtime.cache", "CallCache.flush"),
               ("dataproj.runtime.ledger", "Ledger.record"), ("dataproj.runtime.executor", "wait"),
               ("dataproj.runtime.executor", "FunctionExecutor._call"),
               ("dataproj.runtime.executor", "call_with_retries")]

    def __init__(self) -> None:
        self.totals: dict[str, list[float]] = {}  # name -> [calls, wall s, thread cpu s]
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        import importlib

        undo = []
        for module_name, dotted in self.TARGETS:
            owner: Any = importlib.import_module(module_name)
            *path, attr = dotted.split(".")
            for part in path:
                owner = getattr(owner, part, None)
            original = getattr(owner, attr, None) if owner is not None else None
            if original is None:
                continue
            setattr(owner, attr, self._wrap(dotted, original))
            undo.append((owner, attr, original))
        try:
            yield
        finally:
            for owner, attr, original in undo:
                setattr(owner, attr, original)

    def _wrap(self, name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def timed_call(*args: Any, **kwargs: Any) -> Any:
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
                with self._lock:
                    total = self.totals.setdefault(name, [0, 0.0, 0.0])
                    total[0] += 1
                    total[1] += wall
                    total[2] += cpu

        return timed_call

    def report(self, title: str, calls: int) -> str:
        lines = [f"--- {title}: time in runtime functions (per real call = / {calls}) ---",
                 f"{'function':34} {'times':>6} {'wall s':>8} {'cpu s':>7} {'wall ms/call':>12} {'cpu ms/call':>11}"]
        for name, (count, wall, cpu) in sorted(self.totals.items(), key=lambda item: -item[1][2]):
            lines.append(f"{name:34} {count:6.0f} {wall:8.2f} {cpu:7.2f} {1000 * wall / calls:12.2f} "
                         f"{1000 * cpu / calls:11.2f}")
        return "\n".join(lines) + "\n"


# ---- sections ----------------------------------------------------------------------------------------------
def bench_overhead(work: Path, rows: int, repeats: int, profile: bool, results: dict[str, Any]) -> None:
    root = write_project(work / "overhead", OVERHEAD_UDFS)
    expected = rows * (rows - 1) // 2 + rows
    sql = {name: f"select sum({name}(range)) from range({rows})"
           for name in ["plus_one", "plus_one_plain", "plus_one_native", "bench_floor"]}
    samples: dict[str, list[float]] = {"native": [], "floor": [], "hit_same": [], "plain": [], "hit_new": [],
                                       "native_new": [], "hit_shuffled": [], "native_shuffled": []}

    def check(name: str, got: list[tuple[Any, ...]]) -> None:
        if got[0][0] != expected:
            raise SystemExit(f"overhead: {name} returned {got[0][0]}, expected {expected}")

    print(f"overhead: {rows:,} rows, {repeats} repeats", flush=True)
    with warehouse(root) as wh:
        con = wh.con
        register_baselines(con)
        miss_s, got = timed(con, sql["plus_one"])
        check("plus_one (miss)", got)
        print(f"  all-miss run {miss_s:.2f} s", flush=True)
        for _ in range(repeats):  # interleaved, so that noise hits every variant alike
            for key, name in [("native", "plus_one_native"), ("floor", "bench_floor"), ("hit_same", "plus_one"),
                              ("plain", "plus_one_plain")]:
                seconds, got = timed(con, sql[name])
                check(name, got)
                samples[key].append(seconds)
        entries = wh.runtime.cache.stats()
    with warehouse(root) as wh:  # a new command: the cache index is loaded from disk by the first batch
        con = wh.con
        register_baselines(con)
        cold_s, got = timed(con, sql["plus_one"])
        check("plus_one (new session)", got)
        # the same rows in another order than they were computed in: no stored run to find, every key looked up
        con.execute(f"create temp table shuffled as select range as x from range({rows}) order by hash(range * 7)")
        for _ in range(repeats):
            for key, name in [("native_new", "plus_one_native"), ("hit_new", "plus_one")]:
                seconds, got = timed(con, sql[name])
                check(name, got)
                samples[key].append(seconds)
            for key, name in [("native_shuffled", "plus_one_native"), ("hit_shuffled", "plus_one")]:
                seconds, got = timed(con, f"select sum({name}(x)) from shuffled")
                check(name + " (shuffled)", got)
                samples[key].append(seconds)
    med = {key: statistics.median(values) for key, values in samples.items()}
    native = med["native"]
    results["overhead"] = {
        "rows": rows, "repeats": repeats, "samples_s": samples, "median_s": med, "miss_s": miss_s,
        "hit_new_first_s": cold_s, "cache_tables": [list(e) for e in entries],
        "rows_per_s": {"native": rows / native, "floor": rows / med["floor"], "miss": rows / miss_s,
                       "hit_same": rows / med["hit_same"], "hit_new_first": rows / cold_s,
                       "hit_new": rows / med["hit_new"], "plain": rows / med["plain"],
                       "native_new": rows / med["native_new"], "hit_shuffled": rows / med["hit_shuffled"],
                       "native_shuffled": rows / med["native_shuffled"]},
    }
    if profile:
        results.setdefault("profiles", []).extend(profile_row_paths(root, min(rows, 200_000), rows))


def profile_row_paths(root: Path, miss_rows: int, hit_rows: int) -> list[str]:
    """cProfile of the row paths: misses and same-session hits (a function with an empty cache), hits in a
    new session with the index loaded, and the uncached function."""

    def profiled(con: Any, title: str, query: str) -> str:
        profiler = Profiler()
        with profiler.active():
            con.execute(query).fetchall()
        return profiler.report(title)

    miss_query = f"select sum(plus_one_profiled(range)) from range({miss_rows})"
    hit_query = f"select sum(plus_one(range)) from range({hit_rows})"
    with warehouse(root) as wh:
        reports = [profiled(wh.con, f"cached, all misses, {miss_rows:,} rows", miss_query),
                   profiled(wh.con, f"cached, hits in the same session, {miss_rows:,} rows", miss_query)]
    with warehouse(root) as wh:
        wh.con.execute(hit_query).fetchall()  # loads the index
        reports += [profiled(wh.con, f"cached, hits in a new session, {hit_rows:,} rows", hit_query),
                    profiled(wh.con, f"uncached, {miss_rows:,} rows",
                             f"select sum(plus_one_plain(range)) from range({miss_rows})")]
    return reports


def plain_call(url: str, x: int) -> int:
    with urllib.request.urlopen(f"{url}/?x={x}", timeout=60) as response:
        return json.loads(response.read())["y"]


def ledger_latencies(wh: Any, function: str) -> list[float]:
    calls = wh.runtime.ledger.to_arrow()
    return [latency for name, latency in zip(calls.column("function").to_pylist(),
                                             calls.column("latency_s").to_pylist(), strict=True)
            if name == function and latency is not None]


def bench_io(work: Path, rows: int, profile: bool, results: dict[str, Any], *, rerun: bool) -> None:
    limit = IO_WORKERS / IO_DELAY_S
    print(f"io: {rows:,} rows, {IO_WORKERS} workers, {IO_DELAY_S * 1000:.0f} ms per call "
          f"(limit {limit:.0f} calls/s)", flush=True)
    with CallServer(IO_DELAY_S) as server:
        root = write_project(work / "io", IO_UDFS.format(url=server.url), backends=True)
        # serial baseline: the same request made one after the other, no runtime
        serial_rows = 20
        started = time.perf_counter()
        for x in range(10**6, 10**6 + serial_rows):
            plain_call(server.url, x)
        serial_s = time.perf_counter() - started
        # the same requests from a bare ThreadPoolExecutor(max_workers): what this harness allows without dataproj
        server.reset_peak()
        started = time.perf_counter()
        pool_cpu_started = sum(os.times()[:2])
        with ThreadPoolExecutor(IO_WORKERS) as pool:
            list(pool.map(plain_call, [server.url] * rows, range(2 * 10**6, 2 * 10**6 + rows)))
        pool_s = time.perf_counter() - started
        pool_cpu_s = sum(os.times()[:2]) - pool_cpu_started
        pool_timeline = server.timeline(started, started + pool_s, IO_WORKERS)
        pool_peak = server.max_in_flight
        query = f"select count(*), sum(call_api(range)) from range({rows})"
        expected = [(rows, rows * (rows - 1))]
        with warehouse(root) as wh:
            before = server.snapshot()["requests"]
            server.reset_peak()
            timers = Timers() if profile else None
            query_started = time.perf_counter()
            cpu_started = sum(os.times()[:2])
            with timers.active() if timers else contextlib.nullcontext():
                first_s, got = timed(wh.con, query)
            cpu_s = sum(os.times()[:2]) - cpu_started
            timeline = server.timeline(query_started, query_started + first_s, IO_WORKERS)
            first_requests = server.snapshot()["requests"] - before
            peak = server.max_in_flight
            first_ledger = ledger_calls(wh, "call_api")
            latencies = sorted(ledger_latencies(wh, "call_api"))
            if got != expected:
                raise SystemExit(f"io: got {got}, expected {expected}")
            same: dict[str, Any] = {}
            if rerun:
                before = server.snapshot()["requests"]
                same_s, got = timed(wh.con, query)
                same = {"s": same_s, "requests": server.snapshot()["requests"] - before,
                        "ledger_new": ledger_calls(wh, "call_api") - first_ledger, "ok": got == expected}
        results["io"] = {"rows": rows, "workers": IO_WORKERS, "delay_s": IO_DELAY_S, "limit_calls_per_s": limit,
                         "seconds": first_s, "requests": first_requests, "ledger_calls": first_ledger,
                         "calls_per_s": first_requests / first_s, "peak_in_flight": peak,
                         "serial_rows": serial_rows, "serial_s": serial_s,
                         "serial_calls_per_s": serial_rows / serial_s, "pool_s": pool_s,
                         "pool_calls_per_s": rows / pool_s, "pool_peak_in_flight": pool_peak,
                         "timeline": timeline, "pool_timeline": pool_timeline,
                         "cpu_ms_per_call": 1000 * cpu_s / rows, "pool_cpu_ms_per_call": 1000 * pool_cpu_s / rows,
                         "latency_median_s": statistics.median(latencies) if latencies else None,
                         "latency_mean_s": statistics.fmean(latencies) if latencies else None,
                         "latency_p99_s": latencies[int(0.99 * (len(latencies) - 1))] if latencies else None}
        if timers:
            results.setdefault("profiles", []).append(timers.report(f"io, {rows:,} calls", rows))
        if rerun:
            with warehouse(root) as wh:
                ledger_before = ledger_calls(wh, "call_api")
                before = server.snapshot()["requests"]
                new_s, got = timed(wh.con, query)
                results["rerun"] = {
                    "same_session": same,
                    "new_session": {"s": new_s, "requests": server.snapshot()["requests"] - before,
                                    "ledger_new": ledger_calls(wh, "call_api") - ledger_before, "ok": got == expected},
                    "first_s": first_s,
                }


def bench_crash(work: Path, rows: int, results: dict[str, Any]) -> None:
    print(f"crash: {rows:,} rows, {IO_WORKERS} workers, {CRASH_DELAY_S * 1000:.0f} ms per call, "
          "kill -9 at half", flush=True)
    model = ("{{ config(materialized='table') }}\n"
             f"select range as x, call_api(range) as y from range({rows})\n")
    with CallServer(CRASH_DELAY_S) as server:
        root = write_project(work / "crash", IO_UDFS.format(url=server.url), backends=True, models={"calls": model})
        command = [sys.executable, "-m", "dataproj", "run", "--project-dir", str(root)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"),
                                                                         os.environ.get("PYTHONPATH")]))}
        log = work / "crash_run1.log"
        started = time.perf_counter()
        with log.open("w") as out:
            proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)
            killed_at: dict[str, int] | None = None
            deadline = time.monotonic() + 120
            try:
                while proc.poll() is None and time.monotonic() < deadline:
                    if server.snapshot()["requests"] >= rows // 2:
                        killed_at = server.snapshot()
                        os.kill(proc.pid, signal.SIGKILL)
                        break
                    time.sleep(0.002)
            finally:
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        first_s = time.perf_counter() - started
        server.wait_idle()
        after_kill = server.snapshot()
        if killed_at is None:
            raise SystemExit(f"crash: the run ended (rc {proc.returncode}) before half the calls; see {log}")
        stored_after_kill, ledger_after_kill = cache_counts(root)
        log2 = work / "crash_run2.log"
        started = time.perf_counter()
        rerun = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, timeout=600,
                               text=True)
        rerun_s = time.perf_counter() - started
        log2.write_text(rerun.stdout)
        server.wait_idle()
        final = server.snapshot()
        duplicates = sum(c - 1 for c in server.args.values() if c > 1)
        distinct = len(server.args)
    import duckdb

    con = duckdb.connect(str(root / "warehouse" / "dataproj.duckdb"), read_only=True)
    try:
        table = con.execute("select count(*), count(distinct x), sum(y) from calls").fetchone()
    finally:
        con.close()
    cache_entries, ledger = cache_counts(root)
    results["crash"] = {
        "rows": rows, "delay_s": CRASH_DELAY_S, "kill_at_requests": killed_at["requests"],
        "kill_in_flight": killed_at["in_flight"], "completed_at_kill": killed_at["completed"],
        "requests_first_run": after_kill["requests"], "first_run_s": first_s,
        "rerun_rc": rerun.returncode, "rerun_s": rerun_s, "rerun_requests": final["requests"] - after_kill["requests"],
        "total_requests": final["requests"], "distinct_args": distinct, "duplicate_requests": duplicates,
        "extra_requests": final["requests"] - rows, "table": list(table), "expected_sum": rows * (rows - 1),
        "cache_entries": cache_entries, "ledger_calls": ledger, "stored_after_kill": stored_after_kill,
        "ledger_after_kill": ledger_after_kill, "lost_at_kill": after_kill["requests"] - stored_after_kill,
        "killed_run_log": log.read_text()[-2000:], "rerun_log": rerun.stdout[-2000:],
    }


def cache_counts(root: Path) -> tuple[int, int]:
    """(stored results of call_api, its ledger rows) in the project's call cache, once opened as the next
    command opens it (which copies a killed run's journal into the database)."""
    import duckdb

    from dataproj.runtime.cache import CallCache

    path = root / "warehouse" / "cache" / "calls.duckdb"
    cache = CallCache(path)
    try:
        cache.stats()
    finally:
        cache.close()
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = [r[0] for r in con.execute("select table_name from information_schema.tables "
                                            "where starts_with(table_name, 'fn_call_api_')").fetchall()]
        entries = con.execute(f'select count(distinct in_x) from "{tables[0]}"').fetchone()[0] if tables else 0
        ledger = con.execute("select count(*) from dataproj_calls where function = 'call_api'").fetchone()[0]
        return entries, ledger
    finally:
        con.close()


# ---- report ------------------------------------------------------------------------------------------------
def machine() -> str:
    import duckdb
    import pyarrow

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({cpu}), Python "
            f"{platform.python_version()}, duckdb {duckdb.__version__}, pyarrow {pyarrow.__version__}")


def tree_state() -> str:
    """The commit measured, and whether the runtime's sources differ from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=REPO, capture_output=True,
                               text=True, check=True).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git)"
    changed = [line[3:] for line in dirty if line.strip()]
    return f"{head}" + (f" + uncommitted changes in {len(changed)} src paths" if changed else "")


def table(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(measurement, value, ratio, goal) rows."""
    out: list[tuple[str, str, str, str]] = []
    if "overhead" in results:
        o = results["overhead"]
        r = o["rows_per_s"]
        native = r["native"]

        def ratio(key: str, base: float = native) -> str:
            return f"{r[key] / base:.3f}x native"

        out += [
            ("native DuckDB Python UDF (rows/s, median)", f"{native:,.0f}", "1.000x", ""),
            ("floor: Arrow UDF, runtime arg shape", f"{r['floor']:,.0f}", ratio("floor"), ""),
            ("@udf cached, all misses (1 run)", f"{r['miss']:,.0f}", ratio("miss"), ""),
            ("@udf cached, hits, same session", f"{r['hit_same']:,.0f}", ratio("hit_same"),
             _goal(r["hit_same"] >= native, ">= 1x")),
            ("@udf cached, hits, new session 1st (loads index)", f"{r['hit_new_first']:,.0f}",
             ratio("hit_new_first", r["native_new"]), ""),
            ("@udf cached, hits, new session (median)", f"{r['hit_new']:,.0f}", ratio("hit_new", r["native_new"]),
             _goal(r["hit_new"] >= r["native_new"], ">= 1x")),
            *([("@udf cached, hits, new session, rows shuffled (median)", f"{r['hit_shuffled']:,.0f}",
                ratio("hit_shuffled", r["native_shuffled"]), "")] if "hit_shuffled" in r else []),
            ("@udf uncached row function", f"{r['plain']:,.0f}", ratio("plain"), ""),
        ]
    if "io" in results:
        i = results["io"]
        share = i["calls_per_s"] / i["limit_calls_per_s"]
        out += [
            (f"io: {i['rows']:,} rows, {i['workers']} workers (calls/s)", f"{i['calls_per_s']:.1f}",
             f"{share:.3f}x limit {i['limit_calls_per_s']:.0f}", _goal(share >= IO_GOAL, f">= {IO_GOAL}x")),
            ("io: requests / ledger rows / peak in flight", f"{i['requests']} / {i['ledger_calls']} / "
             f"{i['peak_in_flight']}", "", ""),
            ("io: call latency in ledger, median / mean / p99 (ms)", f"{1000 * i['latency_median_s']:.1f} / "
             f"{1000 * i['latency_mean_s']:.1f} / {1000 * i['latency_p99_s']:.1f}",
             f"server sleeps {1000 * i['delay_s']:.0f}", ""),
            (f"io: bare ThreadPoolExecutor({i['workers']}), same calls (calls/s)", f"{i['pool_calls_per_s']:.1f}",
             f"dataproj {i['calls_per_s'] / i['pool_calls_per_s']:.3f}x of it", ""),
            *_timeline_rows(i),
            (f"io: serial baseline, {i['serial_rows']} calls (calls/s)", f"{i['serial_calls_per_s']:.2f}",
             f"dataproj {i['calls_per_s'] / i['serial_calls_per_s']:.1f}x of it", ""),
        ]
    if "rerun" in results:
        rr = results["rerun"]
        for label, key in [("same session", "same_session"), ("new session", "new_session")]:
            run = rr[key]
            ok = run["requests"] == 0 and run["ledger_new"] == 0 and run["ok"]
            out.append((f"rerun, {label}: seconds / requests / new ledger rows",
                        f"{run['s']:.3f} / {run['requests']} / {run['ledger_new']}",
                        f"{run['s'] / rr['first_s']:.4f}x first", _goal(ok, "0 calls")))
    if "crash" in results:
        c = results["crash"]
        ok = c["rerun_rc"] == 0 and c["table"][0] == c["rows"] and c["table"][2] == c["expected_sum"]
        repeated = c["rerun_requests"] - (c["rows"] - c["stored_after_kill"])
        # in flight at the kill: requests of the killed run not yet answered (some were still in the listen queue)
        in_flight = c["requests_first_run"] - c["completed_at_kill"]
        unstored = c["completed_at_kill"] - c["stored_after_kill"]
        out += [
            ("crash: killed run: requests / answered at kill", f"{c['requests_first_run']} / {c['completed_at_kill']}",
             f"{in_flight} in flight at kill", ""),
            ("crash: killed run: stored / ledger rows", f"{c['stored_after_kill']} / {c['ledger_after_kill']}",
             f"{unstored} answered, not stored", ""),
            ("crash: rerun requests (rc)", f"{c['rerun_requests']} (rc {c['rerun_rc']})",
             f"{repeated} stored calls repeated", _goal(ok and repeated <= 0, "0 repeated")),
            ("crash: total requests / rows", f"{c['total_requests']} / {c['rows']}",
             f"+{c['extra_requests']} extra", _goal(ok and c["extra_requests"] <= in_flight,
                                                     f"extra <= {in_flight} in flight")),
            ("crash: table rows / cache entries / ledger", f"{c['table'][0]} / {c['cache_entries']} / "
             f"{c['ledger_calls']}", "", ""),
        ]
    return out


def _timeline_rows(i: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    dp, pool = i.get("timeline") or {}, i.get("pool_timeline") or {}
    if not dp or not pool:
        return []
    return [("io: steady calls/s, dataproj / bare pool", f"{dp['steady_calls_per_s']:.1f} / "
             f"{pool['steady_calls_per_s']:.1f}", f"{dp['steady_calls_per_s'] / pool['steady_calls_per_s']:.3f}x", ""),
            ("io: process CPU ms per call, dataproj / bare pool", f"{i['cpu_ms_per_call']:.2f} / "
             f"{i['pool_cpu_ms_per_call']:.2f}", "incl. the server's share", ""),
            ("io: ms to 1st request / after last, dataproj", f"{1000 * dp['first_request_s']:.0f} / "
             f"{1000 * dp['after_last_request_s']:.0f}",
             f"pool {1000 * pool['first_request_s']:.0f} / {1000 * pool['after_last_request_s']:.0f}", "")]


def _goal(met: bool, goal: str) -> str:
    return f"{goal}: {'met' if met else 'MISSED'}"


def print_table(rows: list[tuple[str, str, str, str]]) -> None:
    header = ("measurement", "value", "ratio", "goal")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for i, row in enumerate([header, *rows]):
        print("  ".join(cell.ljust(w) if j != 1 else cell.rjust(w) for j, (cell, w) in enumerate(zip(row, widths,
                                                                                                     strict=True))))
        if i == 0:
            print("  ".join("-" * w for w in widths))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sections", nargs="*", choices=[*SECTIONS, "all"], default="all",
                        help="what to run (default: all)")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--io-rows", type=int, default=2000)
    parser.add_argument("--crash-rows", type=int, default=1000)
    parser.add_argument("--profile", action="store_true", help="cProfile the row paths, time the io path")
    parser.add_argument("--json", type=Path, help="write every measurement to this file")
    parser.add_argument("--work-dir", type=Path, help="projects go here (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--report", type=Path, help="measure nothing: print the table of a --json file")
    args = parser.parse_args(argv)
    if args.report:
        saved = json.loads(args.report.read_text())
        print(f"runtime benchmark {saved['date']} on {saved['machine']}\ntree: {saved.get('tree')}\n")
        print_table(table(saved))
        return 0
    chosen = [args.sections] if isinstance(args.sections, str) else args.sections
    sections = SECTIONS if not chosen or "all" in chosen else chosen
    sys.path.insert(0, str(REPO / "src"))

    work = args.work_dir.resolve() if args.work_dir else Path(tempfile.mkdtemp(prefix="runtime_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"date": datetime.now().isoformat(timespec="seconds"), "machine": machine(),
                               "tree": tree_state(), "loadavg_start": os.getloadavg()}
    print(f"runtime benchmark {results['date']} on {results['machine']}\ntree: {results['tree']}\n"
          f"work folder: {work}", flush=True)
    started = time.perf_counter()
    try:
        if "overhead" in sections:
            bench_overhead(work, args.rows, args.repeats, args.profile, results)
        if "io" in sections or "rerun" in sections:
            bench_io(work, args.io_rows, args.profile, results, rerun="rerun" in sections)
        if "crash" in sections:
            bench_crash(work, args.crash_rows, results)
    finally:
        if not args.keep and not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    results["total_s"] = time.perf_counter() - started
    results["loadavg_end"] = os.getloadavg()
    for report in results.get("profiles", []):
        print(report)
    print()
    rows = table(results)
    print_table(rows)
    print(f"\ntotal {results['total_s']:.0f} s; load average (1, 5, 15 min) at start "
          f"{', '.join(f'{x:.1f}' for x in results['loadavg_start'])}, at end "
          f"{', '.join(f'{x:.1f}' for x in results['loadavg_end'])}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0 if all("MISSED" not in r[3] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
