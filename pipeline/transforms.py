"""The pipeline's composite transforms, one responsibility each, in the order the data flows:

    ReadEvents -> ParseAndValidate -> DeduplicateByEventId -> WriteEventFiles
                        |                                  -> WriteEventRows
                        +-- dead letters (every stage) ---> WriteDeadLetters

Every composite that can fail for a single message returns `(main, dead_letters)`: a failure is a tagged
output and a counter, never a log line and never an exception that stops the pipeline. (Deduplication cannot
lose an event: when it fails on one, it lets it through and counts it.) The decisions are pure functions in
pipeline.core; this module is the Beam shell around them.

Nothing here uses event-time windows: everything lives in the global window, so events that arrive late
or carry historical timestamps are never dropped behind the watermark. State stays bounded by design: the
dedup ring forgets ids once publish time has moved a TTL past them; the file writer empties its buffer on a
processing-time timer or a size limit, forgets a quiet minute's counter after an hour, and an end-of-window
(drain) timer flushes whatever is left when the input ends.
"""

from __future__ import annotations

import logging
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import apache_beam as beam
import orjson
from apache_beam import pvalue
from apache_beam.coders import BytesCoder, FastPrimitivesCoder, StrUtf8Coder, VarIntCoder
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.gcp.pubsub import PubsubMessage
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
from eventmodel.validate import Accepted, validate
from pipeline import core, delivery
from pipeline import metrics as M
from pipeline.core import DeadLetter, ValidEvent
from pipeline.retrying import RetryBudget

_LOG = logging.getLogger(__name__)

DEAD_LETTER = "dead_letter"  # the tag of every dead-letter output

Clock = Callable[[], float]


def _publish_time(message: PubsubMessage) -> datetime | None:
    moment = getattr(message, "publish_time", None)
    if moment is None:
        return None
    if isinstance(moment, datetime):
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if isinstance(moment, Timestamp):
        return moment.to_utc_datetime(has_tz=True)
    return None


# --------------------------------------------------------------------------------------------------- read


class ReadEvents(beam.PTransform):
    """Pub/Sub messages (with attributes, message id and publish time) from a named subscription.

    The named subscription, never `topic=`: a topic read creates a temporary subscription and misses what was
    published before the pipeline started.
    """

    def __init__(self, subscription: str) -> None:
        super().__init__()
        self.subscription = subscription

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        # Read messages are counted by the next step (ParseEventFn): a counting step of its own would add the
        # DirectRunner's per-element, per-step bookkeeping for nothing.
        return pbegin | "ReadFromPubSub" >> beam.io.ReadFromPubSub(subscription=self.subscription, with_attributes=True)


# ----------------------------------------------------------------------------------------- parse/validate


class ParseEventFn(beam.DoFn):
    """PubsubMessage -> ValidEvent, or a DeadLetter with the validator's reason code and the original bytes."""

    def setup(self) -> None:
        self._valid = {}
        self._read = M.counter(M.READ)

    def process(self, message: PubsubMessage) -> Iterator[Any]:
        self._read.inc()
        data = message.data if message.data is not None else b""
        attributes = dict(message.attributes or {})
        message_id = message.message_id or ""
        publish_time = _publish_time(message)
        event_id = core.event_id_of(attributes, message_id)
        try:
            verdict = validate(data)
            if isinstance(verdict, Accepted):
                self._count(self._valid, verdict.event_type, M.valid)
                yield ValidEvent(
                    verdict.event_type,
                    verdict.event,
                    verdict.event_time,
                    event_id,
                    message_id,
                    publish_time,
                    attributes,
                    data,
                )
                return
            reason, detail = verdict.reason, verdict.detail
        except Exception as exc:  # validate() never raises; anything else here is a poison message
            reason, detail = R.PROCESSING_ERROR, f"parse stage failed: {core.describe_exception(exc)}"
        yield pvalue.TaggedOutput(
            DEAD_LETTER,
            DeadLetter(
                bytes(data), attributes, reason, detail, core.STAGE_VALIDATE, message_id, event_id, publish_time
            ),
        )

    @staticmethod
    def _count(cache: dict, key: str, name: Callable[[str], str]) -> None:
        counter = cache.get(key)
        if counter is None:
            counter = cache[key] = M.counter(name(key))
        counter.inc()


class ParseAndValidate(beam.PTransform):
    """Messages -> (valid events, dead letters). The validator decides; attributes are hints only."""

    def expand(self, messages: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection]:
        results = messages | "Validate" >> beam.ParDo(ParseEventFn()).with_outputs(DEAD_LETTER, main="valid")
        return results.valid, results[DEAD_LETTER]


# ------------------------------------------------------------------------------------------------- dedup


# State specs live at module level so that the DoFn parameters below can name them as defaults.
DEDUP_SLOTS = 4  # the window is a ring of this many time slots per shard
_SLOTS = tuple(BagStateSpec(f"ids_{i}", StrUtf8Coder()) for i in range(DEDUP_SLOTS))
_RING = ReadModifyWriteStateSpec("ring", FastPrimitivesCoder())  # (version token, epoch of each slot)
_SLOT_STATES = tuple(beam.DoFn.StateParam(spec) for spec in _SLOTS)
_RING_STATE = beam.DoFn.StateParam(_RING)


class DropRepeatedIdsFn(beam.DoFn):
    """Keyed by a shard of the event id: lets the first copy of an id through and drops the rest.

    Each shard remembers ids in a ring of DEDUP_SLOTS time slots of ttl / (DEDUP_SLOTS - 1) seconds of publish
    time (a bag of ids per slot, appended to, never rewritten); a slot is cleared when the ring moves past it.
    An id is so remembered for at least `ttl_seconds` and at most ttl * DEDUP_SLOTS / (DEDUP_SLOTS - 1): state is
    bounded by the ids published within that window, with no timer per id. A message published before the
    window (a very old redelivery) cannot be judged and is let through (counted), never dropped.

    Why shards and not one key per id (Beam's DeduplicatePerKey pattern): the DirectRunner scans every key it has
    ever seen on each scheduling round and never forgets one, so per-id keys make a local run slower by the
    minute. A fixed number of shards costs the same on every runner and keeps the step parallel on Dataflow.
    Within a bundle a shard's ids are read once into a set; the set is reused across bundles only while the
    ring's version token shows no one else changed the state.
    """

    def __init__(
        self, ttl_seconds: float, clock: Clock = time.time, copies: int = 1, journal: str | None = None
    ) -> None:
        self.run = uuid.uuid4().hex  # every copy of this DoFn in one run shares the journal's one load
        self.ttl_seconds = ttl_seconds
        self.slot_seconds = ttl_seconds / (DEDUP_SLOTS - 1)
        self.clock = clock
        self.copies = copies
        self.journal = journal  # local runs only: pipeline.dedup_journal

    def setup(self) -> None:
        self._duplicates = M.counter(M.DUPLICATES)
        self._too_old = M.counter(M.DEDUP_TOO_OLD)
        self._errors = M.counter(M.DEDUP_ERRORS)
        self._cache: dict[str, tuple[str, list[set[str]]]] = {}
        self._journal = None
        self._before_restart: dict[str, str] = {}
        if self.journal:
            from pipeline.dedup_journal import DedupJournal

            self._journal = DedupJournal(self.journal, self.ttl_seconds, self.run, self.clock)
            self._before_restart = self._journal.load()

    def finish_bundle(self) -> None:
        if self._journal is not None:  # before this bundle's events move on to the sinks
            self._journal.flush()

    def process(
        self,
        element: tuple[str, ValidEvent],
        ring=_RING_STATE,
        slot0=_SLOT_STATES[0],
        slot1=_SLOT_STATES[1],
        slot2=_SLOT_STATES[2],
        slot3=_SLOT_STATES[3],
    ) -> Iterator[ValidEvent]:
        key, event = element
        try:
            earlier = self._before_restart.get(event.event_id) if self._before_restart else None
            if earlier is not None and earlier != event.message_id:
                self._duplicates.inc()  # let through as another message before this run was restarted
                keep = False
            else:
                keep = self._first_sighting(key, event, ring, (slot0, slot1, slot2, slot3))
                if keep and self._journal is not None:
                    published = event.publish_time.timestamp() if event.publish_time else self.clock()
                    self._journal.add(event.event_id, event.message_id, published)
        except Exception as exc:  # fail open: a possible duplicate is better than a lost event
            self._errors.inc()
            _LOG.error("dedup failed for event %s (let through): %s", event.event_id, exc)
            keep = True
        if keep:
            # Each sink downstream commits its own copy of the event (pipeline.delivery).
            delivery.hold(event.message_id, self.copies - 1)
            yield event
        else:
            delivery.release((event.message_id,))

    def _first_sighting(self, key: str, event: ValidEvent, ring, slots) -> bool:
        published = event.publish_time.timestamp() if event.publish_time else self.clock()
        epoch = int(published // self.slot_seconds)
        token, epochs = ring.read() or ("", (-1,) * DEDUP_SLOTS)
        cached = self._cache.get(key)
        if token and cached is not None and cached[0] == token:
            seen = cached[1]
        else:
            seen = [set(slot.read()) if epochs[i] != -1 else set() for i, slot in enumerate(slots)]
        epochs = list(epochs)
        current = max(*epochs, epoch)
        changed = False
        for i in range(DEDUP_SLOTS):
            if epochs[i] != -1 and epochs[i] <= current - DEDUP_SLOTS:  # the ring moved past this slot
                slots[i].clear()
                seen[i] = set()
                epochs[i] = -1
                changed = True
        keep = True
        if epoch <= current - DEDUP_SLOTS:
            self._too_old.inc()
        elif any(event.event_id in ids for ids in seen):
            self._duplicates.inc()
            keep = False
        else:
            slot = epoch % DEDUP_SLOTS
            if epochs[slot] != epoch:  # a free slot (expired ones were cleared above)
                slots[slot].clear()
                seen[slot] = set()
                epochs[slot] = epoch
            slots[slot].add(event.event_id)
            seen[slot].add(event.event_id)
            changed = True
        if changed:
            token = uuid.uuid4().hex
            ring.write((token, tuple(epochs)))
        self._cache[key] = (token, seen)
        return keep


def _shard_of(event: ValidEvent, shards: int) -> tuple[str, ValidEvent]:
    # crc32, not hash(): the same id must land on the same shard in every process and on every worker.
    return str(zlib.crc32(event.event_id.encode("utf-8")) % shards), event


class DeduplicateByEventId(beam.PTransform):
    """Valid events -> the same events with every event id at most once within the dedup window.

    `copies`: how many sinks consume the output, each committing the event on its own (the local run acks a
    message once every copy is committed, pipeline.delivery). `journal`: a file that carries the ids across a
    restart of a local run (pipeline.dedup_journal).
    """

    def __init__(
        self,
        ttl_seconds: float = 600.0,
        shards: int = 16,
        clock: Clock = time.time,
        copies: int = 1,
        journal: str | None = None,
    ) -> None:
        super().__init__()
        if ttl_seconds <= 0 or shards < 1 or copies < 1:
            raise ValueError("ttl_seconds must be > 0, shards >= 1 and copies >= 1")
        self.ttl_seconds = ttl_seconds
        self.shards = shards
        self.clock = clock
        self.copies = copies
        self.journal = journal  # local runs: pipeline.dedup_journal

    def expand(self, events: beam.PCollection) -> beam.PCollection:
        return (
            events
            | "KeyByIdShard" >> beam.Map(_shard_of, self.shards).with_output_types(tuple[str, Any])
            | "DropRepeatedIds"
            >> beam.ParDo(DropRepeatedIdsFn(self.ttl_seconds, self.clock, self.copies, self.journal))
        )


# ------------------------------------------------------------------------------------------------- files


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


_LINES = BagStateSpec("lines", BytesCoder())
_COUNT = CombiningValueStateSpec("count", VarIntCoder(), CountCombineFn())
_OLDEST = CombiningValueStateSpec("oldest_publish_us", VarIntCoder(), _OldestPublishTime())
_NEXT_SEQUENCE = ReadModifyWriteStateSpec("next_sequence", VarIntCoder())
_FLUSH = TimerSpec("flush", TimeDomain.REAL_TIME)
_DRAIN = TimerSpec("drain", TimeDomain.WATERMARK)
_FORGET = TimerSpec("forget", TimeDomain.REAL_TIME)
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
        self._files = M.counter(M.GCS_FILES)
        self._lines = {}
        self._lag = M.gauge(M.GCS_LAG_MS)
        self._retries = M.counter(M.GCS_RETRIES)
        self._local = FileSystems.get_scheme(self.output_root) in (None, "file")

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
            yield from self._flush(key, lines, count, oldest, next_sequence, forget)

    @on_timer(_FLUSH)
    def on_flush(
        self,
        key=beam.DoFn.KeyParam,
        lines=_LINES_STATE,
        count=_COUNT_STATE,
        oldest=_OLDEST_STATE,
        next_sequence=_NEXT_SEQUENCE_STATE,
        forget=_FORGET_TIMER,
    ) -> Iterator[Any]:
        yield from self._flush(key, lines, count, oldest, next_sequence, forget)

    @on_timer(_DRAIN)
    def on_drain(
        self,
        key=beam.DoFn.KeyParam,
        lines=_LINES_STATE,
        count=_COUNT_STATE,
        oldest=_OLDEST_STATE,
        next_sequence=_NEXT_SEQUENCE_STATE,
        forget=_FORGET_TIMER,
    ) -> Iterator[Any]:
        yield from self._flush(key, lines, count, oldest, next_sequence, forget)

    @on_timer(_FORGET)
    def on_forget(self, count=_COUNT_STATE, next_sequence=_NEXT_SEQUENCE_STATE) -> None:
        # A minute that has been quiet for a while: drop its counter (bounded state). If more events of that minute
        # come later, the next flush finds the free sequence from the folder again.
        if not count.read():
            next_sequence.clear()

    def _flush(self, key: str, lines, count, oldest, next_sequence, forget) -> Iterator[Any]:
        buffered = list(lines.read())
        oldest_us = oldest.read()
        lines.clear()
        count.clear()
        oldest.clear()
        if not buffered:
            return
        event_type, minute = key.split("/", 1)
        sequence = next_sequence.read()
        if sequence is None:
            sequence = self._first_free_sequence(event_type, minute)
        body = b"".join(buffered)
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
        next_sequence.write(sequence + 1)
        if self.forget_after_seconds:
            forget.set(Timestamp.of(self.clock() + self.forget_after_seconds))
        if error is not None:
            detail = (
                f"writing {path} failed for {budget.elapsed():.0f} s ({budget.retries} retries, limit "
                f"{self.retry_seconds:g} s): {core.describe_exception(error)}"
            )
            for line in buffered:
                yield pvalue.TaggedOutput(
                    DEAD_LETTER, core.dead_letter_from_line(line, R.GCS_WRITE_FAILED, detail, core.STAGE_GCS)
                )
            return
        if delivery.active():
            delivery.release(orjson.loads(line)["message_id"] for line in buffered)
        self._files.inc()
        counter = self._lines.get(event_type)
        if counter is None:
            counter = self._lines[event_type] = M.counter(M.gcs_lines(event_type))
        counter.inc(len(buffered))
        if oldest_us:
            self._lag.set(int(time.time() * 1000 - oldest_us / 1000))
        yield path, len(buffered)

    def _first_free_sequence(self, event_type: str, minute: str) -> int:
        folder = core.minute_folder(self.output_root, event_type, minute)
        pattern = f"{folder}/{event_type}_{minute}*.json"
        try:
            found = FileSystems.match([pattern])[0].metadata_list
        except Exception:  # no folder yet (local) or nothing matched
            return 0
        taken = [core.sequence_of(m.path, event_type, minute) for m in found]
        taken = [s for s in taken if s is not None]
        return max(taken) + 1 if taken else 0

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
