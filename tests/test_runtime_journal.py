"""The call journal: each finished call is durable the moment it is appended; a killed process's journal is
copied into the cache database once, results and ledger rows together, and a record cut short is ignored."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb

from dataproj.runtime.cache import CallCache
from dataproj.runtime.journal import Insert, encode, read_entries

KILLED_WRITER = textwrap.dedent('''
    import os, sys
    from pathlib import Path
    from dataproj.runtime.cache import CallCache, StoredCall
    from dataproj.runtime.ledger import CallRecord, Ledger
    from dataproj.runtime.spec import build_spec

    def double(x: int) -> int:
        return 2 * x

    spec = build_spec(double, cached=True)
    cache = CallCache(Path(sys.argv[1]))
    ledger = Ledger(cache)
    for x in range(int(sys.argv[2])):
        record = CallRecord(function="double", namespace=spec.namespace, node="n", backend=None, model=None,
                            status="ok", latency_s=0.1)
        cache.store(spec, spec.namespace, [StoredCall((x,), True, 2 * x, None, 0.1)], ledger.insert([record]))
    if sys.argv[3] == "committed":  # killed after the DuckDB commit, before the journal file was deleted
        cache._commit(cache.journal.take())
        cache.con.close()
    os._exit(0)  # like kill -9: nothing flushed, nothing closed
''')


def killed_writer(path: Path, calls: int, stage: str = "journal") -> list[Path]:
    subprocess.run([sys.executable, "-c", KILLED_WRITER, str(path), str(calls), stage], check=True, timeout=120)
    return sorted((path.parent / "calls-journal").glob("*.journal"))


def stored(path: Path) -> tuple[list[tuple[int, int]], int]:
    """(input, value) of every cached row and the number of ledger rows, read from the database file."""
    with duckdb.connect(str(path), read_only=True) as con:
        table = con.execute("select table_name from information_schema.tables "
                            "where table_name like 'fn_double_%'").fetchone()[0]
        rows = con.execute(f'select in_x, value from "{table}" order by in_x').fetchall()
        return rows, con.execute("select count(*) from dataproj_calls").fetchone()[0]


def open_and_close(path: Path) -> list[tuple[str, int, int]]:
    cache = CallCache(path)
    try:
        return cache.stats()
    finally:
        cache.close()


def test_a_killed_process_journal_is_replayed_at_the_next_open_and_a_truncated_record_ignored(tmp_path: Path) -> None:
    path = tmp_path / "calls.duckdb"
    [journal] = killed_writer(path, 5)
    assert len(read_entries(journal)) == 5
    journal.write_bytes(journal.read_bytes()[:-7])  # the kill cut the last write short

    [(_, entries, failed)] = open_and_close(path)
    assert (entries, failed) == (4, 0)
    assert stored(path) == ([(x, 2 * x) for x in range(4)], 4)  # each result with its ledger row
    assert not list((tmp_path / "calls-journal").glob("*.journal"))
    open_and_close(path)
    assert stored(path) == ([(x, 2 * x) for x in range(4)], 4)  # copied once


def test_a_journal_committed_but_not_deleted_before_the_kill_is_not_copied_twice(tmp_path: Path) -> None:
    path = tmp_path / "calls.duckdb"
    [journal] = killed_writer(path, 3, "committed")
    assert stored(path) == ([(0, 0), (1, 2), (2, 4)], 3)
    open_and_close(path)
    assert stored(path) == ([(0, 0), (1, 2), (2, 4)], 3)
    assert not journal.exists()
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("select count(*) from dataproj_journal_applied").fetchone()[0] == 0  # forgotten


def test_a_journal_still_being_written_is_left_to_its_writer(tmp_path: Path) -> None:
    path = tmp_path / "calls.duckdb"
    writer = CallCache(path)
    writer.con.execute("create table t (x bigint)")
    writer.journal.append((Insert("t", ("x",), [(1,), (2,)]),))
    reader = CallCache(path)  # another cache on the same file in this process: the writer's journal is locked
    try:
        assert reader.con.execute("select count(*) from t").fetchone()[0] == 0
        writer.flush()
        assert reader.con.execute("select sum(x) from t").fetchone()[0] == 3
        assert not writer.journal.pending
    finally:
        reader.close()
        writer.close()


def test_reading_stops_at_a_corrupt_record(tmp_path: Path) -> None:
    journal = tmp_path / "x.journal"
    good = [(Insert("t", ("x",), [(i,)]),) for i in range(3)]
    data = bytearray(b"".join(encode(e) for e in good))
    data[-3] ^= 0xFF  # a flipped byte in the last payload
    journal.write_bytes(bytes(data))
    assert read_entries(journal) == good[:2]
