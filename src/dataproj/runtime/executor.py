"""Runs one SQL function over an Arrow batch: cache lookups for the whole batch at once, then the misses
(mapped per row, concurrently for I/O-bound functions, or as whole columns), each stored as it completes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from itertools import islice, repeat, starmap
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from .cache import MISS, NamespaceIndex, StoredCall, _hashable
from .images import ImageError
from .index import Entries
from .ledger import CallRecord, Usage, end_usage, start_usage
from .limits import call_with_retries
from .spec import FunctionSpec
from .stats import NodeStats
from .types import to_arrow, to_plain

if TYPE_CHECKING:
    from .runtime import Runtime

# Per-row and batch functions store finished results once the unstored calls took FLUSH_COST_S of work or
# number FLUSH_ROWS: an expensive call is stored the moment it completes (a crash loses at most 10 ms of
# work), while cheap ones do not pay a database write per row. The failure budget is checked on every call.
FLUSH_ROWS = 2048
FLUSH_COST_S = 0.01

OnDone = Callable[[list[int], list["Outcome"], Any], None]  # positions, outcomes, ledger Insert


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
    skipped: bool = False  # not called: the node's failure budget had tripped
    in_record: bool = False  # counted in another outcome's ledger record (the rows of one batch call)


class FunctionExecutor:
    def __init__(self, spec: FunctionSpec, runtime: Runtime) -> None:
        self.spec = spec
        self.runtime = runtime
        self.hashed = spec.cached and not spec.has_image_params
        self._index: NamespaceIndex | None = None  # loaded by the first batch
        self._refresh_all = runtime.refreshes(spec)
        self._to_arrow = lambda values: to_arrow(values, spec.result)

    # ---- entry point called by DuckDB --------------------------------------------------------------
    def __call__(self, stats: NodeStats, rows: int, *arrays: Any) -> pa.Array:
        arrays = tuple(a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a for a in arrays)
        if not self.spec.cached:
            inputs = [a.to_pylist() for a in arrays]
            if self.spec.kind == "row" and not self.spec.ledgered:
                return self._plain_rows(stats, zip(*inputs, strict=True) if inputs else repeat((), rows), rows)
            args = [tuple(col[i] for col in inputs) for i in range(rows)]
            try:
                outcomes = self._compute(stats, args)
            finally:
                self.runtime.cache.flush()  # the batch's ledger rows, from the journal into DuckDB
            stats.add_rows(len(outcomes), 0, sum(not o.ok for o in outcomes))
            return to_arrow([o.value for o in outcomes], self.spec.result)
        keys = None
        if self.hashed:
            keys = np.asarray(arrays[-1].to_numpy(zero_copy_only=False), dtype=np.uint64)
            arrays = arrays[:-1]
        return self._cached_batch(stats, arrays, keys)  # type: ignore[arg-type]

    def _plain_rows(self, stats: NodeStats, args: Iterable[tuple[Any, ...]], n: int) -> pa.Array:
        """A cheap per-row function that is neither cached nor ledgered: a tight loop, failures still per row."""
        func, prepare = self.spec.func, any(p.type.is_image or p.type.struct_of for p in self.spec.params)
        values: list[Any] = []
        errors: list[str] = []
        if prepare or self.spec.result.is_struct:
            calls: Iterable[Any] = ((self._prepared_args(row) if prepare else row) for row in args)
            wrap = self.spec.result.is_struct
        else:
            calls, wrap = args, False
        rows = iter(calls)
        while True:
            try:  # one try for the whole loop: a failed row ends the map, which resumes after that row
                values.extend(starmap(func, rows) if not wrap else
                              (self._success(func(*row), None) for row in rows))
                break
            except Exception as err:  # a failed row is data
                errors.append(_message(err))
                values.append(self._failure(errors[-1], getattr(err, "raw_response", None)))
        stats.add_calls(n, len(errors), 0.0, errors[-1] if errors else None)
        stats.add_rows(n, 0, len(errors))
        return to_arrow(values, self.spec.result)

    # ---- cached path -------------------------------------------------------------------------------
    def _cached_batch(self, stats: NodeStats, arrays: tuple[pa.Array, ...], keys: np.ndarray | None) -> pa.Array:
        n = len(keys) if keys is not None else len(arrays[0])
        index = self._index or self._load_index()
        refresh = self._refresh_all or stats.refresh
        if keys is not None and not refresh:
            hits = self._all_hits(index, keys)
            if hits is not None:
                stats.add_rows(n, n, 0)
                return hits
            index.fold_added(self._to_arrow)
        entries = index.entries  # one snapshot for the whole batch: a fold in another thread swaps it
        inputs: list[list[Any]] | None = None
        tuple_keys: list[tuple[Any, ...]] | None = None
        if keys is None:  # image arguments: rows are keyed by content hash, in Python
            inputs = [a.to_pylist() for a in arrays]
            tuple_keys = self._tuple_keys(inputs, n)
            positions = np.full(n, MISS, dtype=np.int64)
        else:
            positions = np.full(n, MISS, dtype=np.int64) if refresh else entries.lookup(keys)
        usable = positions >= 0
        if self.runtime.retry_failed and usable.any():
            usable &= entries.ok[np.where(usable, positions, 0)]
        resolved, pending = self._resolve_rest(index, usable, keys, tuple_keys, refresh)
        if pending and keys is not None and not refresh and index.entries is not entries:
            self._resolve_folded(index, pending, resolved)
        index.added_hits += len(resolved)  # rows answered one by one from entries not folded yet
        if pending:
            inputs = inputs if inputs is not None else [a.to_pylist() for a in arrays]
            try:
                self._compute_misses(stats, index, pending, inputs, tuple_keys, resolved)
            finally:
                self.runtime.cache.flush()  # into DuckDB once per batch; the journal already holds each call
        calls = len(pending)
        failed_rows = int((~entries.ok[positions[usable]]).sum()) + sum(not ok for ok, _ in resolved.values())
        stats.add_rows(n, n - calls, failed_rows)  # duplicates of a computed input count as hits
        if not resolved:
            return entries.values.take(pa.array(positions, pa.int64()))
        return self._assemble(entries, positions, usable, resolved, n)

    def _all_hits(self, index: NamespaceIndex, keys: np.ndarray) -> pa.Array | None:
        """The batch's results when the base index holds every row and no stored entry failed (so no row needs
        its status checked): a slice when a rerun reads the rows in their stored order, else one gather."""
        entries = index.entries
        if not entries.all_ok or not len(entries) or not len(keys):
            return None
        start = index.run_start(entries, keys)
        if start is not None:
            return entries.values.slice(start, len(keys))
        positions = entries.lookup(keys)
        if positions.min() < 0:
            return None
        return entries.values.take(pa.array(positions))

    def _load_index(self) -> NamespaceIndex:
        self._index = self.runtime.index(self.spec)
        return self._index

    def _resolve_rest(self, index: NamespaceIndex, usable: np.ndarray, keys: np.ndarray | None,
                      tuple_keys: list[tuple[Any, ...]] | None,
                      refresh: bool) -> tuple[dict[int, tuple[bool, Any]], dict[Any, list[int]]]:
        """Rows the base index did not answer: entries added since it was loaded, or calls to make."""
        resolved: dict[int, tuple[bool, Any]] = {}
        pending: dict[Any, list[int]] = {}
        for row in np.nonzero(~usable)[0].tolist():
            key = tuple_keys[row] if tuple_keys is not None else int(keys[row])  # type: ignore[index]
            entry = index.get(key, fresh_only=refresh)
            if entry is not None and self._replayable(entry[0], key, index):
                resolved[row] = entry
            else:
                pending.setdefault(key, []).append(row)
        return resolved, pending

    def _resolve_folded(self, index: NamespaceIndex, pending: dict[Any, list[int]],
                        resolved: dict[int, tuple[bool, Any]]) -> None:
        """Keys another DuckDB thread folded into new entries while this batch looked them up: no calls to make."""
        entries, keys = index.entries, list(pending)
        for key, position in zip(keys, entries.lookup(np.array(keys, dtype=np.uint64)).tolist(), strict=True):
            ok = position >= 0 and bool(entries.ok[position])
            if position >= 0 and self._replayable(ok, key, index):
                value = to_plain(entries.values[position].as_py())
                for row in pending.pop(key):
                    resolved[row] = (ok, value)

    def _replayable(self, ok: bool, key: Any, index: NamespaceIndex) -> bool:
        """A stored entry answers the row, unless it failed and --retry-failed asks again (once per process)."""
        return ok or not self.runtime.retry_failed or key in index.fresh

    def _tuple_keys(self, inputs: list[list[Any]], n: int) -> list[tuple[Any, ...]]:
        columns = []
        for param, column in zip(self.spec.params, inputs, strict=True):
            if param.type.is_image:
                columns.append([self._content_key(v) for v in column])
            else:
                columns.append([_hashable(v) for v in column])
        return [tuple(col[i] for col in columns) for i in range(n)]

    def _content_key(self, value: Any) -> Any:
        """An image argument's cache identity: its content hash (a list of them for a list of images)."""
        if value is None:
            return None
        if isinstance(value, list):
            return tuple(self._content_key(v) for v in value)
        try:
            return self.runtime.content_hashes.get(self.runtime.resolve(value))
        except ImageError:
            return f"unreadable:{value}"  # the call fails on its own row; a file that appears later is new

    def _compute_misses(self, stats: NodeStats, index: NamespaceIndex, pending: dict[Any, list[int]],
                        inputs: list[list[Any]], tuple_keys: list[tuple[Any, ...]] | None,
                        resolved: dict[int, tuple[bool, Any]]) -> None:
        keys = list(pending)
        first_rows = [pending[k][0] for k in keys]
        args = [tuple(col[r] for col in inputs) for r in first_rows]
        # Calls made although an entry was stored (recomputed or retried) leave two entries for one input.
        superseding = self._refresh_all or stats.refresh or self.runtime.retry_failed

        store_if = self.spec.store_if

        def finished(positions: list[int], outcomes: list[Outcome], ledger: Any) -> None:
            stored = [(p, o) for p, o in zip(positions, outcomes, strict=True)
                      if store_if is None or not o.ok or store_if(o.value)]  # a failure is always stored
            calls = []
            for position, outcome in stored:
                keyed = tuple_keys[first_rows[position]] if tuple_keys is not None else args[position]
                calls.append(StoredCall(inputs=_stored_inputs(self.spec, keyed, args[position]), ok=outcome.ok,
                                        value=outcome.value, error=outcome.error, latency_s=outcome.latency_s))
            self.runtime.cache.store(self.spec, self.spec.namespace, calls, ledger, superseding=superseding)
            for position, outcome in stored:
                index.add(keys[position], outcome.ok, outcome.value)
            for position, outcome in zip(positions, outcomes, strict=True):
                for row in pending[keys[position]]:
                    resolved[row] = (outcome.ok, outcome.value)

        self._compute(stats, args, on_done=finished)

    def _assemble(self, entries: Entries, positions: np.ndarray, usable: np.ndarray,
                  resolved: dict[int, tuple[bool, Any]], n: int) -> pa.Array:
        hit_rows = np.nonzero(usable)[0]
        other_rows = np.array(sorted(resolved), dtype=np.int64)
        hit_values = entries.values.take(pa.array(positions[hit_rows], pa.int64()))
        other_values = to_arrow([resolved[r][1] for r in other_rows.tolist()], self.spec.result)
        combined = pa.concat_arrays([hit_values, other_values.cast(hit_values.type)])
        order = np.empty(n, dtype=np.int64)
        order[hit_rows] = np.arange(len(hit_rows))
        order[other_rows] = len(hit_rows) + np.arange(len(other_rows))
        return combined.take(pa.array(order))

    # ---- computing ---------------------------------------------------------------------------------
    def _compute(self, stats: NodeStats, args: list[tuple[Any, ...]], on_done: OnDone | None = None) -> list[Outcome]:
        """Real calls for `args`; results are stored (`on_done`) and counted as they complete."""
        if not args:
            return []
        if any(p.type.is_image or p.type.struct_of for p in self.spec.params):
            args = [self._prepared_args(a) for a in args]
        if self.spec.kind == "io":
            return self._compute_concurrently(stats, args, on_done)
        if self.spec.kind == "batch":
            size = self.spec.batch_size or len(args)
            chunks = [list(range(start, min(start + size, len(args)))) for start in range(0, len(args), size)]
        else:
            chunks = [[row] for row in range(len(args))]

        if self.spec.kind == "row" and self.spec.backend is None:
            usage, token = start_usage()  # one context for the loop: per-row contexts cost more than cheap calls
            try:
                return self._compute_in_order(stats, chunks, lambda rows: [self._call_light(args[rows[0]], usage)],
                                              on_done)
            finally:
                end_usage(token)

        def call_chunk(rows: list[int]) -> list[Outcome]:
            if self.spec.kind == "batch":
                return self._call_batch([args[r] for r in rows])
            return [self._call(args[rows[0]])]

        return self._compute_in_order(stats, chunks, call_chunk, on_done)

    def _call_light(self, args: tuple[Any, ...], usage: Usage) -> Outcome:
        """A per-row call without a backend: no retries, and a ledger row of its own only if it reported usage."""
        started = time.perf_counter()
        try:
            outcome = self._outcome(self.spec.func(*args), usage)
        except Exception as err:  # a failed row is data
            message = _message(err)
            outcome = Outcome(False, self._failure(message, getattr(err, "raw_response", None) or usage.raw_response),
                              message, 0.0)
        outcome.latency_s = time.perf_counter() - started
        if _reported(usage):
            outcome.record = self.runtime.make_record(self.spec, usage, "ok" if outcome.ok else "failed",
                                                      outcome.latency_s, 1, outcome.error)
            usage.__init__()  # type: ignore[misc]  # the next row starts from zero
        return outcome

    def _compute_in_order(self, stats: NodeStats, chunks: list[list[int]],
                          call_chunk: Callable[[list[int]], list[Outcome]], on_done: OnDone | None) -> list[Outcome]:
        """Row and batch functions, in order; finished results are flushed as FLUSH_COST_S / FLUSH_ROWS say."""
        outcomes: list[Outcome] = []
        done_positions: list[int] = []
        flushed = 0
        unstored_cost = 0.0
        unstored_failures = 0
        for rows in chunks:
            new = call_chunk(rows)
            outcomes += new
            done_positions += rows
            unstored_cost += sum(o.latency_s for o in new)
            unstored_failures += sum(not o.ok for o in new)
            if (len(outcomes) - flushed >= FLUSH_ROWS or unstored_cost >= FLUSH_COST_S
                    or stats.over_budget(len(outcomes) - flushed, unstored_failures)):
                self._finish(stats, done_positions[flushed:], outcomes[flushed:], on_done)
                flushed, unstored_cost, unstored_failures = len(outcomes), 0.0, 0
        self._finish(stats, done_positions[flushed:], outcomes[flushed:], on_done)
        return outcomes

    def _prepared_args(self, args: tuple[Any, ...]) -> tuple[Any, ...]:
        """Image paths resolved against the project root; struct arguments as their model or dataclass."""
        prepared = []
        for param, value in zip(self.spec.params, args, strict=True):
            if param.type.is_image and value is not None:
                value = ([str(self.runtime.resolve(v)) if v is not None else None for v in value]
                         if isinstance(value, list) else str(self.runtime.resolve(value)))
            elif param.type.struct_of is not None and isinstance(value, dict):
                model = param.type.struct_of
                value = model.model_validate(value) if hasattr(model, "model_validate") else model(**value)
            prepared.append(value)
        return tuple(prepared)

    def _compute_concurrently(self, stats: NodeStats, args: list[tuple[Any, ...]],
                              on_done: OnDone | None) -> list[Outcome]:
        """I/O-bound calls on the backend's pool. Each worker stores its own result the moment it has it (a
        crash loses only calls in flight); a window of 2 x max_workers keeps waiting cheap."""
        pool = self.runtime.pool(self.spec.backend)
        window = 2 * self.runtime.limits(self.spec.backend).max_workers
        outcomes: list[Outcome | None] = [None] * len(args)
        queued = iter(range(len(args)))
        running: set[Future[Outcome]] = set()

        def submit(count: int) -> None:
            for position in islice(queued, count):
                if stats.slots is not None:  # the node's own cap, shared by all its batches (DuckDB threads)
                    stats.slots.acquire()
                running.add(pool.submit(self._call_and_store, args[position], position, stats, on_done))

        submit(window)
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            running -= done
            for future in done:
                outcome, position = future.result()
                outcomes[position] = outcome
            if not stats.tripped:
                submit(len(done))
        if stats.tripped:
            raise stats.budget_error()
        return [o for o in outcomes if o is not None]

    def _call_and_store(self, args: tuple[Any, ...], position: int, stats: NodeStats,
                        on_done: OnDone | None) -> tuple[Outcome, int]:
        try:
            outcome = self._call(args, stats)
            self._finish(stats, [position], [outcome], on_done, check_budget=False)
        finally:
            if stats.slots is not None:
                stats.slots.release()
        return outcome, position

    def _call_batch(self, chunk: list[tuple[Any, ...]]) -> list[Outcome]:
        columns = [list(col) for col in zip(*chunk, strict=True)]
        usage, token = start_usage()
        started = time.perf_counter()
        try:
            values = list(self.spec.func(*columns))
            if len(values) != len(chunk):
                raise ValueError(f"batch udf {self.spec.name} returned {len(values)} values for {len(chunk)} rows")
        except Exception as err:
            if len(chunk) == 1:
                message = _message(err)
                return [Outcome(False, self._failure(message, getattr(err, "raw_response", None)), message,
                                time.perf_counter() - started)]
            return [o for row in chunk for o in self._call_batch([row])]  # isolate the row that breaks the batch
        finally:
            end_usage(token)
        latency = time.perf_counter() - started
        outcomes = [self._outcome(v, usage) for v in values]  # a row whose struct says 'failed' is a failure
        for outcome in outcomes:
            outcome.latency_s = latency / len(chunk)
        if self.spec.ledgered:
            outcomes[0].record = self.runtime.make_record(self.spec, usage, "ok", latency, 1, None, rows=len(chunk))
            for outcome in outcomes[1:]:
                outcome.in_record = True
        return outcomes

    def _call(self, args: tuple[Any, ...], stats: NodeStats | None = None) -> Outcome:
        spec = self.spec
        if stats is not None and stats.tripped:
            return Outcome(False, None, "not called: the failure budget was exceeded", 0.0, skipped=True)
        usage, token = start_usage()
        started = time.perf_counter()
        attempts = [1]
        try:
            if spec.backend is not None:
                result = call_with_retries(lambda: spec.func(*args), self.runtime.limits(spec.backend),
                                           self.runtime.limiter(spec.backend),
                                           on_retry=lambda attempt, *_: attempts.__setitem__(0, attempt + 1))
                value = result.value
            else:
                value = spec.func(*args)
            outcome = self._outcome(value, usage)
        except Exception as err:  # a failed row is data: status, error and raw response
            message = _message(err)
            outcome = Outcome(False, self._failure(message, getattr(err, "raw_response", None) or usage.raw_response),
                              message, 0.0)
        finally:
            end_usage(token)
        outcome.latency_s = time.perf_counter() - started
        if stats is not None:
            stats.observe(outcome.ok)
        if spec.ledgered and (spec.backend is not None or spec.kind == "io" or _reported(usage)):
            outcome.record = self.runtime.make_record(spec, usage, "ok" if outcome.ok else "failed",
                                                      outcome.latency_s, attempts[0], outcome.error)
        return outcome

    def _outcome(self, value: Any, usage: Usage) -> Outcome:
        """A returned struct whose status is 'failed' (a soft failure, like a judge's 'Failed') is a failure."""
        plain = self._success(value, usage.raw_response)
        if isinstance(plain, dict) and plain.get("status") == "failed":
            return Outcome(False, plain, plain.get("error") or "failed", 0.0)
        return Outcome(True, plain, None, 0.0)

    def _success(self, value: Any, raw: str | None) -> Any:
        if not self.spec.result.is_struct:
            return value if isinstance(value, str | int | float | bool | bytes) else to_plain(value)
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

    def _finish(self, stats: NodeStats, positions: list[int], outcomes: list[Outcome], on_done: OnDone | None,
                check_budget: bool = True) -> None:
        """Store first (what is paid for is kept), then record and count; then enforce the failure budget."""
        kept = [(p, o) for p, o in zip(positions, outcomes, strict=True) if not o.skipped]
        positions, outcomes = [p for p, _ in kept], [o for _, o in kept]
        if not outcomes:
            return
        records = [o.record for o in outcomes if o.record is not None]
        unrecorded = [o for o in outcomes if o.record is None and not o.in_record]
        if unrecorded and self.spec.ledgered:  # cheap per-row calls: one ledger row for the group
            failed = [o.error for o in unrecorded if not o.ok]
            records.append(self.runtime.make_record(
                self.spec, None, "failed" if failed else "ok", sum(o.latency_s for o in unrecorded), 1,
                failed[-1] if failed else None, rows=len(unrecorded)))
        if on_done is not None:
            on_done(positions, outcomes, self.runtime.ledger.insert(records, node=stats.node))
        elif records:
            self.runtime.ledger.record(records, node=stats.node)
        failures = [o.error for o in outcomes if not o.ok]
        stats.add_calls(len(outcomes), len(failures), sum(r.cost_usd for r in records),
                        failures[-1] if failures else None, check_budget=check_budget)


def _message(err: BaseException) -> str:
    return str(err) if isinstance(err, RowFailure) else f"{type(err).__name__}: {err}"


def _reported(usage: Usage) -> bool:
    return bool(usage.model or usage.input_tokens or usage.output_tokens or usage.cached_input_tokens)


def _stored_inputs(spec: FunctionSpec, keyed: tuple[Any, ...], original: tuple[Any, ...]) -> tuple[Any, ...]:
    """Inputs as the cache stores them: image arguments by content hash, others as given."""
    return tuple(k if p.type.is_image else o for p, k, o in zip(spec.params, keyed, original, strict=True))
