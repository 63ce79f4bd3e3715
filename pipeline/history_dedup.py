"""Backfill dedup: each historical event once, and only into the sinks that do not hold it yet.

Historical events have no Pub/Sub ids, so they are named by their natural key (eventmodel.history): the same
event twice in the history, or already streamed, or loaded by an earlier backfill, has the same key. What the
sinks already hold is read where the history's events would go (the key columns of each event table, the lines
of each GCS type folder, one month of event time at a time: the partitions and folders the events fall in; a
folder's files are listed, then read an element each, spread over workers), and joined with the history by key
(CoGroupByKey: no side input, no key set held in memory). Each event then goes to the files unless the GCS tree
has its key, and to BigQuery unless its table has it, so a rerun adds nothing, and a backfill that failed
halfway in one sink completes that sink alone. The key queries name the dataset's location, as every job must.

Dead letters of history are named by their place (s3://BUCKET/KEY#INDEX); those the dead_letters table already
has (it keeps 30 days) are not written again.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import apache_beam as beam
import orjson
from apache_beam import pvalue
from apache_beam.io.filesystems import FileSystems

from eventmodel import history, rows
from eventmodel.resources import ATTR_EVENT_ID, ATTR_SOURCE_LINE, ATTR_SOURCE_OBJECT
from eventmodel.schema import EVENT_TIME_FIELD
from pipeline import metrics as M
from pipeline.core import DeadLetter, ValidEvent

TO_FILES = "files"
TO_ROWS = "rows"


def named_by_key(event: ValidEvent) -> ValidEvent:
    """The event with its natural-key event_id (attribute too), and no Pub/Sub message id."""
    event_id = history.history_event_id(event.event_type, event.event)
    return event._replace(event_id=event_id, message_id=None, attributes={**event.attributes, ATTR_EVENT_ID: event_id})


def month_of(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m")


def _month_bounds(month: str) -> tuple[str, str]:
    year, number = (int(p) for p in month.split("-"))
    after = f"{year + number // 12:04d}-{number % 12 + 1:02d}"
    return f"{month}-01", f"{after}-01"


def _place(event: ValidEvent) -> tuple[str, int]:
    return event.attributes.get(ATTR_SOURCE_OBJECT, ""), int(event.attributes.get(ATTR_SOURCE_LINE) or 0)


def key_select(event_type: str, table: str, month: str) -> str:
    """The natural-key columns of one month of an event table (bounded on its partitioning column)."""
    start, end = _month_bounds(month)
    time_field = EVENT_TIME_FIELD[event_type]
    columns = ", ".join(f"{path} AS {path.replace('.', '__')}" for path in history.NATURAL_KEYS[event_type])
    return (
        f"SELECT {columns} FROM `{table}` "
        f"WHERE {time_field} >= TIMESTAMP('{start}') AND {time_field} < TIMESTAMP('{end}')"
    )


def _nested(row: dict[str, Any]) -> dict[str, Any]:
    """metadata__session_id -> {"metadata": {"session_id": ...}}: a key row shaped like the event."""
    event: dict[str, Any] = {}
    for name, value in row.items():
        *outer, last = name.split("__")
        place = event
        for part in outer:
            place = place.setdefault(part, {})
        place[last] = value
    return event


class ReadBigQueryKeysFn(beam.DoFn):
    """(event type, month) -> the natural-key id of every row its table holds in that month."""

    def __init__(self, project: str, dataset: str, endpoint: str | None) -> None:
        self.project, self.dataset, self.endpoint = project, dataset, endpoint

    def setup(self) -> None:
        from endpoints.bigquery import bigquery_client
        from pipeline.bigquery_load import dataset_location

        self._client = bigquery_client(self.project, self.endpoint)
        self._location = dataset_location(self._client, self.project, self.dataset)

    def process(self, element: tuple[str, str]) -> Iterator[tuple[str, None]]:
        event_type, month = element
        table = f"{self.project}.{self.dataset}.{rows.table_of(event_type)}"
        job = self._client.query(key_select(event_type, table, month), location=self._location)
        for row in job.result(page_size=50_000):
            yield history.history_event_id(event_type, _nested(dict(row.items()))), None

    def teardown(self) -> None:
        client = getattr(self, "_client", None)
        if client is not None:
            client.close()


class ListMonthFilesFn(beam.DoFn):
    """(event type, month) -> (event type, path) of every file in that month's folder of the GCS tree.

    Only the listing happens here; the files are read one element each after a Reshuffle (ReadFileKeysFn), so a
    month of many files is read by many workers at once, not one after another inside one element."""

    def __init__(self, output_root: str) -> None:
        self.output_root = output_root.rstrip("/")

    def process(self, element: tuple[str, str]) -> Iterator[tuple[str, str]]:
        event_type, month = element
        year, number = month.split("-")
        pattern = f"{self.output_root}/{event_type}/{year}/{number}/**"
        try:
            found = FileSystems.match([pattern])[0].metadata_list
        except Exception:  # nothing there yet (a local folder that does not exist)
            found = []
        for metadata in found:
            if metadata.path.endswith(".json"):
                yield event_type, metadata.path


class ReadFileKeysFn(beam.DoFn):
    """(event type, path of a file of the GCS tree) -> the natural-key id of every event in it."""

    def process(self, element: tuple[str, str]) -> Iterator[tuple[str, None]]:
        event_type, path = element
        with FileSystems.open(path, compression_type="uncompressed") as handle:
            for line in handle.read().splitlines():
                try:
                    event = orjson.loads(line)["event"]
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    continue  # not a line of ours: it names no event
                yield history.history_event_id(event_type, event), None


class KeepNewFn(beam.DoFn):
    """(key, {history, gcs, bigquery}) -> the first copy of the event to each sink that does not hold it."""

    def __init__(self, check_rows: bool) -> None:
        self.check_rows = check_rows

    def setup(self) -> None:
        self._duplicates = M.counter(M.HISTORY_DUPLICATES)
        self._in_gcs = M.counter(M.HISTORY_ALREADY_IN_GCS)
        self._in_bigquery = M.counter(M.HISTORY_ALREADY_IN_BIGQUERY)

    def process(self, element: tuple[str, dict[str, Any]]) -> Iterator[Any]:
        _, found = element
        copies = list(found["history"])
        if copies:  # else a key the sinks hold that this history does not have
            yield from self._route(copies, found)

    def _route(self, copies: list[ValidEvent], found: dict[str, Any]) -> Iterator[Any]:
        if len(copies) > 1:
            self._duplicates.inc(len(copies) - 1)
        event = min(copies, key=_place)  # the same copy on every run: first object, first line
        if any(True for _ in found["gcs"]):
            self._in_gcs.inc()
        else:
            yield pvalue.TaggedOutput(TO_FILES, event)
        if self.check_rows:
            if any(True for _ in found["bigquery"]):
                self._in_bigquery.inc()
            else:
                yield pvalue.TaggedOutput(TO_ROWS, event)


class DropLoadedHistory(beam.PTransform):
    """Valid history events -> (events for the files, events for BigQuery or None), each key once per sink."""

    def __init__(self, output_root: str, project: str | None, dataset: str | None, endpoint: str | None) -> None:
        super().__init__()
        self.output_root, self.project, self.dataset, self.endpoint = output_root, project, dataset, endpoint

    def expand(self, events: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection | None]:
        named = events | "NameByNaturalKey" >> beam.Map(named_by_key)
        months = (
            named
            | "TypeAndMonth" >> beam.Map(lambda e: (e.event_type, month_of(e.event_time)))
            | "EachMonthOnce" >> beam.Distinct()
            | "SpreadMonths" >> beam.Reshuffle()
        )
        sources = {
            "history": named | "KeyById" >> beam.Map(lambda e: (e.event_id, e)),
            "gcs": (
                months
                | "ListMonthFiles" >> beam.ParDo(ListMonthFilesFn(self.output_root))
                | "SpreadFiles" >> beam.Reshuffle()
                | "KeysInFiles" >> beam.ParDo(ReadFileKeysFn())
            ),
        }
        if self.dataset:
            sources["bigquery"] = months | "KeysInBigQuery" >> beam.ParDo(
                ReadBigQueryKeysFn(self.project, self.dataset, self.endpoint)
            )
        kept = (
            sources
            | "JoinByKey" >> beam.CoGroupByKey()
            | "KeepNew" >> beam.ParDo(KeepNewFn(bool(self.dataset))).with_outputs(TO_FILES, TO_ROWS)
        )
        return kept[TO_FILES], (kept[TO_ROWS] if self.dataset else None)


# ------------------------------------------------------------------------------------------- dead letters


class ReadRecordedLettersFn(beam.DoFn):
    """A URI prefix -> the event_id of every dead letter the dead_letters table holds under it (30 days)."""

    def __init__(self, project: str, dataset: str, endpoint: str | None) -> None:
        self.project, self.dataset, self.endpoint = project, dataset, endpoint

    def process(self, prefix: str) -> Iterator[tuple[str, None]]:
        from google.cloud import bigquery

        from endpoints.bigquery import bigquery_client
        from pipeline.bigquery_load import dataset_location

        client = bigquery_client(self.project, self.endpoint)
        table = f"{self.project}.{self.dataset}.{rows.DEAD_LETTER_TABLE}"
        sql = (
            f"SELECT DISTINCT event_id FROM `{table}` WHERE ingest_time >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), "
            "INTERVAL 30 DAY) AND STARTS_WITH(event_id, @prefix)"
        )
        config = bigquery.QueryJobConfig(query_parameters=[bigquery.ScalarQueryParameter("prefix", "STRING", prefix)])
        try:
            location = dataset_location(client, self.project, self.dataset)
            for row in client.query(sql, job_config=config, location=location).result(page_size=50_000):
                yield row["event_id"], None
        finally:
            client.close()


class KeepNewLettersFn(beam.DoFn):
    def setup(self) -> None:
        self._known = M.counter(M.HISTORY_DEAD_LETTERS_KNOWN)

    def process(self, element: tuple[str, dict[str, Any]]) -> Iterator[DeadLetter]:
        _, found = element
        letters = list(found["new"])
        if letters and any(True for _ in found["recorded"]):
            self._known.inc(len(letters))
        else:
            yield from letters


class DropRecordedLetters(beam.PTransform):
    """Dead letters of history -> those the dead_letters table does not hold yet (by their place id)."""

    def __init__(self, uri: str, project: str | None, dataset: str, endpoint: str | None) -> None:
        super().__init__()
        self.uri, self.project, self.dataset, self.endpoint = uri, project, dataset, endpoint

    def expand(self, letters: beam.PCollection) -> beam.PCollection:
        recorded = (
            letters.pipeline
            | "Prefix" >> beam.Create([self.uri.rstrip("/") + "/"])
            | "RecordedLetters" >> beam.ParDo(ReadRecordedLettersFn(self.project, self.dataset, self.endpoint))
        )
        return (
            {"new": letters | "KeyByPlace" >> beam.Map(lambda d: (d.event_id, d)), "recorded": recorded}
            | "JoinByPlace" >> beam.CoGroupByKey()
            | "KeepNewLetters" >> beam.ParDo(KeepNewLettersFn())
        )
