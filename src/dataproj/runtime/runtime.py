"""The function runtime of one command: cache, ledger, pools and limiters per backend, per-node statistics,
and the registration of every function on each DuckDB cursor."""

from __future__ import annotations

import inspect
import re
import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .cache import CallCache, NamespaceIndex
from .executor import FunctionExecutor
from .images import ContentHashes, resolve_path
from .ledger import CallRecord, Ledger, Price, Usage, parse_prices
from .limits import BackendLimits, RateLimiter
from .spec import FunctionSpec
from .stats import NodeStats

_LIMIT_KEYS = {f.name for f in fields(BackendLimits)}
DEFAULT_BACKEND = "local"


class Runtime:
    def __init__(self, root: Path, specs: Iterable[FunctionSpec], cache_path: Path, *,
                 backends: Mapping[str, Mapping[str, Any]] | None = None,
                 prices: Mapping[str, Any] | None = None, refresh: bool | Iterable[str] = False,
                 retry_failed: bool = False) -> None:
        self.root = root
        self.specs = {s.sql_name: s for s in specs}
        self.cache = CallCache(cache_path)
        self.ledger = Ledger(self.cache)
        self.content_hashes = ContentHashes()
        self.prices: dict[str, Price] = parse_prices(prices or {})
        self.retry_failed = retry_failed
        self._refresh = refresh if isinstance(refresh, bool) else {name.lower() for name in refresh}
        self._backends = {name: BackendLimits(**{k: v for k, v in dict(cfg).items() if k in _LIMIT_KEYS})
                          for name, cfg in (backends or {}).items() if isinstance(cfg, Mapping)}
        self._executors = {name: FunctionExecutor(spec, self) for name, spec in self.specs.items()}
        self._indexes: dict[tuple[str, str], NamespaceIndex] = {}
        self._pools: dict[str, ThreadPoolExecutor] = {}
        self._limiters: dict[str, RateLimiter] = {}
        self._registered = False
        self._aliases: dict[str, list[FunctionSpec]] = {}
        for spec in self.specs.values():
            if spec.alias:
                self._aliases.setdefault(spec.alias.lower(), []).append(spec)
        self._cursor_variant: dict[int, str | None] = {}
        self._variant_backends = {s.backend for s in self.specs.values() if s.alias and s.backend}
        self._function_pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()
        self.node_stats: dict[str, NodeStats] = {}

    # ---- per-function resources -------------------------------------------------------------------
    def refreshes(self, spec: FunctionSpec) -> bool:
        return self._refresh if isinstance(self._refresh, bool) else spec.sql_name in self._refresh

    def index(self, spec: FunctionSpec) -> NamespaceIndex:
        key = (spec.sql_name, spec.namespace)
        with self._lock:
            if key not in self._indexes:
                hashed = not spec.has_image_params
                self._indexes[key] = self.cache.load(spec, spec.namespace, hashed=hashed)
            return self._indexes[key]

    def limits(self, backend: str | None) -> BackendLimits:
        return self._backends.get(backend or DEFAULT_BACKEND, BackendLimits())

    def limiter(self, backend: str | None) -> RateLimiter | None:
        limits = self.limits(backend)
        if limits.rpm is None and limits.tpm is None:
            return None
        with self._lock:
            name = backend or DEFAULT_BACKEND
            if name not in self._limiters:
                self._limiters[name] = RateLimiter(limits.rpm, limits.tpm)
            return self._limiters[name]

    def pool(self, backend: str | None) -> ThreadPoolExecutor:
        """One pool per backend, shared by every batch and cursor: max_workers bounds the whole run."""
        name = backend or DEFAULT_BACKEND
        with self._lock:
            if name not in self._pools:
                self._pools[name] = ThreadPoolExecutor(max_workers=self.limits(backend).max_workers,
                                                       thread_name_prefix=f"dataproj-{name}")
            return self._pools[name]

    def resolve(self, path: str) -> Path:
        return resolve_path(path, self.root)

    def _price(self, reported: str | None, configured: str | None) -> Price | None:
        """Providers answer with dated snapshots (gpt-4o-2024-08-06): fall back to the configured model's price."""
        for model in (reported, configured):
            if model and model in self.prices:
                return self.prices[model]
        if reported:
            prefixes = [name for name in self.prices if reported.startswith(name + "-")]
            if prefixes:
                return self.prices[max(prefixes, key=len)]
        return None

    def make_record(self, spec: FunctionSpec, usage: Usage | None, status: str, latency_s: float, attempts: int,
                    error: str | None, rows: int = 1) -> CallRecord:
        usage = usage or Usage()
        model = usage.model or spec.config.get("model")
        price = self._price(usage.model, spec.config.get("model"))
        tokens = usage.input_tokens + usage.output_tokens
        limiter = self.limiter(spec.backend) if spec.backend else None
        if limiter is not None and tokens:
            limiter.record_tokens(tokens)
        return CallRecord(function=spec.sql_name, namespace=spec.namespace, node="", backend=spec.backend,
                          model=model, status=status, latency_s=latency_s, attempts=attempts, rows=rows,
                          input_tokens=usage.input_tokens, cached_input_tokens=usage.cached_input_tokens,
                          output_tokens=usage.output_tokens, cost_usd=price.cost(usage) if price else 0.0,
                          error=error)

    # ---- cursors and nodes -------------------------------------------------------------------------
    def register(self, cursor: Any) -> None:
        """Make every function callable on a cursor.

        DuckDB shares Python functions across the connections of a database but keeps macros and variables
        per connection: the Python functions are created once, and each cursor gets macros that add the cache
        key and the node it is building (`getvariable('dataproj_node')`, set by begin_node).
        """
        import duckdb
        from duckdb.func import ARROW, SPECIAL  # SPECIAL: NULL arguments reach the function

        with self._lock:
            first = not self._registered
            self._registered = True
        for spec in self.specs.values():
            executor = self._executors[spec.sql_name]
            if first:
                types = [duckdb.sqltype(p.type.sql) for p in spec.params]
                extra = [duckdb.sqltype("UBIGINT")] if executor.hashed else []
                cursor.create_function(
                    spec.hidden_name, _bound(executor, self, len(types) + len(extra) + 1),
                    [*types, *extra, duckdb.sqltype("VARCHAR")], duckdb.sqltype(spec.result.sql),
                    type=ARROW, null_handling=SPECIAL, side_effects=spec.kind == "io")
            self._declare(cursor, spec, spec.sql_name)
        self._point_aliases(cursor, None)

    def _declare(self, cursor: Any, spec: FunctionSpec, name: str) -> None:
        import duckdb

        try:
            cursor.execute(_macro(spec, name, hashed=self._executors[spec.sql_name].hashed))
        except duckdb.ParserException as err:
            raise ConfigError(f"SQL function {name!r} cannot be declared: {err}", path=_origin(spec),
                              hint="rename the function: its name must not be a SQL keyword") from None

    def _point_aliases(self, cursor: Any, variant: str | None) -> None:
        """`alias(...)` calls the variant for `variant` (e.g. a model's VLM backend), else the default one."""
        for alias, variants in self._aliases.items():
            chosen = next((s for s in variants if variant and s.sql_name == f"{alias}__{variant}"), None)
            chosen = chosen or next((s for s in variants if s.default_variant), None)
            if chosen is not None:
                self._declare(cursor, chosen, alias)

    def begin_node(self, cursor: Any, node: str, *, failure_budget: float = 0.2,
                   vlm_backend: str | None = None, refresh: bool = False,
                   max_workers: int | None = None) -> NodeStats:
        """Calls made on this cursor from now on count towards `node` (and use its VLM backend, if it has one);
        `max_workers` caps the node's concurrent I/O calls below its backends' own limits."""
        if vlm_backend is not None and vlm_backend not in self._variant_backends:
            raise ConfigError(f"model config vlm_backend: no VLM backend named {vlm_backend!r}",
                              hint="VLM backends: " + ", ".join(sorted(self._variant_backends)))
        with self._lock:
            stats = self.node_stats[node] = NodeStats(node=node, failure_budget=failure_budget, refresh=refresh,
                                                      slots=threading.BoundedSemaphore(max_workers)
                                                      if max_workers else None)
        cursor.execute("set variable dataproj_node = '" + node.replace("'", "''") + "'")
        key = id(cursor)
        if vlm_backend != self._cursor_variant.get(key):
            self._point_aliases(cursor, vlm_backend)
            self._cursor_variant[key] = vlm_backend
        return stats

    def calls_functions(self, sql: str) -> bool:
        """Whether SQL text names one of the registered functions (a cheap, conservative check)."""
        if self._function_pattern is None:
            names = sorted({*self.specs, *self._aliases}, key=len, reverse=True)
            self._function_pattern = re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\s*\(",
                                                re.IGNORECASE) if names else re.compile(r"(?!x)x")
        return bool(self._function_pattern.search(sql))

    def stats_for(self, node: str | None) -> NodeStats:
        name = node or "query"
        stats = self.node_stats.get(name)
        if stats is None:
            with self._lock:
                stats = self.node_stats.setdefault(name, NodeStats(node=name))
        return stats

    def close(self) -> None:
        for pool in self._pools.values():
            pool.shutdown(wait=True, cancel_futures=True)
        self.cache.close()


def _bound(executor: FunctionExecutor, runtime: Runtime, arity: int) -> Any:
    def call(*arrays: Any) -> Any:
        node = arrays[-1][0].as_py() if len(arrays[-1]) else None
        return executor(runtime.stats_for(node), len(arrays[-1]), *arrays[:-1])

    # DuckDB checks the Python signature against the SQL parameter count.
    call.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(f"arg{i}", inspect.Parameter.POSITIONAL_ONLY) for i in range(arity)])
    return call


def _origin(spec: FunctionSpec) -> str | None:
    code = getattr(spec.func, "__code__", None)
    return code.co_filename if code is not None else None


def _macro(spec: FunctionSpec, name: str, *, hashed: bool) -> str:
    """`name(args)` calls the Python function with typed arguments, the node being built, and for cached
    functions DuckDB's hash of the arguments: the cache key, computed vectorised by DuckDB, not in Python."""
    names = ", ".join(f"p_{p.name}" for p in spec.params)
    typed = ", ".join(f"cast(p_{p.name} as {p.type.sql})" for p in spec.params)
    key = f", hash({typed})" if hashed else ""
    return (f"create or replace temp macro {name}({names}) as "
            f"{spec.hidden_name}({typed}{key}, getvariable('dataproj_node'))")
