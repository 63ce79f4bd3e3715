"""Local-mode glue for Beam's DirectRunner: its Pub/Sub read, and credentials. Used only on the local stack.

Each override replaces a private hook of Beam 2.77's DirectRunner;
tests/workbench/pipeline_run/test_beam_private_hooks.py fails when Beam moves one.

Why each override exists (each measured on this project's machines):
- The DirectRunner's Pub/Sub read (`_PubSubReadEvaluator`) pulls at most 10 messages per bundle with a 30 s
  long-poll: ~130 msg/s. Here a bundle pulls up to `pull_size` messages with a short poll, through a channel
  without gRPC's 4 MiB receive limit (the emulator client keeps it; oversize messages would fail every pull).
- A streaming DirectRunner never ends on its own. The reader here ends the input when asked (`request_stop`,
  e.g. on Ctrl-C) or when nothing arrived for `idle_seconds`: it then stops pulling and releases its watermark,
  the watermark reaches the end of the global window, every drain timer fires (buffered files are written,
  rows flushed) and `wait_until_finish()` returns. That is a drain, not a cancel.
- The DirectRunner loses metric updates: its per-thread state sampler caches each step's scoped states with
  the MetricsContainer of the step's first bundle, while every later bundle commits a fresh, empty container
  (measured: a counter reports the first bundle only). Locally each (thread, step) gets one container, reset
  at every bundle start, so each commit carries exactly that bundle's updates and the counters add up.
- The DirectRunner introspects a stateful DoFn's signature (`userstate.get_dofn_specs`) for every bundle of every
  key, ~1.5 ms each; with per-key bundles that was a third of the local run's time. Locally the answer is cached
  per DoFn class (the specs are the class's method defaults, the same for every bundle).
- Beam's evaluator acks a pull before its bundle is processed: at-most-once if the process dies. Here nothing
  is acked on pull: every message waits in an AckLedger (ack_ledger.py) until each sink it goes to has committed
  it (pipeline.delivery), its lease extended meanwhile; the reader pulls only while the ledger has
  room (flow control), and "idle" means nothing arrived *and* nothing is outstanding. Pull and ack errors
  (an emulator restarting) are waited out for `source_retry_seconds` (SourceHealth), after which the run stops:
  an emulator gone for good must not keep a run retrying forever. On Dataflow the runner's own Pub/Sub source acks
  after the bundle commits; none of this module is used there.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC

from endpoints.pubsub import subscriber_client
from pipeline import delivery
from workbench.pipeline_run.ack_ledger import AckLedger
from workbench.pipeline_run.source_health import DEFAULT_SOURCE_RETRY_S, SourceHealth

DEFAULT_PULL_SIZE = 1000  # the emulator's (and Pub/Sub's) cap per pull
PULL_TIMEOUT_S = 2.0  # short: an idle reader checks the stop flag at least this often
# Flow control: messages read but not yet committed by every sink. The file buffers hold up to
# rate x --file_flush_seconds of them, so this caps throughput at about MAX_OUTSTANDING / flush seconds.
DEFAULT_MAX_OUTSTANDING = 20_000
DEFAULT_MAX_OUTSTANDING_BYTES = 256 * 1024 * 1024


@dataclass
class ReadControl:
    """Shared between the reader (in the runner's threads) and whoever runs the pipeline."""

    pull_size: int = DEFAULT_PULL_SIZE
    idle_seconds: float | None = None
    max_outstanding: int = DEFAULT_MAX_OUTSTANDING
    max_outstanding_bytes: int = DEFAULT_MAX_OUTSTANDING_BYTES
    stop: threading.Event = field(default_factory=threading.Event)
    started_at: float = field(default_factory=time.monotonic)
    last_message_at: float | None = None
    messages: int = 0
    stop_reason: str | None = None
    ledger: AckLedger | None = None  # created at the first pull (it needs the subscription)
    unacked_at_exit: int = 0  # messages left unacknowledged when the run ended (Pub/Sub redelivers them)
    pull_error: str | None = None  # the last pull's error while Pub/Sub is unreachable, else None
    source: SourceHealth = field(default_factory=SourceHealth)  # pulls, acks and extensions: does Pub/Sub answer?
    source_retry_seconds: float | None = DEFAULT_SOURCE_RETRY_S  # how long an outage is ridden out (None: forever)
    source_lost: str | None = None  # set when the run stopped because Pub/Sub stayed unreachable: its last error
    # At-most-once, as Beam's own DirectRunner reader: ack on pull. Only a baseline for benchmarks to compare with.
    ack_on_pull: bool = False
    # `workbench exec`: a user's own pipeline, whose sinks report no commits (pipeline.delivery). Everything read is
    # held unacknowledged until the run has drained (acknowledge_run): the read stops at max_outstanding instead of
    # waiting for acks that cannot come, and "idle" ignores what is outstanding.
    ack_after_run: bool = False
    read_ids: list[str] = field(default_factory=list)  # with ack_after_run: every message id read, in pull order
    # `workbench exec`: the read's watermark is the publish time of the oldest message of the latest pull, and the
    # wall clock once a pull finds the subscription empty, as Dataflow estimates it from the backlog; with the wall
    # clock throughout (Beam's DirectRunner reader, and run-pipeline, whose pipeline has no event-time windows) a
    # user's event-time windows would drop every message of a backlog that the clock has passed.
    publish_time_watermark: bool = False
    oldest_unread: object = None  # with publish_time_watermark: that watermark while a backlog is read (a Timestamp)
    caught_up: bool = False  # the latest pull found the subscription empty

    def request_stop(self, reason: str = "requested") -> None:
        if not self.stop.is_set():
            self.stop_reason = reason
            self.stop.set()

    def idle_for(self) -> float:
        return time.monotonic() - (self.last_message_at or self.started_at)


_control: ReadControl | None = None
_clients: dict[str, object] = {}
_lock = threading.Lock()


def _subscriber(emulator_host: str | None):
    """One client per emulator (or real Pub/Sub) for the run, closed when it ends."""
    key = emulator_host or ""
    with _lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = subscriber_client(emulator_host)
        return client


def _ledger(control: ReadControl, client, subscription: str) -> AckLedger:
    """The run's ledger, made at the first pull: acks and lease extensions go to `subscription`."""
    if control.ledger is None:
        try:
            deadline = client.get_subscription(request={"subscription": subscription}, timeout=5).ack_deadline_seconds
        except Exception:
            deadline = 10  # Pub/Sub's default; the first extension then comes early, never late
        control.ledger = AckLedger(
            lambda ids: client.acknowledge(
                request={"subscription": subscription, "ack_ids": ids}, retry=None, timeout=10
            ),
            lambda ids, seconds: client.modify_ack_deadline(
                request={"subscription": subscription, "ack_ids": ids, "ack_deadline_seconds": seconds},
                retry=None,
                timeout=10,
            ),
            ack_deadline_seconds=float(deadline or 10),
            max_messages=control.max_outstanding,
            max_bytes=control.max_outstanding_bytes,
            source=control.source,
        ).start()
        delivery.install(control.ledger)
    return control.ledger


def _pull(evaluator, control: ReadControl) -> list:
    from apache_beam.io.gcp.pubsub import PubsubMessage
    from apache_beam.utils.timestamp import Timestamp
    from google.api_core import exceptions

    client = _subscriber(os.environ.get("PUBSUB_EMULATOR_HOST"))
    subscription = evaluator._sub_name
    ledger = _ledger(control, client, subscription)
    if not ledger.room():  # flow control: the sinks are behind (or down); the backlog waits in Pub/Sub
        if control.ack_after_run:  # nothing is acked before the end: a full ledger ends the read
            control.request_stop("reached --max-unacked, the most one run holds unacknowledged; run again for the rest")
            return []
        control.last_message_at = time.monotonic()
        time.sleep(0.05)
        return []
    try:
        response = client.pull(
            request={"subscription": subscription, "max_messages": _pull_size(control, ledger)},
            retry=None,
            timeout=PULL_TIMEOUT_S,
        )
    except exceptions.DeadlineExceeded:
        response = None
    except (exceptions.GoogleAPICallError, exceptions.RetryError) as exc:  # Pub/Sub restarting or unreachable
        control.pull_error = f"{type(exc).__name__}: {exc}"[:200]
        control.source.failed(control.pull_error)
        control.last_message_at = time.monotonic()  # unreachable is not idle
        time.sleep(0.5)
        return []
    control.pull_error = None
    if response is not None:  # an answer (a timeout is not one, nor a failure: real Pub/Sub times out when idle)
        control.source.answered()
    # The raw protobuf messages: proto-plus attribute access costs more than the rest of the read together.
    received = type(response).pb(response).received_messages if response is not None else ()
    control.caught_up = not received
    if not received:
        if ledger.outstanding() and not control.ack_after_run:  # not idle while sinks still work on what was read
            control.last_message_at = time.monotonic()
        return []
    if control.ack_on_pull:
        client.acknowledge(request={"subscription": subscription, "ack_ids": [m.ack_id for m in received]})
    else:
        ledger.received((m.message.message_id, m.ack_id, m.message.ByteSize()) for m in received)
        if control.ack_after_run:
            control.read_ids.extend(m.message.message_id for m in received)
    results = []
    timestamp_attribute = getattr(evaluator.source, "timestamp_attribute", None)
    for item in received:
        raw = item.message
        published = raw.publish_time.ToDatetime(tzinfo=UTC)
        message = PubsubMessage(raw.data, dict(raw.attributes), raw.message_id or None, published)
        # Element timestamp = publish time, as Beam's reader sets it (the read's watermark is the wall clock) ...
        timestamp = Timestamp.from_utc_datetime(published)
        if timestamp_attribute and timestamp_attribute in message.attributes:  # ... or ReadFromPubSub's attribute
            timestamp = attribute_timestamp(message.attributes[timestamp_attribute])
        results.append((timestamp, message))
    control.messages += len(results)
    control.last_message_at = time.monotonic()
    return results


def attribute_timestamp(value: str):
    """An element's timestamp from ReadFromPubSub(timestamp_attribute=...)'s attribute, read as Beam 2.77's
    DirectRunner reads it (transform_evaluator._PubSubReadEvaluator._read_from_pubsub): milliseconds since the
    epoch, else RFC 3339, kept to microseconds."""
    from apache_beam.utils.timestamp import Timestamp

    try:
        timestamp = Timestamp(micros=int(value) * 1000)
    except ValueError:
        try:
            timestamp = Timestamp.from_rfc3339(value)
        except ValueError as exc:
            raise ValueError(f"Bad timestamp value: {exc}") from None
    if timestamp.precision() > Timestamp.MICROS_PRECISION:
        timestamp = timestamp.to_precision(Timestamp.MICROS_PRECISION, allow_lossy_conversion=True)
    return timestamp


def _finish_bundle(evaluator):
    from apache_beam import pvalue
    from apache_beam.runners.direct.util import TransformResult
    from apache_beam.transforms.window import GlobalWindows
    from apache_beam.utils.timestamp import MAX_TIMESTAMP

    control = _control
    if control is None or control.stop.is_set():
        # No unprocessed bundle and no hold: this source is done; the watermark goes to +inf (drain).
        return TransformResult(evaluator, [], [], None, {None: MAX_TIMESTAMP})
    data = _pull(evaluator, control)
    if not data and control.idle_seconds is not None and control.idle_for() >= control.idle_seconds:
        control.request_stop(f"no message for {control.idle_seconds:g} s")
    bundles = []
    if data:
        output = next(iter(evaluator._outputs))
        bundle = evaluator._evaluation_context.create_bundle(output)
        with_attributes = evaluator.source.with_attributes
        for timestamp, message in data:
            bundle.output(GlobalWindows.windowed_value(message if with_attributes else message.data, timestamp))
        bundles.append(bundle)
    applied = evaluator._applied_ptransform
    input_pvalue = applied.inputs[0] if applied.inputs else pvalue.PBegin(applied.transform.pipeline)
    unprocessed = evaluator._evaluation_context.create_bundle(input_pvalue)
    return TransformResult(evaluator, bundles, [unprocessed], None, {None: _watermark(control, data)})


def _pull_size(control: ReadControl, ledger: AckLedger) -> int:
    """A pull's size; with ack_after_run never past max_outstanding, which is then exactly what one run reads."""
    if not control.ack_after_run:
        return control.pull_size
    return max(1, min(control.pull_size, control.max_outstanding - ledger.outstanding()))


def _watermark(control: ReadControl, data: list):
    from apache_beam.utils.timestamp import Timestamp

    now = Timestamp.of(time.time())
    if not control.publish_time_watermark:
        return now
    if data:
        control.oldest_unread = min(timestamp for timestamp, _ in data)
    elif control.caught_up:
        control.oldest_unread = None
    return now if control.oldest_unread is None else min(control.oldest_unread, now)


_containers: dict[tuple[int, str], object] = {}


def _bundle_metrics_container(step_name: str):
    """The executor's per-bundle container: the same object per (thread, step), emptied for each bundle."""
    from apache_beam.metrics.execution import MetricsContainer

    key = (threading.get_ident(), step_name)
    container = _containers.get(key)
    if container is None:
        container = _containers[key] = MetricsContainer(step_name)
    else:
        container.reset()
    return container


@contextlib.contextmanager
def per_bundle_metrics() -> Iterator[None]:
    """Within this block the DirectRunner counts every bundle's metrics, not only each thread's first."""
    from apache_beam.runners.direct import executor

    original = executor.MetricsContainer
    executor.MetricsContainer = _bundle_metrics_container
    try:
        yield
    finally:
        executor.MetricsContainer = original
        _containers.clear()


@contextlib.contextmanager
def cached_dofn_specs() -> Iterator[None]:
    """Within this block Beam computes each DoFn class's state and timer specs once."""
    from apache_beam.runners.direct import transform_evaluator
    from apache_beam.transforms import userstate

    original = userstate.get_dofn_specs
    cache: dict[type, tuple] = {}

    def get_dofn_specs(dofn):
        kind = type(dofn)
        specs = cache.get(kind)
        if specs is None:
            specs = cache[kind] = original(dofn)
        return specs

    def is_stateful_dofn(dofn) -> bool:
        state_specs, timer_specs = get_dofn_specs(dofn)
        return bool(state_specs or timer_specs)

    patched = [
        (userstate, "get_dofn_specs", get_dofn_specs),
        (userstate, "is_stateful_dofn", is_stateful_dofn),
        (transform_evaluator, "get_dofn_specs", get_dofn_specs),
        (transform_evaluator, "is_stateful_dofn", is_stateful_dofn),
    ]
    saved = [(module, name, getattr(module, name)) for module, name, _ in patched]
    for module, name, replacement in patched:
        setattr(module, name, replacement)
    try:
        yield
    finally:
        for module, name, value in saved:
            setattr(module, name, value)


def acknowledge_run(control: ReadControl) -> int:
    """With ack_after_run: release everything the run read (the pipeline finished, so every sink has written it);
    the ledger acks it as it closes. Returns how many messages were released."""
    if control.ledger is None or not control.read_ids:
        return 0
    released, control.read_ids = control.read_ids, []
    control.ledger.release(released)
    return len(released)


@contextlib.contextmanager
def local_direct_runner(control: ReadControl) -> Iterator[ReadControl]:
    """Within this block the DirectRunner reads Pub/Sub through `control` (pull size, idle stop, stop flag) and
    counts every bundle's metrics."""
    global _control
    from apache_beam.runners.direct.transform_evaluator import _PubSubReadEvaluator

    original_finish = _PubSubReadEvaluator.finish_bundle
    _control = control
    _PubSubReadEvaluator.finish_bundle = _finish_bundle
    try:
        with per_bundle_metrics(), cached_dofn_specs():
            yield control
    finally:
        _PubSubReadEvaluator.finish_bundle = original_finish
        _control = None
        delivery.install(None)
        if control.ledger is not None:
            # Acks cannot reach a Pub/Sub that is gone: a short last try, not the usual 10 s.
            control.unacked_at_exit = control.ledger.close(timeout=2.0 if control.source_lost else 10.0)
        with _lock:
            for client in _clients.values():
                with contextlib.suppress(Exception):
                    client.close()
            _clients.clear()
