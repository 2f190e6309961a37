"""The in-memory index of one cache namespace: which stored result answers which DuckDB `hash()` key.

Lookups of a whole Arrow batch are vectorised. Two paths:
- a run: a query that reads the same rows in the same order as the run that computed them (a rerun, the next
  `dataproj run`) finds its batch stored consecutively, so one comparison of two contiguous arrays answers
  the whole batch and the results are a zero-copy slice;
- otherwise keys are sorted and bucketed by their top bits, so a batch of lookups is a few numpy gathers
  (a binary search over millions of random 64-bit keys is bound by memory latency).
The sorted table is built on first need: a rerun in stored order never needs it, so a new process answers
its first batch without sorting the whole cache. Entries computed since loading are in `added`, folded into
a new set of entries once they are many or once hits on them have cost as much as folding would.

The stored entries are an immutable snapshot (`Entries`) swapped in whole by a fold, so a DuckDB thread that
took positions from one snapshot reads its values from the same one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

MISS = -1
SCANS_BEFORE_SORT = 16  # batches located by a linear scan of the keys before sorting them pays off
RUN_PATIENCE = 8  # batches in a row that were not stored runs, after which only every 8th is tried as one


class SortedKeys:
    """Keys sorted and bucketed by their top bits (about four buckets per key, so one probe finds most). The
    sorted keys end with a sentinel, the largest uint64, so probing forward needs no bounds."""

    def __init__(self, keys: np.ndarray) -> None:
        order = np.argsort(keys, kind="stable")
        self.sorted_keys = np.append(keys[order], np.uint64(2**64 - 1))
        self.order = np.append(order, MISS)  # the sentinel's position: absent
        bits = int(min(26, max(8, np.ceil(np.log2(max(len(keys), 1))) + 2)))
        self.shift = np.uint64(64 - bits)
        counts = np.bincount((self.sorted_keys[:-1] >> self.shift).astype(np.intp), minlength=1 << bits)
        self.starts = np.zeros(len(counts) + 1, dtype=np.intp)
        np.cumsum(counts, out=self.starts[1:])
        self.widest = int(counts.max()) if len(keys) else 0

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Positions for `keys` (MISS where absent). Each key starts at the first key of its bucket and moves
        forward while the stored key is smaller: keys of later buckets are all larger, so it stops by then."""
        slot = self.starts[(keys >> self.shift).astype(np.intp)]
        stored = self.sorted_keys[slot]
        found = np.where(stored == keys, self.order[slot], MISS)
        rest = np.flatnonzero(stored < keys)
        while rest.size:
            slot_rest = slot[rest] + 1
            slot[rest] = slot_rest
            stored = self.sorted_keys[slot_rest]
            match = stored == keys[rest]
            found[rest[match]] = self.order[slot_rest[match]]
            rest = rest[stored < keys[rest]]
        return found


def latest_only(keys: np.ndarray, values: pa.Array, ok: np.ndarray) -> tuple[np.ndarray, pa.Array, np.ndarray]:
    """Of entries with equal keys (given in insertion order) only the last, the latest call, stays."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    repeated = sorted_keys[1:] == sorted_keys[:-1]
    if not repeated.any():
        return keys, values, ok
    keep = np.ones(len(keys), dtype=bool)
    keep[order[:-1][repeated]] = False  # a stable sort puts the latest of equal keys last
    return keys[keep], values.filter(pa.array(keep)), ok[keep]


class Entries:
    """Stored results in insertion order, one per key. `unique=False`: keys may repeat (some were computed
    again, e.g. under --refresh-cache), so the latest of each is found first, which needs a sort."""

    def __init__(self, keys: np.ndarray, values: pa.Array, ok: np.ndarray, *, unique: bool) -> None:
        keys, ok = keys.astype(np.uint64, copy=False), ok.astype(bool, copy=False)
        if not unique:
            keys, values, ok = latest_only(keys, values, ok)
        self.keys = keys  # in value order: a rerun's batch is a contiguous slice of it
        self.values = values
        self.ok = ok
        self.all_ok = bool(ok.all())  # no failed entry: hits need no per-row status
        self._sorted: SortedKeys | None = None
        self._scans = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.keys)

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        return self.sorted().lookup(keys)

    def sorted(self) -> SortedKeys:
        if self._sorted is None:
            with self._lock:
                if self._sorted is None:
                    self._sorted = SortedKeys(self.keys)
        return self._sorted

    def position(self, key: np.uint64) -> int:
        """Where one key is stored (MISS if absent): a linear scan until scans have cost about a sort."""
        if self._sorted is None and self._scans < SCANS_BEFORE_SORT:
            self._scans += 1
            found = np.flatnonzero(self.keys == key)
            return int(found[-1]) if found.size else MISS
        return int(self.lookup(np.array([key], dtype=np.uint64))[0])


class NamespaceIndex:
    """The cached results of one function namespace (the latest entry per key)."""

    def __init__(self, keys: np.ndarray, values: pa.Array, ok: np.ndarray, result_type: pa.DataType, *,
                 unique: bool = False) -> None:
        self.result_type = result_type
        self.entries = Entries(keys, values, ok, unique=unique)
        self.added: dict[Any, tuple[bool, Any]] = {}  # key -> (ok, plain value)
        self.fresh: set[Any] = set()  # keys computed by this process (kept even under --refresh-cache)
        self.added_hits = 0  # rows answered from `added` since the last fold
        self.lock = threading.Lock()
        self._next = 0  # where the last run ended: the next batch of a rerun most likely starts here
        self._not_runs = 0  # batches in a row that were not stored runs
        self._searches = 0

    def __len__(self) -> int:
        return len(self.entries)

    def run_start(self, entries: Entries, keys: np.ndarray) -> int | None:
        """The position where `keys` are stored consecutively in `entries`, in this order (None if not)."""
        n, stored = len(keys), entries.keys
        start = self._next
        if not (n and start + n <= len(stored) and stored[start] == keys[0]):
            # Searching for the first key costs a lookup: after many batches that were not runs, try it only
            # now and then (a query in another order than the stored one).
            self._searches += 1
            if self._not_runs >= RUN_PATIENCE and self._searches % RUN_PATIENCE:
                return None
            start = entries.position(keys[0]) if n else MISS
            if start < 0 or start + n > len(stored):
                self._not_runs += 1
                return None
        if not np.array_equal(stored[start:start + n], keys):
            self._not_runs += 1
            return None
        self._next = start + n  # a hint only: a race between DuckDB threads costs one extra search
        self._not_runs = 0
        return start

    def add(self, key: Any, ok: bool, value: Any) -> None:
        with self.lock:
            self.added[key] = (ok, value)
            self.fresh.add(key)

    def get(self, key: Any, *, fresh_only: bool = False) -> tuple[bool, Any] | None:
        """An entry added since loading (fresh_only: computed by this process)."""
        if fresh_only and key not in self.fresh:
            return None
        return self.added.get(key)

    def fold_added(self, to_arrow: Callable[[list[Any]], pa.Array]) -> None:
        """Move hashed entries from `added` into new base entries: once they are a quarter of the base, or once
        rows answered one by one from `added` have cost about what folding costs (a rerun in the same session)."""
        base = self.entries
        if not self.added or (len(self.added) < max(4096, len(base) // 4)
                              and self.added_hits < len(self.added) // 4 + len(base) // 20):
            return
        with self.lock:
            if not self.added:
                return
            base = self.entries  # again under the lock: another thread may have folded meanwhile
            new_keys = np.fromiter(self.added, dtype=np.uint64, count=len(self.added))
            entries = list(self.added.values())
            keep = np.ones(len(base), dtype=bool)
            replaced = base.lookup(new_keys)
            keep[replaced[replaced >= 0]] = False  # a recomputed entry replaces the stored one
            values = pa.concat_arrays([base.values.filter(pa.array(keep)),
                                       to_arrow([v for _, v in entries]).cast(base.values.type)])
            ok = np.concatenate([base.ok[keep], np.array([o for o, _ in entries], dtype=bool)])
            self.entries = Entries(np.concatenate([base.keys[keep], new_keys]), values, ok, unique=True)
            self.added.clear()
            self.added_hits = 0
