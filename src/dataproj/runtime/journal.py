"""An append-only journal of finished calls, so a call is durable the moment its worker has the answer.

A DuckDB commit costs milliseconds of CPU and fsyncs its WAL; under 16 I/O workers finished calls would queue
for it and a kill would lose answers already paid for. Instead each finished call (results and ledger rows,
which must never be separated) is one length-prefixed, checksummed record appended with a single `os.write`:
once that returns the kernel holds the bytes, and they survive a kill -9 of the process (not a power cut).
The cache copies the records into DuckDB in one transaction per batch and deletes the file; a file left by a
killed process is replayed by the next process that opens the cache. A record cut short by the kill fails
its length or checksum and is ignored: its call had not finished being recorded.

Each process writes its own file and holds an exclusive flock on it while it is live, so a replay never
touches a journal that is still being written.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import pickle
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HEADER_SIZE = 8  # payload length and CRC-32, little-endian uint32 each
SUFFIX = ".journal"
_sequence = itertools.count()


@dataclass(frozen=True)
class Insert:
    """Rows for one table: `rows` are tuples in the order of `columns`."""

    table: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]


Entry = tuple[Insert, ...]  # the inserts of one finished call (or group of calls): applied together or not at all


def encode(entry: Entry) -> bytes:
    payload = pickle.dumps(entry, protocol=pickle.HIGHEST_PROTOCOL)
    return len(payload).to_bytes(4, "little") + zlib.crc32(payload).to_bytes(4, "little") + payload


def read_entries(path: Path) -> list[Entry]:
    """The complete records of a journal file; a truncated or corrupt tail (a write cut by a kill) ends it."""
    data = path.read_bytes()
    entries, offset = [], 0
    while offset + HEADER_SIZE <= len(data):
        size = int.from_bytes(data[offset:offset + 4], "little")
        crc = int.from_bytes(data[offset + 4:offset + 8], "little")
        payload = data[offset + HEADER_SIZE:offset + HEADER_SIZE + size]
        if len(payload) < size or zlib.crc32(payload) != crc:
            break
        entries.append(pickle.loads(payload))
        offset += HEADER_SIZE + size
    return entries


@dataclass
class Segment:
    """A closed-for-writing journal file and its entries; its lock is held until `release`."""

    path: Path
    fd: int
    entries: list[Entry]

    def release(self, *, delete: bool) -> None:
        if delete:
            self.path.unlink(missing_ok=True)
        os.close(self.fd)  # closing drops the flock


class Journal:
    """This process's journal in `folder`: append entries, then take them (and their file) to commit them."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._path: Path | None = None
        self._entries: list[Entry] = []

    def append(self, entry: Entry) -> None:
        record = encode(entry)  # outside the lock: pickling is the only real work
        with self._lock:
            if self._fd is None:
                self._open()
            written = os.write(self._fd, record)  # type: ignore[arg-type]
            while written < len(record):  # a regular file takes it all at once, but do not rely on it
                written += os.write(self._fd, record[written:])  # type: ignore[arg-type]
            self._entries.append(entry)

    def _open(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._path = self.folder / f"{os.getpid()}-{time.time_ns()}-{next(_sequence)}{SUFFIX}"
        self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_EXCL, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def take(self) -> Segment | None:
        """The entries written so far, with their file; later appends go to a new file."""
        with self._lock:
            if self._fd is None:
                return None
            segment = Segment(self._path, self._fd, self._entries)  # type: ignore[arg-type]
            self._fd, self._path, self._entries = None, None, []
            return segment

    @property
    def pending(self) -> bool:
        return bool(self._entries)


def orphans(folder: Path) -> list[Segment]:
    """Journal files no live process holds (left by a killed one), locked for replay, oldest first."""
    if not folder.is_dir():
        return []
    segments = []
    for path in sorted(folder.glob("*" + SUFFIX), key=_age):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # still being written by a live process (or by another cache in this one)
            os.close(fd)
            continue
        if not path.exists():  # replayed and deleted by another process between the glob and the lock
            os.close(fd)
            continue
        segments.append(Segment(path, fd, read_entries(path)))
    return segments


def _age(path: Path) -> tuple[int, str]:
    parts = path.name.split("-")
    return (int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else 0, path.name)
