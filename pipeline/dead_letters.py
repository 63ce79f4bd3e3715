"""Dead letters: every rejected message, with its original bytes and attributes, to the dead-letter topic and
the dead_letters table.

Each sink is retried as every other (pipeline.retrying). A letter that neither took is never dropped: it is
retried until one does, and its message stays unacknowledged meanwhile.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import apache_beam as beam
from apache_beam.io.gcp.pubsub import PubsubMessage

from endpoints.bigquery import bigquery_client
from eventmodel import rows
from pipeline import bigquery_errors as E
from pipeline import core, delivery
from pipeline import metrics as M
from pipeline.bigquery import BATCH_SIZE, REQUEST_TIMEOUT_S, RowEntry, RowInserter, table_id
from pipeline.constants import DEFAULT_RETRY_SECONDS
from pipeline.core import DeadLetter
from pipeline.retrying import RetryBudget

_LOG = logging.getLogger(__name__)


_BY_REASON = M.CounterFamily(M.dead_letter)
_ALL = M.counter(M.DEAD_LETTERS)


def _count_dead_letter(letter: DeadLetter) -> DeadLetter:
    _BY_REASON.inc(letter.reason)
    _ALL.inc()
    return letter


def to_pubsub_message(letter: DeadLetter) -> PubsubMessage:
    """The dead-letter topic's copy: the original bytes, the original attributes plus the dlq_* ones."""
    return PubsubMessage(letter.data, core.dead_letter_attributes(letter))


def dead_letter_table_row(letter: DeadLetter) -> tuple[dict[str, Any], str]:
    """The dead_letters row of a letter and its insert id (one per message, stage and reason)."""
    row = rows.dead_letter_row(
        letter.data,
        reason=letter.reason,
        detail=letter.detail,
        stage=letter.stage,
        message_id=letter.source_message_id,
        publish_time=letter.publish_time,
        attributes=letter.attributes,
        ingest_time=datetime.now(UTC),
    )
    return row, f"{letter.event_id or letter.source_message_id}:{letter.stage}:{letter.reason}"


NONE, PENDING, DONE, GAVE_UP = "none", "pending", "done", "gave up"


class _Letter:
    """One dead letter on its way: its state in each dead-letter sink (NONE when that sink is not configured)."""

    __slots__ = ("letter", "row", "table", "topic")

    def __init__(self, letter: DeadLetter, row: RowEntry | None, topic: bool, table: bool) -> None:
        self.letter = letter
        self.row = row  # for the table; its source is filled in when it is sent
        self.topic = PENDING if topic else NONE
        self.table = PENDING if table and row is not None else (GAVE_UP if table else NONE)

    def finished(self) -> bool:
        return PENDING not in (self.topic, self.table)

    def landed(self) -> bool:
        return DONE in (self.topic, self.table)


class WriteDeadLettersFn(beam.DoFn):
    """DeadLetter -> the dead-letter topic and the dead_letters table, then its message is released.

    Each sink is retried for up to `retry_seconds`. Past that, a letter that one of the two took is released
    (the other sink is counted as failed for it); a letter neither took is retried until one does: a dead letter
    is the last place a message can go, so it is never dropped, and its message stays unacknowledged meanwhile.
    A row the table refuses for its content is counted and logged; the topic copy is then the one that counts.
    """

    def __init__(
        self,
        topic: str | None,
        project: str | None,
        dataset: str | None,
        endpoint: str | None = None,
        retry_seconds: float = DEFAULT_RETRY_SECONDS,
        client: Any = None,
        publisher: Any = None,
    ) -> None:
        self.topic = topic
        self.project = project
        self.dataset = dataset
        self.endpoint = endpoint
        self.retry_seconds = retry_seconds
        self.client = client
        self.publisher = publisher

    def setup(self) -> None:
        self._inserter = None
        self._publisher = None
        if self.dataset:
            client = self.client if self.client is not None else bigquery_client(self.project, self.endpoint)
            self._inserter = RowInserter(client, stamp=rows.INGEST_TIME)  # when handed to BigQuery, as the events
            self._table = table_id(self.project, self.dataset, rows.DEAD_LETTER_TABLE)
        if self.topic:
            if self.publisher is not None:
                self._publisher = self.publisher
            else:
                from google.cloud import pubsub_v1

                self._publisher = pubsub_v1.PublisherClient()
        self._rows_written = M.counter(M.bigquery_rows(rows.DEAD_LETTER_TABLE))
        self._rows_failed = M.counter(M.DEAD_LETTER_ROWS_FAILED)
        self._publish_failed = M.counter(M.DEAD_LETTER_PUBLISH_FAILED)
        self._retries = M.counter(M.DEAD_LETTER_RETRIES)

    def start_bundle(self) -> None:
        self._pending: list[_Letter] = []

    def process(self, letter: DeadLetter) -> None:
        row = None
        if self._inserter is not None:
            try:
                built, insert_id = dead_letter_table_row(letter)
                row = RowEntry(built, insert_id, None)
            except Exception as exc:  # the topic copy still goes out
                self._rows_failed.inc()
                _LOG.error("dead-letter row for message %s failed: %s", letter.source_message_id, exc)
        self._pending.append(_Letter(letter, row, self._publisher is not None, self._inserter is not None))
        if len(self._pending) >= BATCH_SIZE:
            self._deliver(self._pending)
            self._pending = []

    def finish_bundle(self) -> None:
        if self._pending:
            self._deliver(self._pending)
            self._pending = []

    def teardown(self) -> None:
        publisher = getattr(self, "_publisher", None)
        if publisher is not None and self.publisher is None:
            publisher.stop()

    def _deliver(self, letters: list[_Letter]) -> None:
        self._throttled = False
        budget = RetryBudget(self.retry_seconds)
        last_resort: RetryBudget | None = None  # past the limit: for letters that no sink took yet
        pending = letters
        while True:
            errors = []
            if any(item.topic == PENDING for item in pending):
                errors.append(self._publish([item for item in pending if item.topic == PENDING]))
            if any(item.table == PENDING for item in pending):
                errors.append(self._insert([item for item in pending if item.table == PENDING]))
            if budget.spent():  # give up on a failing sink where the other one took it
                for item in pending:
                    if item.topic == DONE and item.table == PENDING:
                        item.table = GAVE_UP
                        self._rows_failed.inc()
                    elif item.table == DONE and item.topic == PENDING:
                        item.topic = GAVE_UP
                        self._publish_failed.inc()
            finished = [item for item in pending if item.finished()]
            for item in finished:
                if not item.landed() and (item.topic, item.table) != (NONE, NONE):
                    _LOG.error("dead letter of message %s (%s) was refused by the dead_letters table and there is "
                               "no dead-letter topic", item.letter.source_message_id, item.letter.reason)  # fmt: skip
            if finished:
                delivery.release(item.letter.source_message_id for item in finished)
            pending = [item for item in pending if not item.finished()]
            if not pending:
                break
            detail = "; ".join(e for e in errors if e) or "dead letters not written"
            delivery.trouble(delivery.DEAD_LETTERS, f"{detail} (retrying for {budget.elapsed():.0f} s)")
            self._retries.inc()
            waits = (E.THROTTLED_INITIAL_S, E.THROTTLED_CAP_S) if self._throttled else (None, None)
            if last_resort is None and not budget.wait(*waits):
                _LOG.error(
                    "%d dead letters reached no dead-letter sink in %.0f s; retrying until one takes them (their "
                    "messages stay unacknowledged): %s", len(pending), budget.elapsed(), detail,
                )  # fmt: skip
                last_resort = RetryBudget(None)
            if last_resort is not None:
                last_resort.wait()
        if budget.retries:
            delivery.trouble(delivery.DEAD_LETTERS, None)

    def _publish(self, items: list[_Letter]) -> str | None:
        """One publish attempt per letter; marks the published ones, returns the first error."""
        from google.api_core.retry import Retry

        retry = Retry(initial=0.1, maximum=1.0, timeout=REQUEST_TIMEOUT_S)
        futures = []
        for item in items:
            letter = item.letter
            attributes = core.dead_letter_attributes(letter)
            futures.append(
                self._publisher.publish(self.topic, letter.data, retry=retry, timeout=REQUEST_TIMEOUT_S, **attributes)
            )
        error = None
        for item, future in zip(items, futures, strict=True):
            try:
                future.result(timeout=REQUEST_TIMEOUT_S * 2)
                item.topic = DONE
            except Exception as exc:
                error = error or f"{self.topic}: publish failed: {type(exc).__name__}: {exc}"[:900]
        return error

    def _insert(self, items: list[_Letter]) -> str | None:
        # Each entry carries its letter in the source slot: the inserter stamps copies of the rows it sends.
        outcome = self._inserter.insert(self._table, [item.row._replace(source=item) for item in items])
        committed, rejected, error = outcome.committed, outcome.rejected, outcome.error
        self._throttled = outcome.kind == E.THROTTLED  # a quota or rate limit: wait longer before the next try
        for entry in committed:
            entry.source.table = DONE
        for entry, detail in rejected:  # refused for good: the topic copy is the one that counts
            item = entry.source
            item.table = GAVE_UP
            self._rows_failed.inc()
            _LOG.error("dead-letter row for message %s not inserted: %s", item.letter.source_message_id, detail)
        self._rows_written.inc(len(committed))
        return error


def require_a_dead_letter_sink(dataset: str | None, topic: str | None) -> None:
    """Neither a dead_letters table nor a dead-letter topic: every rejected message would be acknowledged and lost
    without a word. Refused where the graph is built, so a Flex Template launched straight from gcloud (which never
    passes through the workbench's own checks) refuses it too."""
    if not dataset and not topic:
        raise ValueError(
            "--dataset '' and --dead_letter_topic '' leave the dead letters nowhere: a rejected record would be "
            "lost; keep the dead_letters table (a --dataset) or a --dead_letter_topic"
        )


class WriteDeadLetters(beam.PTransform):
    """Dead letters -> the dead-letter topic (when given) and the dead_letters table (when a dataset is).

    Counts every dead letter by reason code; returns them (counted). The arguments are WriteDeadLettersFn's, which
    says what happens on failures.
    """

    def __init__(self, topic: str | None, project: str | None = None, dataset: str | None = None, **options: Any):
        super().__init__()
        require_a_dead_letter_sink(dataset, topic)
        self.write = WriteDeadLettersFn(topic, project, dataset, **options)

    def expand(self, letters: beam.PCollection) -> beam.PCollection:
        counted = letters | "CountByReason" >> beam.Map(_count_dead_letter)
        _ = counted | "WriteDeadLetters" >> beam.ParDo(self.write)
        return counted
