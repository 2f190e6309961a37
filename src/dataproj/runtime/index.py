"""The in-memory index of one cache namespace: which stored result answers which DuckDB `hash()` key.

Lookups of a whole Arrow batch are vectorised. Two paths:
- a run: a query that reads the same rows in the same order as the run that computed them (a rerun, the next
  `dataproj run`) finds its batch stored consecutively, so one comparison of two contiguous arrays answers
  the whole batch and the results are a zero-copy slice;
- otherwise keys are sorted and bucketed by their top bits, so a batch of lookups is a few numpy gathers
  (a binary search over millions of random 64-bit keys is bound by memory latency).
Entries computed since loading are in `added`, folded into the vectorised base once they are many or
once hits on them have cost as much as folding would.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

MISS = -1


class NamespaceIndex:
    """The cached results of one function namespace (the latest entry per key)."""

    def __init__(self, keys: np.ndarray, values: pa.Array, ok: np.ndarray, result_type: pa.DataType) -> None:
        self.result_type = result_type
        self.added: dict[Any, tuple[bool, Any]] = {}  # key -> (ok, plain value)
        self.fresh: set[Any] = set()  # keys computed by this process (kept even under --refresh-cache)
        self.added_hits = 0  # rows answered from `added` since the last fold
        self.lock = threading.Lock()
        self._next = 0  # where the last run ended: the next batch of a rerun most likely starts here
        self._build(keys.astype(np.uint64), values, ok.astype(bool))

    def _build(self, keys: np.ndarray, values: pa.Array, ok: np.ndarray) -> None:
        """Index entries given in insertion order; of equal keys the last one (the latest call) wins."""
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        repeated = sorted_keys[1:] == sorted_keys[:-1]
        if repeated.any():
            keep = np.ones(len(keys), dtype=bool)
            keep[order[:-1][repeated]] = False  # a stable sort puts the latest of equal keys last
            keys, values, ok = keys[keep], values.filter(pa.array(keep)), ok[keep]
            order = np.argsort(keys, kind="stable")
            sorted_keys = keys[order]
        self.keys = keys  # in value order: a rerun's batch is a contiguous slice of it
        self.sorted_keys = sorted_keys
        self.order = order
        self.values = values
        self.ok = ok
        self.all_ok = bool(ok.all())  # no failed entry: hits need no per-row status
        # About four buckets per key: most buckets hold at most one key, so one probe finds nearly every key.
        bits = int(min(26, max(8, np.ceil(np.log2(max(len(keys), 1))) + 2)))
        self.shift = np.uint64(64 - bits)
        counts = np.bincount((self.sorted_keys >> self.shift).astype(np.intp), minlength=1 << bits)
        self.starts = np.zeros(len(counts) + 1, dtype=np.int32 if len(keys) < 2**31 else np.int64)
        np.cumsum(counts, out=self.starts[1:])
        self.widest = int(counts.max()) if len(keys) else 0
        self.last = max(len(keys) - 1, 0)

    def __len__(self) -> int:
        return len(self.keys)

    def run_start(self, keys: np.ndarray) -> int | None:
        """The position where `keys` are stored consecutively, in this order (None if they are not)."""
        n, stored = len(keys), self.keys
        start = self._next
        if not (n and start + n <= len(stored) and stored[start] == keys[0]):
            start = int(self.lookup(keys[:1])[0])
            if start < 0 or start + n > len(stored):
                return None
        if not np.array_equal(stored[start:start + n], keys):
            return None
        self._next = start + n  # a hint only: a race between DuckDB threads costs one extra lookup
        return start

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Base positions for `keys` (MISS where absent): a first probe for all, a few more for crowded buckets."""
        if self.widest == 0:
            return np.full(len(keys), MISS, dtype=np.int64)
        bucket = (keys >> self.shift).astype(np.intp)
        low, high = self.starts[bucket], self.starts[bucket + 1]
        slot = np.minimum(low, self.last)
        hit = (self.sorted_keys[slot] == keys) & (high > low)
        found = np.where(hit, self.order[slot], MISS)
        if self.widest == 1:
            return found
        rest = np.nonzero(~hit & (high - low > 1))[0]
        offset = 1
        while rest.size:
            slot = low[rest] + offset
            inside = slot < high[rest]
            rest, slot = rest[inside], slot[inside]
            match = self.sorted_keys[slot] == keys[rest]
            found[rest[match]] = self.order[slot[match]]
            rest, offset = rest[~match], offset + 1
        return found

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
        """Move hashed entries from `added` into the vectorised base: once they are a quarter of it, or once
        rows answered one by one from `added` have cost about what folding costs (a rerun in the same session)."""
        if not self.added or (len(self.added) < max(4096, len(self.keys) // 4)
                              and self.added_hits < len(self.added) // 4 + len(self.keys) // 20):
            return
        with self.lock:
            if not self.added:
                return
            new_keys = np.fromiter(self.added, dtype=np.uint64, count=len(self.added))
            entries = list(self.added.values())
            keep = np.ones(len(self.keys), dtype=bool)
            replaced = self.lookup(new_keys)
            keep[replaced[replaced >= 0]] = False  # a recomputed entry replaces the stored one
            keys = np.concatenate([self.keys[keep], new_keys])
            values = pa.concat_arrays([self.values.filter(pa.array(keep)),
                                       to_arrow([v for _, v in entries]).cast(self.values.type)])
            ok = np.concatenate([self.ok[keep], np.array([o for o, _ in entries], dtype=bool)])
            self._build(keys, values, ok)
            self.added.clear()
            self.added_hits = 0

