"""Read history: every object under s3://BUCKET/PREFIX (or any Beam filesystem), record by record, as messages
the validate stage takes exactly as it takes Pub/Sub's.

Objects are listed with Beam's filesystem (for s3://, apache_beam.io.aws: boto3's ListObjectsV2 with its
continuation tokens, configured by the --s3_* flags or the usual AWS environment), spread over workers
(Reshuffle), and each is read as raw bytes (s3://: one GetObject through boto3, a client of endpoints.s3
configured from the same flags and environment as Beam's filesystem; ReadObjectRecordsFn._open says why not
through it) and cut into records by eventmodel.history's rule, gunzipped by its magic bytes. A record becomes a
PubsubMessage with no message id and no publish time, and attributes that say where it came from: source_object,
source_line, the run it belongs to (run_id) and, until validation names it by its natural key, event_id = its
place (s3://BUCKET/KEY#INDEX).

An object that cannot be read (access refused, a gzip stream cut off) becomes one SOURCE_UNREADABLE dead
letter naming the object; the records read before the failure go on. Nothing stops the rest of the backfill.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.gcp.pubsub import PubsubMessage

from eventmodel import history
from eventmodel import reasons as R
from eventmodel.resources import ATTR_EVENT_ID, ATTR_RUN_ID, ATTR_SOURCE_LINE, ATTR_SOURCE_OBJECT, S3_RUN_ID_METADATA
from pipeline import core
from pipeline import metrics as M
from pipeline.aws_credentials import use_secret
from pipeline.constants import DEAD_LETTER
from pipeline.core import DeadLetter

_LOG = logging.getLogger(__name__)

STAGE_READ = "read"
READ_CHUNK = 8 * 1024 * 1024  # bytes per read of an object's body
READ_TIMEOUT_S = 120.0  # one chunk of a large object on a slow link
READ_ATTEMPTS = 5  # a worker's GetObject: more than the factory's default, a backfill has no one to retry it


def object_key(uri: str) -> str:
    """The key (path below the bucket) of s3://BUCKET/KEY, or the path itself for a local file."""
    _, sep, rest = uri.partition("://")
    return rest.split("/", 1)[1] if sep and "/" in rest else uri


def is_listed_object(metadata: Any) -> bool:
    """A listing entry worth reading: not a "folder" marker (a key ending in /) and not hidden (_SUCCESS,
    .temporary files of a writer still at work)."""
    name = metadata.path.rstrip("/").rsplit("/", 1)[-1]
    return not metadata.path.endswith("/") and not name.startswith((".", "_"))


def s3_client_settings(options: Any) -> dict[str, Any]:
    """boto3 client arguments from Beam's S3Options (--s3_endpoint_url, --s3_region_name, ...), as Beam's own s3://
    filesystem builds its client; unset ones are left to boto3 (the usual AWS environment, profile or role)."""
    from apache_beam.options.pipeline_options import S3Options

    s3 = options.view_as(S3Options)
    settings = {
        "endpoint_url": s3.s3_endpoint_url,
        "region_name": s3.s3_region_name,
        "aws_access_key_id": s3.s3_access_key_id,
        "aws_secret_access_key": s3.s3_secret_access_key,
        "aws_session_token": s3.s3_session_token,
        "verify": s3.s3_verify,
    }
    settings = {k: v for k, v in settings.items() if v is not None}
    if s3.s3_disable_ssl:
        settings["use_ssl"] = False
    return settings


class ListObjectsFn(beam.DoFn):
    """A folder URI -> the metadata of every object under it (Beam's filesystem lists, with S3's pagination)."""

    def __init__(self, credentials_secret: str | None = None) -> None:
        self.credentials_secret = credentials_secret

    def setup(self) -> None:
        use_secret(self.credentials_secret)

    def process(self, uri: str) -> Iterator[Any]:
        for metadata in FileSystems.match([f"{uri.rstrip('/')}/**"])[0].metadata_list:
            if is_listed_object(metadata):
                yield metadata


class ReadObjectRecordsFn(beam.DoFn):
    """A listed object -> one PubsubMessage per record; an object it cannot read -> a SOURCE_UNREADABLE letter."""

    def __init__(self, backfill_run_id: str, credentials_secret: str | None = None,
                 s3_settings: dict[str, Any] | None = None) -> None:  # fmt: skip
        self.backfill_run_id = backfill_run_id
        self.credentials_secret = credentials_secret
        self.s3_settings = s3_settings or {}

    def setup(self) -> None:
        use_secret(self.credentials_secret)
        self._s3 = None
        self._objects = M.counter(M.HISTORY_OBJECTS)
        self._bytes = M.counter(M.HISTORY_BYTES)
        self._unreadable = M.counter(M.HISTORY_UNREADABLE)

    def process(self, metadata: Any) -> Iterator[Any]:
        uri = metadata.path
        key = object_key(uri)
        run_id = history.run_id_of_key(key)  # a folder of the key, else the object's metadata (read by _open)
        emitted = 0
        try:
            chunks, stamped = self._open(uri)
            run_id = run_id or stamped or self.backfill_run_id
            for record in history.records(key, chunks):
                attributes = {
                    ATTR_EVENT_ID: history.record_id(uri, record.index),
                    ATTR_RUN_ID: run_id,
                    ATTR_SOURCE_OBJECT: uri,
                    ATTR_SOURCE_LINE: str(record.line),
                }
                yield PubsubMessage(record.data, attributes)
                emitted += 1
        except Exception as exc:  # refused, gone, a broken gzip stream: the object's own outcome, not a crash
            self._unreadable.inc()
            detail = f"{uri}: reading stopped after {emitted} records: {core.describe_exception(exc)}"
            _LOG.error("history object unreadable: %s", detail)
            letter_id = f"{uri}#unreadable"
            attributes = {
                ATTR_EVENT_ID: letter_id,
                ATTR_RUN_ID: run_id or self.backfill_run_id,
                ATTR_SOURCE_OBJECT: uri,
            }
            letter = DeadLetter(b"", attributes, R.SOURCE_UNREADABLE, detail[:2000], STAGE_READ, "", letter_id, None)
            yield pvalue.TaggedOutput(DEAD_LETTER, letter)
        self._objects.inc()

    def _open(self, uri: str) -> tuple[Iterator[bytes], str | None]:
        """The object's stored bytes in chunks, and the run id its metadata names (S3 only).

        s3:// objects are read with one GetObject through a boto3 client kept for the DoFn's life: Beam's
        filesystem would build a new boto3 session and ask HeadObject for every object it opens (~0.25 s each,
        minutes for a history of many small objects), and the GET's answer carries the object's metadata, so the
        run id (x-amz-meta-workbench-run-id, set by `publish --history`, whose --run-id may be any name) costs no
        request of its own. Other schemes (gs://, local) go through Beam's FileSystems.
        """
        if not uri.startswith("s3://"):
            return self._beam_chunks(uri), None
        bucket, _, key = uri[len("s3://") :].partition("/")
        if self._s3 is None:  # the one S3 client factory, given the --s3_* flags as Beam's filesystem takes them
            from endpoints.s3 import s3_client

            self._s3 = s3_client(read_timeout_s=READ_TIMEOUT_S, attempts=READ_ATTEMPTS, **self.s3_settings)
        answer = self._s3.get_object(Bucket=bucket, Key=key)
        stamped = (answer.get("Metadata") or {}).get(S3_RUN_ID_METADATA) or None
        return self._counted(answer["Body"].iter_chunks(READ_CHUNK)), stamped

    def _beam_chunks(self, uri: str) -> Iterator[bytes]:
        # UNCOMPRESSED: the raw stored bytes; eventmodel.history decides about gzip from the bytes themselves.
        with FileSystems.open(uri, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            yield from self._counted(iter(lambda: handle.read(READ_CHUNK), b""))

    def _counted(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self._bytes.inc(len(chunk))
            yield chunk


class ReadHistory(beam.PTransform):
    """PBegin -> (history records as PubsubMessages, SOURCE_UNREADABLE dead letters) of every object under
    `uri` (s3://BUCKET/PREFIX, gs://..., or a local folder). `credentials_secret`: pipeline.aws_credentials."""

    def __init__(self, uri: str, backfill_run_id: str, credentials_secret: str | None = None,
                 s3_settings: dict[str, Any] | None = None) -> None:  # fmt: skip
        super().__init__()
        self.uri = uri
        self.backfill_run_id = backfill_run_id
        self.credentials_secret = credentials_secret
        self.s3_settings = s3_settings  # boto3 client arguments from Beam's --s3_* flags (s3_client_settings)

    def expand(self, pbegin: beam.pvalue.PBegin) -> tuple[beam.PCollection, beam.PCollection]:
        read = (
            pbegin
            | "Prefix" >> beam.Create([self.uri])
            | "ListObjects" >> beam.ParDo(ListObjectsFn(self.credentials_secret))
            # Listing is one step; reading is spread over workers, an object each.
            | "SpreadObjects" >> beam.Reshuffle()
            | "ReadRecords"
            >> beam.ParDo(
                ReadObjectRecordsFn(self.backfill_run_id, self.credentials_secret, self.s3_settings)
            ).with_outputs(DEAD_LETTER, main="messages")
        )
        return read.messages, read[DEAD_LETTER]
