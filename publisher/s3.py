"""The S3 sink: a history run written as objects (publisher/objects.py says which and how), and its preflight.

boto3 is configured the usual AWS way and only that way: credentials from the environment, a profile or an
instance role; the region from AWS_REGION / AWS_DEFAULT_REGION; the endpoint from AWS_ENDPOINT_URL or
AWS_ENDPOINT_URL_S3 (boto3 reads both itself), which is how the local S3 server is reached. One client per
run, made by endpoints/s3.py: every call has a connect and read timeout and a bounded number of attempts.

    check_s3(S3Target("s3://history/exports"))        # PublishError with the fix, before anything is written
    sink = S3Sink(target, on_done, SinkContext(run_id, directory, count=10_000, seed=7))

Objects are streamed: bodies go through a gzip compressor (when asked) into a buffer that is uploaded as one
PUT, or as the parts of a multipart upload once it passes PART_SIZE, so memory stays bounded by the open
objects' buffers whatever the run's size. The events of an object are spilled to a temporary file and recorded
in the manifest when S3 has the object (outcome published) or has refused it (failed, and the run fails).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import tempfile
import zlib
from dataclasses import dataclass, field
from typing import Any

from endpoints.s3 import environment_endpoint as endpoint_url
from endpoints.s3 import s3_client as make_s3_client
from eventmodel import history
from eventmodel.resources import S3_RUN_ID_METADATA
from publisher import objects as layout
from publisher.errors import PublishError
from publisher.manifest import FAILED, PUBLISHED, ObjectLog, Placed

PART_SIZE = 8 * 1024 * 1024  # S3's multipart parts are 5 MiB..5 GiB (the last may be smaller)
MAX_PARTS = 10_000  # S3's limit: with 8 MiB parts an object may reach 80 GB
SPILL_IN_MEMORY = 1 << 20  # an object's pending manifest rows stay in memory up to 1 MB, then go to disk
RUN_ID_METADATA = S3_RUN_ID_METADATA  # x-amz-meta-workbench-run-id on every object


@dataclass(frozen=True)
class S3Target:
    uri: str  # s3://BUCKET/PREFIX; the run's objects go under PREFIX/RUN_ID/
    format: str = layout.NDJSON  # ndjson | array | per-event | mixed
    compression: str = layout.NONE  # none | gzip | mixed
    objects: int = 1  # how many spans the run's events are cut into (skewed sizes)
    split_by_type: bool = False  # one object per event type in each span, under PREFIX/RUN/TYPE/

    def check(self, count: int | None, workers: int) -> None:
        """ValueError naming the fix for a bad combination (PublishPlan.check calls it)."""
        layout.parse_s3_uri(self.uri)
        if self.format not in layout.FORMATS:
            raise ValueError(f"--format must be one of {', '.join(layout.FORMATS)}, got {self.format!r}")
        if self.compression not in layout.COMPRESSIONS:
            raise ValueError(f"--compression must be one of {', '.join(layout.COMPRESSIONS)}")
        if count is None:
            raise ValueError("--to s3:// needs --count: the objects are sized from it (add e.g. --count 100000)")
        if workers != 1:
            raise ValueError("--workers applies to Pub/Sub; S3 objects are written by one process (drop --workers)")
        layout.span_sizes(count, self.objects, 0)  # --objects within 1..--count


@dataclass(frozen=True)
class SinkContext:
    """What a sink may need of its run beyond the target."""

    run_id: str
    directory: Any  # pathlib.Path of the run's manifest directory
    count: int | None = None
    seed: int = 0
    worker: int = 0


def s3_client(**settings: Any) -> Any:
    """endpoints.s3's client from the usual AWS environment; `settings` (boto3's client arguments: endpoint_url,
    region_name, keys) override the environment, as Beam's --s3_* flags do. PublishError with the fix when boto3
    cannot make one."""
    try:
        return make_s3_client(**settings)
    except ImportError:
        raise PublishError("--to s3:// needs boto3, which is not installed", "pip install boto3") from None
    except Exception as exc:  # a missing profile, a malformed config file: botocore's own words, with the fix
        raise PublishError(f"cannot configure the S3 client: {exc}", _CREDENTIALS_HINT) from None


_CREDENTIALS_HINT = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), or use the local S3 server: "
    '`workbench up --s3` and `eval "$(workbench env)"`'
)
_START_HINT = (
    'start the local S3 server (`workbench up --s3`, then `eval "$(workbench env)"`), or point '
    "AWS_ENDPOINT_URL at a running one (unset it for AWS itself)"
)


WRITER_PERMISSIONS = "s3:ListBucket, s3:PutObject and s3:AbortMultipartUpload"
READER_PERMISSIONS = "s3:ListBucket and s3:GetObject"


def explain(exc: BaseException, bucket: str, needs: str = WRITER_PERMISSIONS) -> PublishError | None:
    """The PublishError (what happened and the fix) for a botocore failure, or None for anything else."""
    from botocore import exceptions as bx

    where = f"S3 at {endpoint_url()}" if endpoint_url() else "AWS S3"
    if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError | bx.ProfileNotFound):
        return PublishError(f"no usable AWS credentials for {where} ({exc})", _CREDENTIALS_HINT)
    if isinstance(exc, bx.EndpointConnectionError | bx.ConnectTimeoutError | bx.ReadTimeoutError |
                  bx.ConnectionClosedError):  # fmt: skip
        return PublishError(f"{where} did not answer ({type(exc).__name__}: {exc})", _START_HINT)
    if isinstance(exc, bx.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        if code in ("404", "NoSuchBucket"):
            create = f"aws s3 mb s3://{bucket}" + (f" --endpoint-url {endpoint_url()}" if endpoint_url() else "")
            return PublishError(f"bucket {bucket!r} does not exist in {where}", f"create it first: {create}")
        if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return PublishError(
                f"{where} refused access to bucket {bucket!r} ({code})",
                f"check the credentials, and grant {needs} on it",
            )
        return PublishError(f"{where} refused a request on bucket {bucket!r}: {code} {error.get('Message', '')}",
                            "see the error above; the manifest records what was written")  # fmt: skip
    if isinstance(exc, bx.BotoCoreError):
        return PublishError(f"{where}: {exc}", _START_HINT)
    return None


def check_s3(target: S3Target, client: Any = None, needs: str = WRITER_PERMISSIONS) -> None:
    """Fail fast, with the fix, when the endpoint does not answer, credentials are missing or the bucket is not
    there. Bounded by the client's timeouts and attempts (a few seconds when nothing listens)."""
    bucket = layout.parse_s3_uri(target.uri).bucket
    client = client or s3_client()
    try:
        client.head_bucket(Bucket=bucket)
    except Exception as exc:
        error = explain(exc, bucket, needs)
        if error is None:
            raise
        raise error from None


class ObjectWriter:
    """One object, streamed: optional gzip, one PUT when small, a multipart upload once past PART_SIZE."""

    def __init__(self, client: Any, bucket: str, key: str, gzip: bool, content_type: str,
                 metadata: dict[str, str]) -> None:  # fmt: skip
        self._client, self.bucket, self.key = client, bucket, key
        self._put_args = {"ContentType": content_type, "Metadata": metadata}
        # wbits 31: a gzip stream (header, deflate, CRC32 and size trailer), what `gzip -d` and Beam read.
        self._compressor = zlib.compressobj(6, zlib.DEFLATED, 31) if gzip else None
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._md5 = hashlib.md5(usedforsecurity=False)
        self.raw_bytes = 0
        self.stored_bytes = 0

    def write(self, chunk: bytes) -> None:
        self.raw_bytes += len(chunk)
        self._md5.update(chunk)
        self._buffer += self._compressor.compress(chunk) if self._compressor else chunk
        while len(self._buffer) >= PART_SIZE:
            part = bytes(self._buffer[:PART_SIZE])
            del self._buffer[:PART_SIZE]
            self._upload_part(part)

    def _upload_part(self, body: bytes) -> None:
        if self._upload_id is None:
            self._upload_id = self._client.create_multipart_upload(Bucket=self.bucket, Key=self.key,
                                                                   **self._put_args)["UploadId"]  # fmt: skip
        number = len(self._parts) + 1
        if number > MAX_PARTS:
            raise PublishError(f"object {self.key} would need more than {MAX_PARTS} parts",
                               "spread the run over more objects (--objects)")  # fmt: skip
        answer = self._client.upload_part(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id,
                                          PartNumber=number, Body=body)  # fmt: skip
        self._parts.append({"PartNumber": number, "ETag": answer["ETag"]})
        self.stored_bytes += len(body)

    def finish(self) -> None:
        if self._compressor:
            self._buffer += self._compressor.flush()
        body = bytes(self._buffer)
        self._buffer.clear()
        if self._upload_id is None:
            self._client.put_object(Bucket=self.bucket, Key=self.key, Body=body, **self._put_args)
            self.stored_bytes += len(body)
            return
        if body:
            self._upload_part(body)
        self._client.complete_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id,
                                               MultipartUpload={"Parts": self._parts})  # fmt: skip

    def abort(self) -> None:
        """Drop a half-written multipart upload, so S3 keeps (and bills) no orphan parts. Best effort."""
        if self._upload_id is not None:
            # The run is failing already; an AbortIncompleteMultipartUpload lifecycle rule reaps what is left.
            with contextlib.suppress(Exception):
                self._client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id)

    @property
    def raw_md5(self) -> str:
        return self._md5.hexdigest()


@dataclass
class _OpenObject:
    writer: ObjectWriter
    uri: str
    span: int
    format: str
    gzip: bool
    event_type: str | None
    records: int = 0
    spill: Any = field(default=None)
    spill_writer: Any = field(default=None)

    def __post_init__(self) -> None:
        # Closed by S3Sink._record once the object's outcome is recorded.
        self.spill = tempfile.SpooledTemporaryFile(SPILL_IN_MEMORY, mode="w+", newline="")  # noqa: SIM115
        self.spill_writer = csv.writer(self.spill)

    def append(self, message: Any) -> None:
        index = self.records
        self.writer.write(layout.frame(self.format, index, message.data))
        # The manifest names the record as the backfill will: by natural key, or by its place when it is no event.
        event_id = history.identity(message.data, self.uri, index)
        placed = Placed.of(message, self.uri, layout.line_of(self.format, index), index, event_id)
        self.spill_writer.writerow(placed.as_row())
        self.records += 1

    def placed(self) -> Any:
        """The spilled events of this object, in order (read back once, when its outcome is known)."""
        self.spill.seek(0)
        for row in csv.reader(self.spill):
            yield Placed.from_row(row)


class S3Sink:
    """Writes a run's messages into S3 objects laid out by publisher/objects.py; see the module docstring."""

    def __init__(self, target: S3Target, on_done: Any, context: SinkContext, client: Any = None) -> None:
        if context.count is None:
            raise PublishError("an S3 run needs a --count", "add e.g. --count 100000")
        self._on_done = on_done
        self._client = client or s3_client()
        location = layout.parse_s3_uri(target.uri)
        self._bucket = location.bucket
        self._prefix = layout.run_prefix(target.uri, context.run_id)
        self._metadata = {RUN_ID_METADATA: context.run_id}
        self._split = target.split_by_type
        self._sizes = layout.span_sizes(context.count, target.objects, context.seed)
        self._formats = layout.span_formats(self._sizes, target.format, context.seed)
        self._gzip = layout.CompressionChooser(target.compression, context.seed)
        self._log = ObjectLog(context.directory, context.worker)
        self._span = 0
        self._in_span = 0
        self._singles = 0  # per-event objects of the current span
        self._open: dict[tuple[str, str | None], _OpenObject] = {}
        self._broken = False

    def send(self, message: Any) -> None:
        if self._broken:
            raise PublishError("the S3 sink stopped after an earlier error", "see the first error")
        if self._span >= len(self._sizes):
            raise PublishError(f"more messages than the {sum(self._sizes)} the objects were sized for",
                               "this is a bug: the run's --count bounds what is sent")  # fmt: skip
        fmt = layout.placement(self._formats[self._span], message.data)
        event_type = message.event_type if self._split else None
        try:
            if fmt == layout.PER_EVENT:
                single = self._new_object(layout.PER_EVENT, event_type, record=self._singles)
                self._singles += 1
                single.append(message)
                self._finish(single)
            else:
                current = self._open.get((fmt, event_type))
                if current is None:
                    current = self._open[(fmt, event_type)] = self._new_object(fmt, event_type)
                current.append(message)
        except Exception as exc:
            self._fail(exc)
        self._in_span += 1
        if self._in_span == self._sizes[self._span]:
            self._end_span()

    def _new_object(self, fmt: str, event_type: str | None, record: int | None = None) -> _OpenObject:
        gzip = self._gzip.next()
        key = layout.object_key(self._prefix, self._span, fmt, gzip, event_type, record)
        writer = ObjectWriter(self._client, self._bucket, key, gzip, layout.content_type(fmt, gzip), self._metadata)
        return _OpenObject(writer, f"s3://{self._bucket}/{key}", self._span, fmt, gzip, event_type)

    def _end_span(self) -> None:
        # Sorted, so that the objects of a span finish in the same order for a seed.
        try:
            for key in sorted(self._open, key=lambda k: (k[0], k[1] or "")):
                self._finish(self._open.pop(key))
        except Exception as exc:
            self._fail(exc)
        self._span += 1
        self._in_span = 0
        self._singles = 0

    def _finish(self, obj: _OpenObject) -> None:
        try:
            obj.writer.write(layout.closing(obj.format, obj.records))
            obj.writer.finish()
        except BaseException:
            obj.writer.abort()
            self._record(obj, FAILED)
            raise
        self._record(obj, PUBLISHED)

    def _record(self, obj: _OpenObject, outcome: str) -> None:
        for placed in obj.placed():
            self._on_done(placed, outcome, None, None)
        obj.spill.close()
        writer = obj.writer
        self._log.record(object_uri=obj.uri, key=writer.key, span=obj.span, format=obj.format,
                         gzip="1" if obj.gzip else "", event_type=obj.event_type, records=obj.records,
                         raw_bytes=writer.raw_bytes, stored_bytes=writer.stored_bytes, raw_md5=writer.raw_md5,
                         outcome=outcome)  # fmt: skip

    def _fail(self, exc: BaseException) -> None:
        """Record every open object's events as failed, and end the run with the fix."""
        self._broken = True
        for key in list(self._open):
            obj = self._open.pop(key)
            obj.writer.abort()
            self._record(obj, FAILED)
        error = explain(exc, self._bucket)
        if error is None:
            raise exc
        raise error from None

    def close(self, timeout: float) -> None:
        """Write the objects still open (a run stopped early ends its last span where it stopped)."""
        try:
            if not self._broken and self._open:
                self._end_span()
        finally:
            self._log.close()


def manifest_fields(target: S3Target, run_id: str, written: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """What manifest.json's target says of an S3 run beyond S3Target's own fields; with the objects-*.csv rows
    (at the end of the run) also how many objects and bytes were written."""
    location = layout.parse_s3_uri(target.uri)
    fields: dict[str, Any] = {
        "bucket": location.bucket,
        "prefix": location.prefix,
        "run_prefix": f"s3://{location.bucket}/{layout.run_prefix(target.uri, run_id)}",
        "gzip": {layout.GZIP: True, layout.NONE: False}.get(target.compression),  # None: mixed, see objects
        "endpoint_url": endpoint_url(),
        "objects_file": "objects-0.csv",
        "run_id_metadata": RUN_ID_METADATA,
    }
    if written is not None:
        ok = [o for o in written if o["outcome"] == PUBLISHED]
        fields["objects_written"] = len(ok)
        fields["objects_failed"] = len(written) - len(ok)
        fields["bytes_written"] = sum(int(o["stored_bytes"]) for o in ok)
        for name, values in (("formats", [o["format"] for o in ok]), ("gzipped", [o["gzip"] for o in ok])):
            fields[name] = {v or "0": values.count(v) for v in sorted(set(values))}
    return fields
