"""Files: each event as one JSON line in its type's minute folder (pipeline.core names them), never overwritten.

The writer buffers per (type, minute) and empties the buffer on a processing-time timer or a size limit, forgets
a quiet minute's counter after an hour, and an end-of-window (drain) timer flushes whatever is left when the
input ends. A write that fails is retried (pipeline.retrying); past the limit its events are dead-lettered.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
import orjson
from apache_beam import pvalue
from apache_beam.coders import BytesCoder, VarIntCoder
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms.combiners import CountCombineFn
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import (
    BagStateSpec,
    CombiningValueStateSpec,
    ReadModifyWriteStateSpec,
    TimerSpec,
    on_timer,
)
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import Timestamp

from eventmodel import reasons as R
from pipeline import core, delivery
from pipeline import metrics as M
from pipeline.constants import DEAD_LETTER
from pipeline.core import Clock, ValidEvent
from pipeline.retrying import RetryBudget

_LOG = logging.getLogger(__name__)


def _format_line(event: ValidEvent) -> Iterator[Any]:
    try:
        key = f"{event.event_type}/{core.minute_key(event.event_time)}"
        stamp = int(event.publish_time.timestamp() * 1_000_000) if event.publish_time else 0
        yield key, (core.file_line(event), stamp)
    except Exception as exc:  # an accepted event that cannot be formatted is a poison message, not a crash
        yield pvalue.TaggedOutput(
            DEAD_LETTER,
            core.dead_letter_from_event(
                event,
                R.PROCESSING_ERROR,
                f"format stage failed: {core.describe_exception(exc)}",
                core.STAGE_FORMAT_LINE,
            ),
        )


class _OldestPublishTime(beam.CombineFn):
    """The smallest positive publish time in microseconds (0 means unknown and is ignored); int accumulator."""

    def create_accumulator(self) -> int:
        return 0

    def add_input(self, accumulator: int, value: int) -> int:
        return value if value and (not accumulator or value < accumulator) else accumulator

    def merge_accumulators(self, accumulators: Iterable[int]) -> int:
        positive = [a for a in accumulators if a]
        return min(positive) if positive else 0

    def extract_output(self, accumulator: int) -> int:
        return accumulator


class MinuteFiles:
    """Writes new files into the minute folders of one output root: never over an existing name, retried.

    The NNNN of a first write in a minute starts after the highest sequence already in the folder, and every
    write checks that its name is free, so no write replaces another (the stream's, an earlier run's, a failed
    attempt's). Local paths are written to a hidden temporary name and renamed, so readers never see half a
    file; GCS objects appear atomically when their upload completes. Counts files and lines per type.
    """

    def __init__(self, output_root: str, retry_seconds: float) -> None:
        self.output_root = output_root
        self.retry_seconds = retry_seconds
        self._local = FileSystems.get_scheme(output_root) in (None, "file")
        self._files = M.counter(M.GCS_FILES)
        self._retries = M.counter(M.GCS_RETRIES)
        self._lines = M.CounterFamily(M.gcs_lines)

    def first_free_sequence(self, event_type: str, minute: str) -> int:
        folder = core.minute_folder(self.output_root, event_type, minute)
        if self._local:  # a directory listing: Beam's match compiles a regex per call, a backfill calls it per minute
            try:
                names = os.listdir(folder)
            except OSError:  # no folder yet
                return 0
        else:
            # Watched like the writes: during an outage the listing is the call that waits inside the client's own
            # retries (the first flush of a minute), and would otherwise hold the pipeline without a word.
            try:
                with delivery.watch(delivery.GCS, f"writing {folder}/ (listing the minute's files)"):
                    found = FileSystems.match([f"{folder}/{event_type}_{minute}*.json"])[0].metadata_list
                names = [m.path for m in found]
            except Exception:  # nothing matched
                return 0
        taken = [core.sequence_of(name, event_type, minute) for name in names]
        taken = [s for s in taken if s is not None]
        return max(taken) + 1 if taken else 0

    def write(self, event_type: str, minute: str, sequence: int, lines: list[bytes]) -> tuple[str, int, str | None]:
        """Write `lines` as one new file at `sequence` or the next free one; (path, sequence used, error detail
        or None). A store that keeps failing for retry_seconds gives up with the error (the caller dead-letters
        the lines)."""
        body = b"".join(lines)
        error: Exception | None = None
        budget = RetryBudget(self.retry_seconds)
        while True:
            path = core.file_path(self.output_root, event_type, minute, sequence)
            try:
                with delivery.watch(delivery.GCS, f"writing {path}"):
                    while FileSystems.exists(path):  # a name taken by an earlier run or a failed attempt
                        sequence += 1
                        path = core.file_path(self.output_root, event_type, minute, sequence)
                    self._write(path, body)
                error = None
                break
            except Exception as exc:  # the store unreachable or refusing: retried within the budget
                error = exc
                if not budget.retries:  # once per outage, not once per retry
                    _LOG.warning("write of %s failed (retrying up to %g s): %s", path, self.retry_seconds, exc)
                delivery.trouble(delivery.GCS, f"writing {path}: {core.describe_exception(exc)}"[:300])
                self._retries.inc()
                if not budget.wait():
                    break
        if budget.retries:
            delivery.trouble(delivery.GCS, None)
        if error is not None:
            detail = (
                f"writing {path} failed for {budget.elapsed():.0f} s ({budget.retries} retries, limit "
                f"{self.retry_seconds:g} s): {core.describe_exception(error)}"
            )
            return path, sequence, detail
        self._files.inc()
        self._lines.inc(event_type, len(lines))
        return path, sequence, None

    def _write(self, path: str, body: bytes) -> None:
        if not self._local:
            with FileSystems.create(path, mime_type="application/json") as handle:
                handle.write(body)
            return
        folder, name = path.rsplit("/", 1)
        temporary = f"{folder}/.{name}.{uuid.uuid4().hex}.tmp"
        with FileSystems.create(temporary, mime_type="application/json") as handle:
            handle.write(body)
        try:
            FileSystems.rename([temporary], [path])
        except Exception:
            FileSystems.delete([temporary])
            raise


_LINES = BagStateSpec("lines", BytesCoder())
_COUNT = CombiningValueStateSpec("count", VarIntCoder(), CountCombineFn())
_OLDEST = CombiningValueStateSpec("oldest_publish_us", VarIntCoder(), _OldestPublishTime())
_NEXT_SEQUENCE = ReadModifyWriteStateSpec("next_sequence", VarIntCoder())
_FLUSH = TimerSpec("flush", TimeDomain.REAL_TIME)
_DRAIN = TimerSpec("drain", TimeDomain.WATERMARK)
# Forgetting is an event-time timer: Beam holds a step's output watermark at a processing-time timer's input
# timestamp until it fires (apache_beam/runners/worker/bundle_processor.py, OutputTimer.set, read from 2.77), so
# an hour-long processing-time timer would hold the job's watermark an hour back; an event-time timer holds it
# at its own firing time, ahead of the data. The flush timer's hold lasts its few seconds.
_FORGET = TimerSpec("forget", TimeDomain.WATERMARK)
_LINES_STATE = beam.DoFn.StateParam(_LINES)
_COUNT_STATE = beam.DoFn.StateParam(_COUNT)
_OLDEST_STATE = beam.DoFn.StateParam(_OLDEST)
_NEXT_SEQUENCE_STATE = beam.DoFn.StateParam(_NEXT_SEQUENCE)
_FLUSH_TIMER = beam.DoFn.TimerParam(_FLUSH)
_DRAIN_TIMER = beam.DoFn.TimerParam(_DRAIN)
_FORGET_TIMER = beam.DoFn.TimerParam(_FORGET)


class BufferAndWriteFilesFn(beam.DoFn):
    """Keyed by "<type>/<YYYYMMDDHHmm>": buffers lines and writes them as one new file per flush.

    A flush happens when `max_lines` are buffered, when the processing-time flush timer fires (`flush_seconds`
    after the first buffered line), or when the input ends (drain timer at the end of the global window).
    NNNN comes from a per-key counter in state; the first flush of a key (and the first after the key's state
    expired) starts after the highest sequence already in the folder, and every write checks that its name is
    free, so no write replaces another: not across panes or flushes, not across restarts, and a retried bundle
    writes a new name instead of over a file a failed attempt left. Beam processes one key on one worker at a
    time, so parallel workers never share a counter.

    Local paths are written to a hidden temporary name and renamed, so readers never see half a file; GCS
    objects appear atomically when their upload completes. A write that keeps failing turns every buffered
    line into a GCS_WRITE_FAILED dead letter.
    """

    def __init__(
        self,
        output_root: str,
        flush_seconds: float | None = 5.0,
        max_lines: int = 5000,
        forget_after_seconds: float | None = 3600.0,
        clock: Clock = time.time,
        retry_seconds: float = 300.0,
    ) -> None:
        self.output_root = output_root
        self.flush_seconds = flush_seconds
        self.max_lines = max_lines
        self.forget_after_seconds = forget_after_seconds
        self.clock = clock
        self.retry_seconds = retry_seconds

    def setup(self) -> None:
        self._files_out = MinuteFiles(self.output_root, self.retry_seconds)
        self._lag = M.gauge(M.GCS_LAG_MS)
        self._forgotten = M.counter(M.GCS_MINUTES_FORGOTTEN)

    def process(
        self,
        element: tuple[str, tuple[bytes, int]],
        lines=_LINES_STATE,
        count=_COUNT_STATE,
        oldest=_OLDEST_STATE,
        next_sequence=_NEXT_SEQUENCE_STATE,
        flush=_FLUSH_TIMER,
        drain=_DRAIN_TIMER,
        forget=_FORGET_TIMER,
    ) -> Iterator[Any]:
        key, (line, publish_us) = element
        lines.add(line)
        count.add(line)
        if publish_us:
            oldest.add(publish_us)
        buffered = count.read()
        if buffered == 1:
            if self.flush_seconds:  # None: batch use (history backfills, benchmarks), size and drain flushes only
                flush.set(Timestamp.of(self.clock() + self.flush_seconds))
            drain.set(GlobalWindow().max_timestamp())
        if buffered >= self.max_lines:
            yield from self._flush(key, lines, count, oldest, next_sequence, (flush, drain, forget))

    @on_timer(_FLUSH)
    def on_flush(
        self,
        key=beam.DoFn.KeyParam,
        lines=_LINES_STATE,
        count=_COUNT_STATE,
        oldest=_OLDEST_STATE,
        next_sequence=_NEXT_SEQUENCE_STATE,
        flush=_FLUSH_TIMER,
        drain=_DRAIN_TIMER,
        forget=_FORGET_TIMER,
    ) -> Iterator[Any]:
        yield from self._flush(key, lines, count, oldest, next_sequence, (flush, drain, forget))

    @on_timer(_DRAIN)
    def on_drain(
        self,
        key=beam.DoFn.KeyParam,
        lines=_LINES_STATE,
        count=_COUNT_STATE,
        oldest=_OLDEST_STATE,
        next_sequence=_NEXT_SEQUENCE_STATE,
        flush=_FLUSH_TIMER,
        drain=_DRAIN_TIMER,
        forget=_FORGET_TIMER,
    ) -> Iterator[Any]:
        yield from self._flush(key, lines, count, oldest, next_sequence, (flush, drain, forget))

    @on_timer(_FORGET)
    def on_forget(self, count=_COUNT_STATE, next_sequence=_NEXT_SEQUENCE_STATE) -> None:
        # A minute whose files are an hour of publish time old: drop its counter, its last state (the buffer and
        # the other timers went with its last flush), so state is bounded by the minutes of the last hour. If more
        # events of that minute come later, the next flush finds the free sequence from the folder again.
        if not count.read() and next_sequence.read() is not None:
            next_sequence.clear()
            self._forgotten.inc()

    def _flush(self, key: str, lines, count, oldest, next_sequence, timers) -> Iterator[Any]:
        flush, drain, forget = timers
        buffered = list(lines.read())
        oldest_us = oldest.read()
        lines.clear()
        count.clear()
        oldest.clear()
        # An empty buffer needs no timer: the next line sets them again. Left set, the drain timer (at the end of
        # the global window, never reached while streaming) would keep every minute ever seen alive.
        flush.clear()
        drain.clear()
        if not buffered:
            return
        event_type, minute = key.split("/", 1)
        sequence = next_sequence.read()
        if sequence is None:
            sequence = self._files_out.first_free_sequence(event_type, minute)
        path, sequence, error = self._files_out.write(event_type, minute, sequence, buffered)
        next_sequence.write(sequence + 1)
        if self.forget_after_seconds:  # in event time, from the buffer's publish times (the watermark's measure)
            since = Timestamp(micros=oldest_us) if oldest_us else Timestamp.of(self.clock())
            forget.set(since + self.forget_after_seconds)
        if error is not None:
            for line in buffered:
                yield pvalue.TaggedOutput(
                    DEAD_LETTER, core.dead_letter_from_line(line, R.GCS_WRITE_FAILED, error, core.STAGE_GCS)
                )
            return
        if delivery.active():
            delivery.release(orjson.loads(line)["message_id"] for line in buffered)
        if oldest_us:
            self._lag.set(int(time.time() * 1000 - oldest_us / 1000))
        yield path, len(buffered)


class WriteEventFiles(beam.PTransform):
    """Valid events -> JSON-lines files under <root>/<type>/YYYY/MM/DD/HH/mm/ named by the event's own minute.

    Returns (written files as (path, line count), dead letters).
    """

    def __init__(
        self,
        output_root: str,
        flush_seconds: float | None = 5.0,
        max_lines: int = 5000,
        clock: Clock = time.time,
        forget_after_seconds: float | None = 3600.0,
        retry_seconds: float = 300.0,
    ) -> None:
        super().__init__()
        self.retry_seconds = retry_seconds
        self.forget_after_seconds = forget_after_seconds
        self.output_root = output_root.rstrip("/") or "/"
        self.flush_seconds = flush_seconds
        self.max_lines = max_lines
        self.clock = clock

    def expand(self, events: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection]:
        # Typed string keys give the stateful step a deterministic key coder.
        lines = events | "FormatLines" >> beam.ParDo(_format_line).with_output_types(tuple[str, Any]).with_outputs(
            DEAD_LETTER, main="lines"
        )
        written = lines.lines | "BufferAndWrite" >> beam.ParDo(
            BufferAndWriteFilesFn(
                self.output_root,
                self.flush_seconds,
                self.max_lines,
                self.forget_after_seconds,
                self.clock,
                self.retry_seconds,
            )
        ).with_outputs(DEAD_LETTER, main="files")
        dead = (lines[DEAD_LETTER], written[DEAD_LETTER]) | "FileDeadLetters" >> beam.Flatten()
        return written.files, dead


class WriteGroupedFilesFn(beam.DoFn):
    """("<type>/<YYYYMMDDHHmm>", [(line, publish_us)]) -> the minute's lines as new files of up to max_lines each."""

    def __init__(self, output_root: str, max_lines: int, retry_seconds: float) -> None:
        self.output_root, self.max_lines, self.retry_seconds = output_root, max_lines, retry_seconds

    def setup(self) -> None:
        self._files_out = MinuteFiles(self.output_root, self.retry_seconds)

    def process(self, element: tuple[str, Iterable[tuple[bytes, int]]]) -> Iterator[Any]:
        key, values = element
        event_type, minute = key.split("/", 1)
        lines = sorted(line for line, _ in values)  # the same files for the same input, whatever the order
        sequence = self._files_out.first_free_sequence(event_type, minute)
        for start in range(0, len(lines), self.max_lines):
            chunk = lines[start : start + self.max_lines]
            path, sequence, error = self._files_out.write(event_type, minute, sequence, chunk)
            sequence += 1
            if error is None:
                yield path, len(chunk)
                continue
            for line in chunk:
                yield pvalue.TaggedOutput(
                    DEAD_LETTER, core.dead_letter_from_line(line, R.GCS_WRITE_FAILED, error, core.STAGE_GCS)
                )


class WriteEventFilesBatch(beam.PTransform):
    """WriteEventFiles for a bounded input (a backfill): the same files, names and dead letters, with a GroupByKey
    per (type, minute) instead of state and timers.

    Why not the streaming writer in batch: its state goes through the SDK worker's state cache, which on Beam's
    FnApiRunner measures every cached value's deep size (objsize over every loaded module's globals, ~2 ms a
    put, read from 2.77): a history spread over months, a few events per minute, paid that per event. A group per
    minute needs no state: each minute's lines are written once, when the input is complete.
    """

    def __init__(self, output_root: str, max_lines: int = 5000, retry_seconds: float = 300.0) -> None:
        super().__init__()
        self.output_root = output_root.rstrip("/") or "/"
        self.max_lines = max_lines
        self.retry_seconds = retry_seconds

    def expand(self, events: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection]:
        lines = events | "FormatLines" >> beam.ParDo(_format_line).with_output_types(tuple[str, Any]).with_outputs(
            DEAD_LETTER, main="lines"
        )
        written = (
            lines.lines
            | "ByMinute" >> beam.GroupByKey()
            | "WriteFiles"
            >> beam.ParDo(WriteGroupedFilesFn(self.output_root, self.max_lines, self.retry_seconds)).with_outputs(
                DEAD_LETTER, main="files"
            )
        )
        dead = (lines[DEAD_LETTER], written[DEAD_LETTER]) | "FileDeadLetters" >> beam.Flatten()
        return written.files, dead
