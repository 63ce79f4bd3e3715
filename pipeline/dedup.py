"""Deduplicate by event id: the first copy of an id goes on, later ones are dropped and released.

State stays bounded by design: a ring of time slots per shard forgets ids once publish time has moved a TTL past
them. Deduplication cannot lose an event: when it fails on one, it lets it through and counts it.
"""

from __future__ import annotations

import logging
import time
import uuid
import zlib
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.coders import FastPrimitivesCoder, StrUtf8Coder
from apache_beam.transforms.userstate import (
    BagStateSpec,
    ReadModifyWriteStateSpec,
)

from pipeline import delivery
from pipeline import metrics as M
from pipeline.core import Clock, ValidEvent

_LOG = logging.getLogger(__name__)


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
    window (a very old redelivery) cannot be judged and is let through (counted), never dropped; so is an event
    with no id at all (neither an event_id attribute nor a Pub/Sub message id): an empty id is never a key.

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
        self._no_id = M.counter(M.DEDUP_NO_ID)
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
            if not event.event_id:  # nothing to judge by: every such event would be a "duplicate" of the first
                self._no_id.inc()
                keep = True
            elif (earlier := self._before_restart.get(event.event_id)) is not None and earlier != event.message_id:
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
