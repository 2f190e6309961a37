"""The in-memory cache index: the latest entry per key wins, a rerun's batch is found as a stored run (without
sorting the keys), any other order through the bucketed lookup, and entries added since loading fold into new
base entries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from dataproj.runtime.index import MISS, RUN_PATIENCE, SCANS_BEFORE_SORT, NamespaceIndex


def make_index(keys: list[int], values: list[int], ok: list[bool] | None = None) -> NamespaceIndex:
    return NamespaceIndex(np.array(keys, dtype=np.uint64), pa.array(values, pa.int64()),
                          np.array(ok if ok is not None else [True] * len(keys)), pa.int64())


def answers(index: NamespaceIndex, keys: list[int]) -> list[int | None]:
    positions = index.entries.lookup(np.array(keys, dtype=np.uint64))
    return [index.entries.values[int(p)].as_py() if p != MISS else None for p in positions]


def test_the_latest_of_repeated_keys_wins_and_absent_keys_miss() -> None:
    index = make_index([5, 7, 5, 9, 7], [50, 70, 51, 90, 71], [False, True, True, True, True])
    assert len(index) == 3
    assert answers(index, [5, 7, 9, 6, 2**64 - 1]) == [51, 71, 90, None, None]
    assert index.entries.all_ok  # the failed entry was replaced by a later success


def test_keys_crowded_in_one_bucket_are_all_found() -> None:
    rng = np.random.default_rng(1)
    keys = rng.integers(0, 2**63, 50_000, dtype=np.uint64)
    keys[:40] = np.uint64(2**63) + np.arange(40, dtype=np.uint64)  # 40 keys sharing their top bits
    index = NamespaceIndex(keys, pa.array(np.arange(len(keys))), np.ones(len(keys), bool), pa.int64())
    assert index.entries.sorted().widest >= 40
    probe = np.concatenate([keys[rng.permutation(len(keys))[:3000]], np.uint64(2**63) + np.arange(45, dtype=np.uint64)])
    found = index.entries.lookup(probe)
    assert (keys[found[:3000]] == probe[:3000]).all()
    assert found[-45:-5].tolist() == list(range(40)) and (found[-5:] == MISS).all()


def test_a_batch_stored_consecutively_is_found_as_a_run_in_any_batch_order() -> None:
    keys = np.arange(100, 200, dtype=np.uint64) * np.uint64(7919)
    index = NamespaceIndex(keys, pa.array(np.arange(100)), np.ones(100, bool), pa.int64(), unique=True)
    entries = index.entries
    assert index.run_start(entries, keys[40:60]) == 40
    assert index.run_start(entries, keys[60:80]) == 60  # where the last one ended
    assert index.run_start(entries, keys[0:20]) == 0  # found by its first key
    assert index.run_start(entries, keys[[1, 0, 2]]) is None  # not in stored order
    assert index.run_start(entries, keys[90:100]) == 90
    assert index.run_start(entries, np.append(keys[95:], np.uint64(3))) is None  # runs past the end
    assert entries._sorted is None  # a rerun in stored order never sorts the keys


def test_batches_out_of_order_sort_the_keys_once_scanning_them_costs_more() -> None:
    keys = np.arange(1, 1001, dtype=np.uint64) * np.uint64(104729)
    index = NamespaceIndex(keys, pa.array(np.arange(1000)), np.ones(1000, bool), pa.int64(), unique=True)
    entries = index.entries
    starts = [(37 * i) % 900 for i in range(SCANS_BEFORE_SORT + 3)]  # never where the last batch ended
    found = [index.run_start(entries, keys[s:s + 10]) for s in starts]
    assert found == starts
    assert entries._sorted is not None  # sorted after SCANS_BEFORE_SORT linear scans
    assert index.run_start(entries, np.array([3], dtype=np.uint64)) is None  # absent


def test_repeated_keys_loaded_as_unique_are_still_found() -> None:
    """unique=True is a promise the cache makes (no recomputed input); a repeat from a race is still found."""
    index = make_index([5, 7, 5], [50, 70, 51])
    assert answers(index, [5, 7]) == [51, 70]
    raced = NamespaceIndex(np.array([5, 7, 5], np.uint64), pa.array([50, 70, 51]), np.ones(3, bool), pa.int64(),
                           unique=True)
    assert answers(raced, [5, 7])[1] == 70 and answers(raced, [5])[0] in (50, 51)


def test_entries_added_since_loading_fold_into_the_base_once_many_or_once_hits_on_them_add_up() -> None:
    to_arrow = lambda values: pa.array(values, pa.int64())  # noqa: E731
    index = make_index(list(range(1, 101)), list(range(1, 101)))
    for key in range(50, 1050):  # 50..100 recomputed, 101..1049 new
        index.add(key, key % 500 != 0, key * 10)
    index.fold_added(to_arrow)
    assert len(index) == 100 and len(index.added) == 1000  # few, and not answering rows yet
    index.added_hits = 1000 // 4 + 100 // 20  # rows answered one by one cost about what a fold costs
    index.fold_added(to_arrow)
    assert len(index) == 1049 and not index.added and index.added_hits == 0
    assert answers(index, [1, 49, 50, 100, 101, 1049, 1050]) == [1, 49, 500, 1000, 1010, 10490, None]
    assert not index.entries.all_ok  # 500 and 1000 failed
    assert index.run_start(index.entries, np.arange(101, 201, dtype=np.uint64)) == 100  # new entries keep order

    for key in range(2000, 6096):  # a miss run: folded once the new entries are many
        index.add(key, True, key)
    index.fold_added(to_arrow)
    assert len(index) == 1049 + 4096 and not index.added


def test_keys_folded_by_another_thread_mid_batch_are_answered_not_called(tmp_path: Path) -> None:
    """A batch that took its snapshot before another DuckDB thread folded `added` finds those keys in the new
    entries instead of calling for them again."""
    from dataproj.runtime.executor import FunctionExecutor
    from dataproj.runtime.runtime import Runtime
    from dataproj.runtime.spec import build_spec

    def double(x: int) -> int:
        return 2 * x

    spec = build_spec(double, cached=True)
    runtime = Runtime(tmp_path, [spec], tmp_path / "calls.duckdb")
    try:
        executor = FunctionExecutor(spec, runtime)
        index = make_index([5, 7], [10, 14], [True, False])
        pending = {5: [0, 2], 7: [1], 9: [3]}
        resolved: dict[int, tuple[bool, object]] = {}
        executor._resolve_folded(index, pending, resolved)
        assert resolved == {0: (True, 10), 2: (True, 10), 1: (False, 14)}  # a stored failure is replayed
        assert pending == {9: [3]}  # only the key nobody computed is still a call to make
    finally:
        runtime.close()


def test_lookup_edges_absent_keys_between_buckets_the_largest_key_and_an_empty_index() -> None:
    top = np.uint64(2**64 - 1)
    keys = np.array([10, 11, 12, 2**63, 2**63 + 5, 2**64 - 2], dtype=np.uint64)
    index = NamespaceIndex(keys, pa.array(np.arange(6)), np.ones(6, bool), pa.int64(), unique=True)
    probe = np.array([12, 13, 9, 2**63 + 5, 2**63 + 6, 2**64 - 2, top, 0], dtype=np.uint64)
    assert index.entries.lookup(probe).tolist() == [2, MISS, MISS, 4, MISS, 5, MISS, MISS]
    with_top = NamespaceIndex(np.append(keys, top), pa.array(np.arange(7)), np.ones(7, bool), pa.int64())
    assert with_top.entries.lookup(np.array([top, 2**64 - 3], dtype=np.uint64)).tolist() == [6, MISS]
    empty = NamespaceIndex(np.zeros(0, np.uint64), pa.array([], pa.int64()), np.zeros(0, bool), pa.int64())
    assert empty.entries.lookup(np.array([0, 5, top], dtype=np.uint64)).tolist() == [MISS, MISS, MISS]


def test_after_many_batches_in_another_order_runs_are_still_found_within_a_few_batches() -> None:
    keys = np.arange(1, 2001, dtype=np.uint64) * np.uint64(7919)
    index = NamespaceIndex(keys, pa.array(np.arange(2000)), np.ones(2000, bool), pa.int64(), unique=True)
    entries = index.entries
    for start in range(0, 400, 20):  # shuffled batches: never runs
        assert index.run_start(entries, keys[start:start + 20][::-1]) is None
    found = [index.run_start(entries, keys[1000 + 10 * i:1010 + 10 * i]) for i in range(RUN_PATIENCE)]
    first = next(i for i, start in enumerate(found) if start is not None)  # searched again within RUN_PATIENCE
    assert found[first] == 1000 + 10 * first
    assert all(start == 1000 + 10 * i for i, start in enumerate(found) if i > first)  # then the cursor follows
