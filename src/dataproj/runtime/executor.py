"""Runs one SQL function over an Arrow batch: cache lookups for the whole batch at once, then the misses
(mapped per row, concurrently for I/O-bound functions, or as whole columns), each stored as it completes."""

from __future__ import annotations

import time
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from .cache import MISS, NamespaceIndex, StoredCall, _hashable
from .ledger import CallRecord, end_usage, start_usage
from .limits import call_with_retries
from .spec import FunctionSpec
from .stats import FailureBudgetExceeded, NodeStats
from .types import to_arrow, to_plain

if TYPE_CHECKING:
    from .runtime import Runtime


class RowFailure(Exception):
    """Raise from a UDF to fail one row with a message and the raw response that could not be used."""

    def __init__(self, message: str, *, raw_response: str | None = None) -> None:
        super().__init__(message)
        self.raw_response = raw_response


@dataclass
class Outcome:
    ok: bool
    value: Any  # plain result value, status fields included for structs
    error: str | None
    latency_s: float
    record: CallRecord | None = None


class FunctionExecutor:
    def __init__(self, spec: FunctionSpec, runtime: Runtime) -> None:
        self.spec = spec
        self.runtime = runtime
        self.hashed = spec.cached and not spec.has_image_params

    # ---- entry point called by DuckDB --------------------------------------------------------------
    def __call__(self, stats: NodeStats, *arrays: Any) -> pa.Array:
        arrays = tuple(a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a for a in arrays)
        if not self.spec.cached:
            inputs = [a.to_pylist() for a in arrays]
            outcomes = self._compute(stats, [tuple(col[i] for col in inputs) for i in range(len(arrays[0]))])
            stats.add_rows(len(outcomes), 0, 0)
            return to_arrow([o.value for o in outcomes], self.spec.result)
        if self.hashed:
            keys: Any = np.asarray(arrays[-1].to_numpy(zero_copy_only=False), dtype=np.uint64)
            arrays = arrays[:-1]
        return self._cached_batch(stats, arrays, keys if self.hashed else None)

    # ---- cached path -------------------------------------------------------------------------------
    def _cached_batch(self, stats: NodeStats, arrays: tuple[pa.Array, ...], keys: np.ndarray | None) -> pa.Array:
        spec, runtime = self.spec, self.runtime
        n = len(arrays[0])
        index = runtime.index(spec)
        refresh = runtime.refreshes(spec)
        retry_failed = runtime.retry_failed
        inputs: list[list[Any]] | None = None
        if keys is None:  # image arguments: key rows by content hash in Python
            inputs = [a.to_pylist() for a in arrays]
            keys_list = self._tuple_keys(inputs, n)
            positions = np.full(n, MISS, dtype=np.int64)
        else:
            positions = np.full(n, MISS, dtype=np.int64) if refresh else index.lookup(keys)
        usable = positions >= 0
        if retry_failed and usable.any():
            usable &= index.ok[np.where(usable, positions, 0)]
        failed_hits = int((~index.ok[positions[usable]]).sum()) if usable.any() else 0
        other_rows = np.nonzero(~usable)[0]
        resolved: dict[int, tuple[bool, Any]] = {}
        pending: dict[Any, list[int]] = {}
        for row in other_rows.tolist():
            key = keys_list[row] if keys is None else int(keys[row])
            entry = None if refresh else index.added.get(key)
            if entry is not None and (entry[0] or not retry_failed):
                resolved[row] = entry
                failed_hits += 0 if entry[0] else 1
            else:
                pending.setdefault(key, []).append(row)
        hits = int(usable.sum()) + len(resolved)
        if pending:
            if inputs is None:
                inputs = [a.to_pylist() for a in arrays]
            self._compute_misses(stats, index, pending, inputs, keys_list if keys is None else None, resolved)
        stats.add_rows(n, hits, failed_hits)  # rows done: counted once the batch is answered
        if not resolved:
            return index.values.take(pa.array(positions, pa.int64()))
        return self._assemble(index, positions, usable, resolved, n)

    def _tuple_keys(self, inputs: list[list[Any]], n: int) -> list[tuple[Any, ...]]:
        hashes = self.runtime.content_hashes
        columns = []
        for param, column in zip(self.spec.params, inputs, strict=True):
            if param.type.is_image:
                columns.append([hashes.get(self.runtime.resolve(v)) if v is not None else None for v in column])
            else:
                columns.append([_hashable(v) for v in column])
        return [tuple(col[i] for col in columns) for i in range(n)]

    def _compute_misses(self, stats: NodeStats, index: NamespaceIndex, pending: dict[Any, list[int]],
                        inputs: list[list[Any]], tuple_keys: list[tuple[Any, ...]] | None,
                        resolved: dict[int, tuple[bool, Any]]) -> None:
        keys = list(pending)
        rows = [pending[k][0] for k in keys]
        args = [tuple(col[r] for col in inputs) for r in rows]

        def stored(position: int, outcome: Outcome) -> StoredCall:
            key_row = rows[position]
            stored_inputs = tuple_keys[key_row] if tuple_keys is not None else args[position]
            return StoredCall(inputs=_stored_inputs(self.spec, stored_inputs, args[position]), ok=outcome.ok,
                              value=outcome.value, error=outcome.error, latency_s=outcome.latency_s)

        def finished(positions: list[int], outcomes: list[Outcome]) -> None:
            self.runtime.cache.store(self.spec, self.spec.namespace, [stored(p, o) for p, o in zip(positions,
                                                                                                   outcomes,
                                                                                                   strict=True)])
            for position, outcome in zip(positions, outcomes, strict=True):
                index.add(keys[position], outcome.ok, outcome.value)
                for row in pending[keys[position]]:
                    resolved[row] = (outcome.ok, outcome.value)

        self._compute(stats, args, on_done=finished)

    def _assemble(self, index: NamespaceIndex, positions: np.ndarray, usable: np.ndarray,
                  resolved: dict[int, tuple[bool, Any]], n: int) -> pa.Array:
        hit_rows = np.nonzero(usable)[0]
        other_rows = np.array(sorted(resolved), dtype=np.int64)
        hit_values = index.values.take(pa.array(positions[hit_rows], pa.int64()))
        other_values = to_arrow([resolved[r][1] for r in other_rows.tolist()], self.spec.result)
        combined = pa.concat_arrays([hit_values, other_values.cast(hit_values.type)])
        order = np.empty(n, dtype=np.int64)
        order[hit_rows] = np.arange(len(hit_rows))
        order[other_rows] = len(hit_rows) + np.arange(len(other_rows))
        return combined.take(pa.array(order))

    # ---- computing ---------------------------------------------------------------------------------
    def _compute(self, stats: NodeStats, args: list[tuple[Any, ...]], on_done: Any = None) -> list[Outcome]:
        """Real calls for `args`; `on_done(positions, outcomes)` runs as results arrive (to store them)."""
        if not args:
            return []
        args = [self._resolved_args(a) for a in args]
        if self.spec.kind == "io":
            return self._compute_concurrently(stats, args, on_done)
        if self.spec.kind == "batch":
            outcomes = self._compute_batches(stats, args)
        else:
            outcomes = [self._call(stats, a) for a in args]
        self._finish(stats, list(range(len(args))), outcomes, on_done)
        return outcomes

    def _resolved_args(self, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(str(self.runtime.resolve(v)) if p.type.is_image and v is not None else v
                     for p, v in zip(self.spec.params, args, strict=True))

    def _compute_concurrently(self, stats: NodeStats, args: list[tuple[Any, ...]], on_done: Any) -> list[Outcome]:
        pool = self.runtime.pool(self.spec.backend)
        outcomes: list[Outcome | None] = [None] * len(args)
        futures: dict[Future[Outcome], int] = {pool.submit(self._call, stats, a, True): i for i, a in enumerate(args)}
        try:
            while futures:
                done, _ = wait(futures, return_when=FIRST_COMPLETED)
                positions = [futures.pop(f) for f in done]
                results = [f.result() for f in done]
                for position, outcome in zip(positions, results, strict=True):
                    outcomes[position] = outcome
                self._finish(stats, positions, results, on_done)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        return [o for o in outcomes if o is not None]

    def _compute_batches(self, stats: NodeStats, args: list[tuple[Any, ...]]) -> list[Outcome]:
        size = self.spec.batch_size or len(args)
        outcomes: list[Outcome] = []
        for start in range(0, len(args), size):
            chunk = args[start:start + size]
            outcomes += self._call_batch(stats, chunk)
        return outcomes

    def _call_batch(self, stats: NodeStats, chunk: list[tuple[Any, ...]]) -> list[Outcome]:
        columns = [list(col) for col in zip(*chunk, strict=True)]
        usage, token = start_usage()
        started = time.perf_counter()
        try:
            values = list(self.spec.func(*columns))
            if len(values) != len(chunk):
                raise ValueError(f"batch udf {self.spec.name} returned {len(values)} values for {len(chunk)} rows")
        except FailureBudgetExceeded:
            raise
        except Exception:
            if len(chunk) == 1:
                return [self._call(stats, chunk[0])]
            return [self._call(stats, row) for row in chunk]  # isolate the row that breaks the batch
        finally:
            end_usage(token)
        latency = time.perf_counter() - started
        record = self.runtime.make_record(self.spec, stats, usage, "ok", latency, 1, None, rows=len(chunk))
        outcomes = [Outcome(True, self._success(v, usage.raw_response), None, latency / len(chunk)) for v in values]
        outcomes[0].record = record
        return outcomes

    def _call(self, stats: NodeStats, args: tuple[Any, ...], resolved: bool = True) -> Outcome:
        spec = self.spec
        usage, token = start_usage()
        started = time.perf_counter()
        attempts = 1
        try:
            if spec.backend is not None:
                result = call_with_retries(lambda: spec.func(*args), self.runtime.limits(spec.backend),
                                           self.runtime.limiter(spec.backend))
                value, attempts = result.value, result.attempts
            else:
                value = spec.func(*args)
            outcome = Outcome(True, self._success(value, usage.raw_response), None, 0.0)
        except FailureBudgetExceeded:
            raise
        except Exception as err:  # a failed row is data: status, error and raw response
            raw = getattr(err, "raw_response", None) or usage.raw_response
            message = f"{type(err).__name__}: {err}" if not isinstance(err, RowFailure) else str(err)
            outcome = Outcome(False, self._failure(message, raw), message, 0.0)
        finally:
            end_usage(token)
        outcome.latency_s = time.perf_counter() - started
        if spec.ledgered and (spec.backend is not None or spec.kind == "io"):
            outcome.record = self.runtime.make_record(spec, stats, usage, "ok" if outcome.ok else "failed",
                                                      outcome.latency_s, attempts, outcome.error)
        return outcome

    def _success(self, value: Any, raw: str | None) -> Any:
        plain = to_plain(value)
        if self.spec.result.is_struct and isinstance(plain, dict):
            return {**plain, "status": plain.get("status") or "ok", "error": plain.get("error"),
                    "raw_response": plain.get("raw_response") or raw}
        return plain

    def _failure(self, message: str, raw: str | None) -> Any:
        if not self.spec.result.is_struct:
            return None
        empty = dict.fromkeys(self.spec.result.arrow.names)
        return {**empty, "status": "failed", "error": message, "raw_response": raw}

    def _finish(self, stats: NodeStats, positions: list[int], outcomes: list[Outcome], on_done: Any) -> None:
        """Store first (what is paid for is kept), then count, then enforce the failure budget."""
        if on_done is not None:
            on_done(positions, outcomes)
        records = [o.record for o in outcomes if o.record is not None]
        if not records and self.spec.ledgered and outcomes:
            records = [self.runtime.make_record(
                self.spec, stats, None, "ok" if all(o.ok for o in outcomes) else "failed",
                sum(o.latency_s for o in outcomes), 1, next((o.error for o in outcomes if not o.ok), None),
                rows=len(outcomes))]
        self.runtime.ledger.record(records)
        failures = [o.error for o in outcomes if not o.ok]
        stats.add_calls(len(outcomes), len(failures), sum(r.cost_usd for r in records),
                        failures[-1] if failures else None)


def _stored_inputs(spec: FunctionSpec, keyed: tuple[Any, ...], original: tuple[Any, ...]) -> tuple[Any, ...]:
    """Inputs as the cache stores them: image arguments by content hash, others as given."""
    return tuple(k if p.type.is_image else o for p, k, o in zip(spec.params, keyed, original, strict=True))
