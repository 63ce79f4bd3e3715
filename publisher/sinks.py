"""Where published messages go: a Pub/Sub topic (emulator or real), a file of JSON lines, or S3 objects.

Every sink takes OutgoingMessage objects and report each outcome through one callback,
`on_done(message, outcome, message_id, latency_seconds)`, so the publisher's pacing, statistics and
manifest do not care which sink runs.

The file format is one JSON object per line in Pub/Sub's REST shape, {"data": base64, "attributes": {...}},
so malformed payloads (invalid UTF-8, embedded newlines) survive byte for byte and a file can be replayed.

The S3 sink (publisher/s3.py, laid out by publisher/objects.py) writes history the way exports hold it: the
payloads alone, as newline-delimited JSON, JSON arrays or an object per event, optionally gzip-compressed.
"""

from __future__ import annotations

import base64
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from publisher.errors import PublishError
from publisher.manifest import PUBLISHED
from publisher.s3 import S3Target, SinkContext

# (message, outcome, message_id, latency in seconds or None where there is no round trip to time)
OnDone = Callable[[Any, str, str | None, float | None], None]

# Batching: 1,000 messages is Pub/Sub's per-request maximum; 5 MB stays well under its 10 MB request limit;
# 50 ms bounds the latency batching adds at low rates.
BATCH_MAX_MESSAGES = 1000
BATCH_MAX_BYTES = 5 * 1024 * 1024
BATCH_MAX_LATENCY_S = 0.05
# Flow control: block the producer instead of buffering without bound when the topic cannot keep up.
FLOW_MAX_MESSAGES = 20_000
PREFLIGHT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class FileTarget:
    path: str  # "-" is standard output


@dataclass(frozen=True)
class PubSubTarget:
    project: str
    topic: str
    emulator_host: str | None  # host:port of an emulator, or None for real Pub/Sub with ADC


class FileSink:
    def __init__(self, target: FileTarget, on_done: OnDone) -> None:
        self._on_done = on_done
        if target.path == "-":
            self._file: IO[bytes] = sys.stdout.buffer
            self._owned = False
        else:
            self._file = open_for_append(target.path)
            self._owned = True

    def send(self, message: Any) -> None:
        self._file.write(
            orjson.dumps({"data": base64.b64encode(message.data).decode("ascii"), "attributes": message.attributes})
        )
        self._file.write(b"\n")
        self._on_done(message, PUBLISHED, None, None)

    def close(self, timeout: float) -> None:
        self._file.flush()
        if self._owned:
            self._file.close()


def open_for_append(path: str) -> IO[bytes]:
    """Open --to FILE, or explain why it cannot be written and what to do."""
    target = Path(path)
    if target.is_dir():
        raise PublishError(f"--to {path} is a directory", f"name a file inside it, e.g. --to {target / 'run.jsonl'}")
    if not target.parent.exists():
        raise PublishError(
            f"--to {path}: the folder {target.parent} does not exist", f"create it first: mkdir -p {target.parent}"
        )
    try:
        return target.open("ab", buffering=1 << 16)
    except OSError as exc:
        raise PublishError(
            f"--to {path} cannot be written: {exc.strerror}", "choose a writable path, or --to - for standard output"
        ) from None


class PubSubSink:
    """Publishes through publisher.pubsub (raw protobuf batches, retries, flow control).

    Transient errors (UNAVAILABLE, DEADLINE_EXCEEDED, ...) are retried with backoff up to the batch deadline;
    a message that still fails is reported as failed and recorded so, never dropped silently.
    """

    def __init__(self, target: PubSubTarget, on_done: OnDone) -> None:
        from endpoints.pubsub import pubsub_channel
        from publisher.pubsub import BatchPublisher, BatchSettings

        self._channel = pubsub_channel(target.emulator_host)
        self._publisher = BatchPublisher(
            self._channel,
            f"projects/{target.project}/topics/{target.topic}",
            on_done,
            BatchSettings(
                max_messages=BATCH_MAX_MESSAGES,
                max_bytes=BATCH_MAX_BYTES,
                max_latency_s=BATCH_MAX_LATENCY_S,
                max_outstanding_messages=FLOW_MAX_MESSAGES,
            ),
        )

    def send(self, message: Any) -> None:
        self._publisher.send(message)

    def close(self, timeout: float) -> None:
        """Flush every batch and wait (up to timeout) until each message has an outcome."""
        try:
            self._publisher.close(timeout)
        finally:
            self._channel.close()


Target = FileTarget | PubSubTarget | S3Target


def make_sink(target: Target, on_done: OnDone, context: SinkContext | None = None) -> Any:
    if isinstance(target, FileTarget):
        return FileSink(target, on_done)
    if isinstance(target, S3Target):
        from publisher.s3 import S3Sink

        if context is None:
            raise ValueError("an S3 sink needs its run's SinkContext (run id, manifest directory, count, seed)")
        return S3Sink(target, on_done, context)
    return PubSubSink(target, on_done)


def target_kind(target: Target) -> str:
    """The manifest's target.kind: file | pubsub | s3 (reconcile reads it)."""
    if isinstance(target, FileTarget):
        return "file"
    return "s3" if isinstance(target, S3Target) else "pubsub"


def check_pubsub(target: PubSubTarget, timeout: float = PREFLIGHT_TIMEOUT_S) -> None:
    """Fail fast, with the fix, when the emulator is down, the topic is missing or credentials are absent."""
    if target.emulator_host:
        _check_listening(target.emulator_host, timeout)
    from google.api_core import exceptions
    from google.auth.exceptions import DefaultCredentialsError
    from google.cloud import pubsub_v1
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

    from endpoints.pubsub import pubsub_channel

    topic_path = f"projects/{target.project}/topics/{target.topic}"
    where = f"the emulator at {target.emulator_host}" if target.emulator_host else f"project {target.project}"
    channel = None
    try:
        # The same channel the sink will use: an emulator is reached without touching PUBSUB_EMULATOR_HOST.
        channel = pubsub_channel(target.emulator_host)
        client = pubsub_v1.PublisherClient(transport=PublisherGrpcTransport(channel=channel))
        client.get_topic(request={"topic": topic_path}, retry=None, timeout=timeout)
    except DefaultCredentialsError:
        raise PublishError(
            "no Google Cloud credentials found for real Pub/Sub",
            "run `gcloud auth application-default login`, or use the local stack: `workbench up` and --emulator",
        ) from None
    except exceptions.NotFound:
        create = (
            "`workbench up` creates it on the local stack"
            if target.emulator_host
            else f"gcloud pubsub topics create {target.topic} --project {target.project}"
        )
        raise PublishError(f"topic {target.topic!r} does not exist in {where}", create) from None
    except exceptions.PermissionDenied as exc:
        raise PublishError(
            f"not allowed to use topic {topic_path}: {exc.message}",
            "grant roles/pubsub.publisher (and roles/pubsub.viewer for the check) to your account",
        ) from None
    except (exceptions.DeadlineExceeded, exceptions.ServiceUnavailable, exceptions.RetryError) as exc:
        raise PublishError(
            f"Pub/Sub at {where} did not answer within {timeout:g}s ({type(exc).__name__})", _START_HINT
        ) from None
    finally:
        if channel is not None:
            channel.close()


_START_HINT = (
    "start the local stack with `workbench up` (or `workbench emulator pubsub`), or point --emulator / "
    "PUBSUB_EMULATOR_HOST at a running emulator"
)


def _check_listening(host_port: str, timeout: float) -> None:
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise PublishError(f"emulator address {host_port!r} is not HOST:PORT", "write e.g. --emulator 127.0.0.1:8085")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=min(timeout, 2.0)):
            pass
    except OSError as exc:
        raise PublishError(
            f"no Pub/Sub emulator is listening at {host_port} ({exc.strerror or exc})", _START_HINT
        ) from None
