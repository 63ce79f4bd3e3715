"""Durability for --data-dir: an append-only journal with group commit (one fsync covers many requests).

Every state change the store makes is appended as a record `[kind:1][length:4][payload]`. RPCs whose reply
confirms something to the client (publish, unary acknowledge, create/update/delete, seek) wait until their
record is fsynced, so a kill -9 loses nothing the client was told about. At start-up the journal is replayed
(a torn last record from a crash is cut off) and rewritten compactly: topics, subscriptions, their IAM policies
and unacked messages only. While running, the store rewrites it the same way once it is mostly dead records.
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

# Append only: a record's code is its position here.
KINDS = (
    "topic_put",
    "topic_del",
    "sub_put",
    "sub_del",
    "publish",
    "ack",
    "seek",
    "deliver",
    "seq",
    "reset",
    "iam_put",
)
_CODE = {kind: i + 1 for i, kind in enumerate(KINDS)}
_HEADER = struct.Struct("<BI")
JOURNAL_FILE = "pubsub.journal"
# Online compaction is considered once the journal passes this size, and runs when at most half of it is live.
COMPACT_MIN_BYTES = 64 * 1024 * 1024


def read_records(path: Path) -> Iterator[tuple[str, bytes]]:
    """Yield the complete records of a journal file; stops at the first torn or unknown record."""
    if not path.exists():
        return
    data = path.read_bytes()
    pos = 0
    while pos + _HEADER.size <= len(data):
        code, length = _HEADER.unpack_from(data, pos)
        end = pos + _HEADER.size + length
        if code < 1 or code > len(KINDS) or end > len(data):
            return
        yield KINDS[code - 1], data[pos + _HEADER.size : end]
        pos = end


class Journal:
    """Appends records from any thread; a writer thread writes and fsyncs them in batches.

    `rewrite` replaces the file with a snapshot while running (online compaction), so a long-running
    durable emulator does not grow its journal without bound.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = open(path, "ab")  # noqa: SIM115 - held open for the server's lifetime, closed in close()
        self.size = path.stat().st_size
        self.next_compaction = COMPACT_MIN_BYTES
        self._lock = threading.Lock()  # guards the buffer and counters
        self._io = threading.Lock()  # guards the file: one writer or one rewrite at a time
        self._cond = threading.Condition(self._lock)
        self._buffer: list[bytes] = []
        self._appended = 0
        self._synced = 0
        self._closed = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="pubsub-journal", daemon=True)
        self._thread.start()

    def append(self, kind: str, payload: bytes) -> int:
        """Queue a record; returns a ticket to pass to wait()."""
        with self._lock:
            self._buffer.append(_HEADER.pack(_CODE[kind], len(payload)))
            self._buffer.append(payload)
            self._appended += 1
            self._cond.notify_all()
            return self._appended

    def wait(self, ticket: int) -> None:
        """Block until the record with this ticket is on disk."""
        with self._lock:
            while self._synced < ticket and self._error is None and not self._closed:
                self._cond.wait(1.0)
            if self._error is not None:
                raise OSError(f"journal write failed: {self._error}")

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._buffer and not self._closed:
                    self._cond.wait()
                if not self._buffer and self._closed:
                    return
            with self._io:
                # Taken under the file lock, so a rewrite never races a chunk that is half on its way.
                with self._lock:
                    chunk, self._buffer = self._buffer, []
                    target = self._appended
                try:
                    if chunk:
                        data = b"".join(chunk)
                        self._file.write(data)
                        self._file.flush()
                        os.fsync(self._file.fileno())
                        self.size += len(data)
                except OSError as exc:
                    with self._lock:
                        self._error = exc
                        self._cond.notify_all()
                    return
            self._mark_synced(target)

    def _mark_synced(self, target: int) -> None:
        with self._lock:
            self._synced = max(self._synced, target)
            self._cond.notify_all()

    def rewrite(self, top: int, records: list[tuple[str, bytes]]) -> None:
        """Replace the journal with a snapshot of the state. The caller holds the store lock, so the snapshot
        reflects every record appended so far: those still buffered are dropped instead of written."""
        with self._io:
            with self._lock:
                self._buffer = []
                target = self._appended
            self._file.close()
            self.size = _write_snapshot(self.path, top, records)
            self._file = open(self.path, "ab")  # noqa: SIM115 - replaces the handle closed above
        self._mark_synced(target)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=10)
        self._file.close()


def _write_snapshot(path: Path, top: int, records: list[tuple[str, bytes]]) -> int:
    """Write records to a temporary file, fsync it and move it over `path`; returns its size."""
    compacted = path.with_name(path.name + ".compact")
    size = 0
    with open(compacted, "wb") as out:
        # The highest message number, so that ids stay unique even when every message was acked.
        for kind, payload in [("seq", top.to_bytes(8, "little")), *records]:
            header = _HEADER.pack(_CODE[kind], len(payload))
            out.write(header)
            out.write(payload)
            size += len(header) + len(payload)
        out.flush()
        os.fsync(out.fileno())
    os.replace(compacted, path)
    _fsync_dir(path.parent)
    return size


def open_journal(
    data_dir: Path, replay: Callable[[str, bytes], int], snapshot: Callable[[], list[tuple[str, bytes]]]
) -> tuple[Journal, int]:
    """Replay the journal in data_dir into the store, compact it, and open it for appending.

    Returns the journal and the highest message sequence number seen (message ids continue after it).
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / JOURNAL_FILE
    top = 0
    for kind, payload in read_records(path):
        top = max(top, replay(kind, payload))
    _write_snapshot(path, top, snapshot())
    return Journal(path), top


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
