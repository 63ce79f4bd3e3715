"""The dedup step's memory across restarts of a local run: which event ids were let through, as which message.

On Dataflow the dedup state survives a worker crash (it is the runner's persisted state) and this is not used.
The DirectRunner keeps state in memory, so a killed `workbench run-pipeline` would forget every id and let the
second copy of an event through whenever the first one was written before the crash. Locally the dedup step
(pipeline.dedup.DropRepeatedIdsFn) therefore appends (event id, message id, publish time) of every event it
lets through to this journal, handed to the operating system at every bundle end, before the bundle's output
moves on (a killed process loses none of it; no fsync, which only a machine crash would need). A restarted run
loads what is younger than the dedup window.

A remembered id drops a later copy only when it comes in *another* message: the same message coming back is a
redelivery of something that may not have reached every sink before the crash, and must go through again.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

_lock = threading.Lock()
# Per process: what each run loaded (the DirectRunner sets up many copies of a DoFn; one load, one compaction per
# run), and one append handle per file.
_loaded: dict[tuple[str, str], dict[str, str]] = {}
_handles: dict[str, object] = {}


class DedupJournal:
    """`run` names one pipeline run (every copy of the DoFn in it carries the same): the journal is loaded once
    per run and process."""

    def __init__(self, path: str, ttl_seconds: float, run: str = "", clock=time.time) -> None:
        self.path = Path(path)
        self.ttl_seconds = ttl_seconds
        self.run = run
        self.clock = clock
        self._pending: list[str] = []

    def load(self) -> dict[str, str]:
        """event id -> message id of what was let through within the window; the file is compacted to that."""
        key = (str(self.path), self.run)
        with _lock:
            known = _loaded.get(key)
            if known is not None:
                return known
            horizon = self.clock() - self.ttl_seconds
            kept: dict[str, tuple[str, str]] = {}
            try:
                lines = self.path.read_text(encoding="utf-8").splitlines()
            except FileNotFoundError:
                lines = []
            for line in lines:
                parts = line.split("\t")
                if len(parts) != 3:  # a line cut short by a crash
                    continue
                event_id, message_id, published = parts
                try:
                    if float(published) >= horizon:
                        kept[event_id] = (message_id, published)
                except ValueError:
                    continue
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_suffix(f".{os.getpid()}.tmp")
            temporary.write_text("".join(f"{e}\t{m}\t{p}\n" for e, (m, p) in kept.items()), encoding="utf-8")
            handle = _handles.pop(str(self.path), None)
            if handle is not None:
                handle.close()  # it points at the file the compaction replaces
            os.replace(temporary, self.path)
            known = _loaded[key] = {event_id: message_id for event_id, (message_id, _) in kept.items()}
            return known

    def add(self, event_id: str, message_id: str, published: float) -> None:
        if "\t" in event_id or "\n" in event_id:  # cannot be journaled faithfully; the in-memory ring still has it
            return
        self._pending.append(f"{event_id}\t{message_id}\t{published:.3f}\n")

    def flush(self) -> None:
        """Hand the pending lines to the operating system: a killed process loses none of them."""
        if not self._pending:
            return
        text, self._pending = "".join(self._pending), []
        with _lock:
            handle = _handles.get(str(self.path))
            if handle is None:
                handle = _handles[str(self.path)] = self.path.open("a", encoding="utf-8")
            handle.write(text)
            handle.flush()
