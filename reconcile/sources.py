"""Where reconcile reads each sink: the GCS tree, the BigQuery tables and the dead-letter topic.

- The GCS tree (a local directory, or gs:// read through the google-cloud-storage client the caller passes:
  endpoints.storage.storage_client, for the emulator or GCS) is listed as Beam's FileSystems.match(root/**) lists
  it: every file under the root, its size and last update. Each file's place in the tree is judged here, once per
  file (not per line): its type folder, its minute folder, and whether its name is
  `<type>_<YYYYMMDDHHmm><NNNN>.json` of that folder.
- The BigQuery tables are read by the comparison's own SELECTs (reconcile.queries), run by BigQuery itself.
- The dead-letter topic is read through a subscription of reconcile's own (DEAD_LETTER_RECONCILE_SUBSCRIPTION,
  retaining acked messages, never expiring): reconcile seeks it back to the run's start and pulls, so it consumes
  nothing another reader needs; a lock makes a second reconcile on this machine wait, then see the same messages
  as the first. A run older than the subscription's retention (or than the subscription) is refused for the topic
  alone (DeadLetterTopicGap), never reported as missing there.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from eventmodel import resources as names
from reconcile.errors import NotYetReadable, ReconcileError

# How long a pull may wait for more dead letters once the backlog looks empty.
PULL_TIMEOUT_S = 3.0
PULL_BATCH = 1000


@dataclass(frozen=True, slots=True)
class StoredFile:
    """One file under a root: a local path or a gs:// URI, its size and when it was last written."""

    path: str
    size: int
    updated: datetime | None


def list_tree(root: str, storage: Any = None, limit: int | None = None) -> list[StoredFile]:
    """Every file under root, at any depth (the first `limit` of them, when given): a local folder (none when it
    does not exist), or gs://BUCKET[/PREFIX] through `storage`, a google-cloud-storage client (none when the bucket
    does not exist).

    The objects are those Beam's FileSystems.match([f"{root}/**"]) gives (the pipeline writes with Beam): for gs://
    every object named under "PREFIX/", for a folder every file os.walk finds, each path joined to the root as
    given. ReconcileError when the store cannot be listed.
    """
    base = root.rstrip("/")
    if not base.startswith("gs://"):
        if "://" in base:
            raise ReconcileError(f"{root}: reconcile reads a local folder or gs:// only",
                                 "name the folder, or gs://BUCKET/PREFIX, the pipeline wrote to")  # fmt: skip
        return list(itertools.islice(_walk(base or "/"), limit))
    if storage is None:
        raise ReconcileError(f"no Cloud Storage client to list {root}", "pass one (endpoints.storage.storage_client)")
    from google.api_core.exceptions import GoogleAPICallError, NotFound

    bucket, _, prefix = base[len("gs://") :].partition("/")
    try:
        listing = storage.list_blobs(bucket, prefix=f"{prefix}/" if prefix else None, max_results=limit)
        blobs = list(itertools.islice(listing, limit))  # the GCS emulator sends more than maxResults asks
    except NotFound:  # no such bucket: nothing was written there
        return []
    except (GoogleAPICallError, OSError) as exc:  # requests' ConnectionError is an OSError
        raise ReconcileError(
            f"cannot list the GCS tree at {root}: {getattr(exc, 'message', exc)}",
            "check --output-root (and, for gs:// on the local stack, that `workbench up --gcs` runs)",
        ) from None
    return [StoredFile(f"gs://{bucket}/{b.name}", int(b.size or 0), b.updated) for b in blobs]


def _walk(folder: str) -> Iterator[StoredFile]:
    for where, _, names_here in os.walk(folder):
        for name in names_here:
            path = os.path.join(where, name)
            try:
                stat = os.stat(path)
            except OSError:  # gone since it was listed
                continue
            yield StoredFile(path, stat.st_size, datetime.fromtimestamp(stat.st_mtime, UTC))


def read_stored(path: str, storage: Any = None) -> bytes:
    """A file's bytes as stored (a gzip file stays gzipped): a local path, or a gs:// object through `storage`."""
    if not path.startswith("gs://"):
        return Path(path).read_bytes()
    return _blob(path, storage).download_as_bytes(raw_download=RAW_DOWNLOAD)


# The stored bytes, never decompressed on the way: GCS serves an object with Content-Encoding: gzip decompressed
# unless the request asks for gzip (cloud.google.com/storage/docs/transcoding, "Decompressive transcoding"), and
# Beam's gs:// reads raw (apache_beam/io/gcp/gcsio.py, BeamBlobReader: raw_download=True, "we always request to
# retrieve raw data from GCS even if the object meets the criteria of decompressive transcoding"). gzip is undone
# afterwards by its magic bytes (eventmodel.history.gunzipped), as for a local file.
RAW_DOWNLOAD = True


def _blob(uri: str, storage: Any) -> Any:
    bucket, _, name = uri[len("gs://") :].partition("/")
    return storage.bucket(bucket).blob(name)


@dataclass(frozen=True, slots=True)
class EventFile:
    """One file of the GCS tree and where it sits: its type folder, its minute folder (YYYYMMDDHHmm or None
    when the path is not <type>/YYYY/MM/DD/HH/mm/<name>), and whether its name belongs to that folder."""

    uri: str
    container_type: str
    container_minute: str | None
    name_ok: bool
    updated: datetime | None
    size: int


def place_of(root: str, uri: str, gcs: Any = None) -> tuple[str, str | None, bool] | None:
    """(type, time its place says at the template's grain, place consistent) of a file under root, by the path
    templates of the contract's GCS sink (the built-in contract's by default); None when no template matches.

    >>> place_of("out", "out/order/2025/02/08/13/09/order_2025020813090001.json")
    ('order', '202502081309', True)
    """
    prefix = root.rstrip("/") + "/"
    if not uri.startswith(prefix):
        return None
    relative = uri[len(prefix) :]
    templates = (gcs or _default_gcs()).paths
    for event_type, template in templates.items():
        found = template.match(relative, event_type)
        if found is not None:
            when, consistent = found
            return event_type, when, consistent
    # In a type's own folder, with its file suffix, but not named or placed as the template says: that type's file,
    # misplaced (its events are there, in the wrong place), not a stranger to skip.
    for event_type, template in templates.items():
        head, tail = template.folder(event_type), template.suffix
        if head and relative.startswith(head) and relative.endswith(tail):
            return event_type, None, False
    return None


def _default_gcs() -> Any:
    from reconcile.contract import default_contract

    return default_contract().gcs


def list_event_files(root: str, gcs: Any = None, storage: Any = None) -> list[EventFile]:
    """Every file under root that a path template of the contract's GCS sink places, with its place and its last
    update time (`storage`: the client for a gs:// root, list_tree). Placed by processing time, a file whose place
    is further than the tolerance from its update time is judged misplaced here (name_ok false): no record says
    when it was processed."""
    gcs = gcs or _default_gcs()
    found: list[EventFile] = []
    for stored in list_tree(root, storage):
        place = place_of(root, stored.path, gcs)
        if place is None:
            continue
        event_type, when, consistent = place
        name_ok = consistent and when is not None
        if gcs.placed_by == "processing_time" and name_ok:
            name_ok = _within(when, gcs.paths[event_type].time_format, stored.updated, gcs.tolerance_s)
        elif gcs.placed_by == "unchecked":
            name_ok = consistent
        found.append(EventFile(stored.path, event_type, when, name_ok, stored.updated, stored.size))
    return found


def _within(when: str, time_format: str, updated: datetime | None, tolerance_s: float) -> bool:
    """Whether a file's place (its time, UTC) is within tolerance of when it was written."""
    if updated is None:
        return True
    try:
        placed = datetime.strptime(when, time_format).replace(tzinfo=UTC)
    except ValueError:
        return False
    return abs((updated - placed).total_seconds()) <= tolerance_s + _grain_s(time_format)


def _grain_s(time_format: str) -> float:
    """How long one value of the template's finest time token lasts (a minute folder holds a whole minute)."""
    finest = time_format[-2:]
    return {"%S": 1, "%M": 60, "%H": 3600, "%d": 86400, "%m": 31 * 86400, "%Y": 366 * 86400}.get(finest, 0)


@contextlib.contextmanager
def local_copies(files: list[EventFile], storage: Any = None) -> Iterator[dict[str, str]]:
    """{uri: local path} for the files: local files as they are, gs:// objects downloaded through `storage` (in
    parallel) into a temporary folder that is removed afterwards. DuckDB reads local files in bulk; its httpfs is
    not offline."""
    remote = [f for f in files if "://" in f.uri]
    mapping = {f.uri: f.uri for f in files if "://" not in f.uri}
    if not remote:
        yield mapping
        return
    folder = Path(tempfile.mkdtemp(prefix="reconcile-gcs-"))

    def fetch(item: tuple[int, EventFile]) -> tuple[str, str]:
        index, file = item
        target = folder / f"{index:08d}.json"
        _blob(file.uri, storage).download_to_filename(str(target), raw_download=RAW_DOWNLOAD)
        return file.uri, str(target)

    try:
        with ThreadPoolExecutor(max_workers=16) as pool:
            mapping.update(pool.map(fetch, enumerate(remote)))
        yield mapping
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ------------------------------------------------------------------------------------------ dead-letter files


def read_dead_letter_files(spec: Any, since: datetime, storage: Any = None) -> list[dict[str, Any]]:
    """dead_letters rows of a prefix of files holding rejected payloads (reconcile.contract.DeadLetterFiles),
    written since `since`: one per record (a JSON line, a JSON object file, or a raw file's whole body), with the
    MD5 of the payload bytes, which identifies the published message (a pipeline's own files keep no id of ours).
    `storage`: the client for a gs:// prefix (list_tree)."""
    import base64

    import orjson

    from eventmodel.history import gunzipped
    from reconcile.queries import DEAD_LETTER_FILES

    prefix = spec.prefix.rstrip("/")
    try:
        listed = list_tree(prefix, storage)
    except ReconcileError as exc:
        raise ReconcileError(f"cannot list the dead-letter files under {prefix}: {exc.message}",
                             "check dead_letters/gcs/prefix in the contract") from None  # fmt: skip
    rows: list[dict[str, Any]] = []
    entry = f"dead_letters:gcs:{spec.prefix}"
    for stored in listed:
        updated = stored.updated
        if updated is not None and updated < since:
            continue
        body = b"".join(gunzipped([read_stored(stored.path, storage)]))
        records = [body] if spec.format != "jsonl" else [line for line in body.splitlines() if line.strip()]
        for record in records:
            reason = None
            if spec.format == "raw":
                payload = record
            else:
                try:
                    doc = orjson.loads(record)
                except orjson.JSONDecodeError:
                    doc = None
                value = doc.get(spec.payload) if isinstance(doc, dict) else None
                reason = doc.get(spec.reason) if isinstance(doc, dict) and spec.reason else None
                if value is None:
                    payload = None
                elif spec.payload_encoding == "base64":
                    payload = base64.b64decode(value)
                else:
                    payload = value.encode("utf-8") if isinstance(value, str) else orjson.dumps(value)
            digest = hashlib.md5(payload, usedforsecurity=False).hexdigest() if payload is not None else None
            rows.append({
                "sink": DEAD_LETTER_FILES, "location": stored.path, "event_id": None, "source_message_id": None,
                "run_id": None, "reason": reason, "stage": None,
                "payload_digest": digest,
                "payload_cut": False, "publish_time": None, "landed_time": updated, "entry": entry,
            })  # fmt: skip
    return rows


# ------------------------------------------------------------------------------------------ dead-letter topic
#
# One long-lived subscription that retains acked messages, seeked to the run's start by each reconcile, one
# reconcile at a time (an flock per subscription and machine). Why not a subscription per reconcile:
# - A subscription receives only what is published after it exists, so a new one can read older dead letters only
#   by seeking to a snapshot of one that holds them unacked (replay-overview). A snapshot lives 7 days minus the age
#   of its source's oldest unacked message and cannot be made to expire within an hour of its creation, which caps
#   the reach below 7 days whatever the retention, and it takes rights to create and delete snapshots and
#   subscriptions on the project. And the official emulator (what `docker compose` runs) delivers nothing to a
#   subscription seeked to a snapshot of messages published before it existed (measured with gcloud's emulator):
#   every dead letter would show as missing there.
# - Topic retention (Topic.message_retention_duration) lets any subscription seek to before its creation, which
#   would make a subscription per reconcile safe across machines too. The official emulator honours that; this
#   project's does not (a new subscription seeked back gets nothing, measured), and the topic is not reconcile's.
# Seeking the shared subscription is what two reconciles must not do at once: a pull hands each message to one
# puller only, and each seek resets the other's position, so each would see part of the dead letters and report
# the rest "missing from the dead-letter topic". The lock makes the second wait for the first.
# Across machines (two CI runners on one project) the lock does not reach: run those reconciles one at a time, or
# all but one with --no-dead-letter-topic (the dead_letters table carries the same check).
#
# Sources: cloud.google.com/pubsub/docs/replay-overview (seek, snapshots and their lifetime, eventual
# consistency), /pubsub/docs/subscription-properties (retention 10 min to 31 days, default 7; expiration), and
# the Subscription reference (google.pubsub_v1.types.Subscription: "If expiration_policy is not set, a default
# policy with ttl of 31 days will be used. [...] If expiration_policy is set, but expiration_policy.ttl is not
# set, the subscription never expires.").

# How long the subscription keeps acked dead letters, which is how old a run can be and still have its dead letters
# compared on the topic. Pub/Sub allows 10 minutes to 31 days. Retained acked messages are billed as storage per
# GiB-month (cloud.google.com/pubsub/pricing), so the cost grows with this value times the dead-letter volume: a
# load test with 5% malformed messages dead-letters a lot. 7 days covers reconciling a run after a weekend or in
# the next week; an older run is reconciled through the dead_letters table (kept for good), with the topic left out
# and said so. The local emulator keeps the same window in memory.
DEAD_LETTER_RETENTION = timedelta(days=7)
# A run is judged on the topic only if it began at least this long before the retention edge: a reconcile reads
# for minutes, and the oldest dead letters must not expire while it does.
RETENTION_MARGIN = timedelta(minutes=10)
# The label that records when the subscription was created (Pub/Sub keeps no creation time): dead letters published
# before then never reached it. Label values allow only lowercase letters, digits, "_" and "-": epoch seconds.
CREATED_LABEL = "workbench-created-at"
# `since` is the seek position, a minute before the run's window (reconcile.run); nothing of the run is
# dead-lettered before the run has begun, so a subscription created up to this long after `since` has them all.
CREATED_TOLERANCE = timedelta(minutes=2)
# How long a reconcile waits for another one reading the same subscription on this machine.
LOCK_WAIT_S = 180.0


class DeadLetterTopicGap(ReconcileError):
    """Reconcile's subscription can no longer show every dead letter of the run (retention, or created after it):
    the dead-letter topic must not be judged for this run, or its lost dead letters would read as missing."""


@dataclass(frozen=True, slots=True)
class DeadLetterReach:
    """What reconcile's subscription holds: every dead letter published since max(now - retention, created)."""

    retention: timedelta
    created: datetime | None  # None: created without the label (an older workbench, or by hand)
    retains_acked: bool
    never_expires: bool


def reach_of(subscription: Any) -> DeadLetterReach:
    """The reach of a Subscription (as the client library returns it)."""
    from google.pubsub_v1.types import Subscription

    pb = Subscription.pb(subscription) if isinstance(subscription, Subscription) else subscription
    retention = (
        timedelta(seconds=pb.message_retention_duration.seconds)
        if pb.HasField("message_retention_duration")
        else timedelta(days=7)  # Pub/Sub's default (subscription-properties)
    )
    label = pb.labels.get(CREATED_LABEL, "")
    created = datetime.fromtimestamp(int(label), UTC) if label.isdigit() else None
    return DeadLetterReach(
        retention=retention,
        created=created,
        retains_acked=pb.retain_acked_messages,
        never_expires=pb.HasField("expiration_policy") and not pb.expiration_policy.HasField("ttl"),
    )


def topic_gap(since: datetime, reach: DeadLetterReach, now: datetime) -> str | None:
    """Why the subscription cannot show every dead letter published since `since` (a run's start), or None."""
    name = names.DEAD_LETTER_RECONCILE_SUBSCRIPTION
    if not reach.retains_acked:
        return (
            f"{name} does not retain acked messages, so what an earlier reconcile read is gone from it "
            "(retain_acked_messages is what lets every reconcile seek back and read the run's dead letters again)"
        )
    oldest_kept = now - reach.retention + RETENTION_MARGIN
    if since < oldest_kept:
        return (
            f"{name} keeps dead letters for {_span(reach.retention)} (its message_retention_duration), and this "
            f"run began {_span(now - since)} ago ({since:%Y-%m-%d %H:%M} UTC): its first dead letters are gone "
            "from the topic, so the topic cannot say which are missing"
        )
    if reach.created is not None and reach.created > since + CREATED_TOLERANCE:
        return (
            f"{name} was created at {reach.created:%Y-%m-%d %H:%M:%S} UTC, after this run began (its dead letters "
            f"are read from {since:%Y-%m-%d %H:%M:%S} UTC on): a subscription receives only what is published after "
            "it exists, so the run's first dead letters never reached it"
        )
    return None


def _span(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.1f} hours"


def reconcile_subscription_request(project: str, now: datetime | None = None) -> dict[str, Any]:
    """The create request of reconcile's dead-letter subscription (also made by `workbench up`).

    expiration_policy set with no ttl: it never expires. Left unset, Pub/Sub deletes a subscription after 31 days
    with no subscriber consuming from it and no operation on it (the Subscription reference): a month without a
    reconcile, and every dead letter it retained would go with it.
    """
    created = (now or datetime.now(UTC)).timestamp()
    return {
        "name": f"projects/{project}/subscriptions/{names.DEAD_LETTER_RECONCILE_SUBSCRIPTION}",
        "topic": f"projects/{project}/topics/{names.DEAD_LETTER_TOPIC}",
        "ack_deadline_seconds": 60,
        "retain_acked_messages": True,
        "message_retention_duration": {"seconds": int(DEAD_LETTER_RETENTION.total_seconds())},
        "expiration_policy": {},
        "labels": {CREATED_LABEL: str(int(created))},
    }


def ensure_reconcile_subscription(
    subscriber: Any, project: str, on_step: Callable[[str], None] = lambda _: None
) -> Any:
    """Reconcile's subscription on the dead-letter topic as it now stands: created when missing, and one made by an
    older version (no expiration policy, or not retaining acked messages) brought up to date. NotFound when the
    dead-letter topic does not exist."""
    from google.api_core import exceptions

    path = subscriber.subscription_path(project, names.DEAD_LETTER_RECONCILE_SUBSCRIPTION)
    try:
        current = subscriber.get_subscription(request={"subscription": path}, timeout=10)
    except exceptions.NotFound:
        try:
            return subscriber.create_subscription(request=reconcile_subscription_request(project), timeout=10)
        except exceptions.AlreadyExists:  # another reconcile (or `workbench up`) made it meanwhile
            return subscriber.get_subscription(request={"subscription": path}, timeout=10)
    for update in _updates_of(current):
        try:
            current = subscriber.update_subscription(request=update, timeout=10)
        except (exceptions.PermissionDenied, exceptions.InvalidArgument) as exc:
            # Refused: no pubsub.subscriptions.update right, or an emulator that cannot change the field (the
            # official one refuses expiration_policy). Reconcile goes on; topic_gap judges what the subscription is.
            fields = " and ".join(update["update_mask"]["paths"])
            on_step(
                f"warning: {path} could not be updated ({fields}: {exc.message}); run `gcloud pubsub "
                f"subscriptions update {names.DEAD_LETTER_RECONCILE_SUBSCRIPTION} --expiration-period=never "
                "--retain-acked-messages` (roles/pubsub.editor)"
            )
    return current


def _updates_of(subscription: Any) -> list[dict[str, Any]]:
    """The UpdateSubscription requests that bring an older subscription up to date, one per concern, so that one
    refused does not hold back the other."""
    reach = reach_of(subscription)
    updates: list[dict[str, Any]] = []
    if not reach.retains_acked:
        # What it acked before is gone: it holds every dead letter from now on, and its label says so.
        labels = {**dict(subscription.labels), CREATED_LABEL: str(int(datetime.now(UTC).timestamp()))}
        fields = {"retain_acked_messages": True, "labels": labels}
        updates.append(
            {"subscription": {"name": subscription.name, **fields}, "update_mask": {"paths": sorted(fields)}}
        )
    if not reach.never_expires:
        fields = {"expiration_policy": {}}
        updates.append(
            {"subscription": {"name": subscription.name, **fields}, "update_mask": {"paths": sorted(fields)}}
        )
    return updates


def lock_path(emulator: str | None, project: str) -> Path:
    """The lock of reconcile's subscription of one project on one Pub/Sub (an emulator, or the real service), shared
    by every user and workbench home of this machine, since they all read the same subscription."""
    where = (emulator or "pubsub.googleapis.com").replace(":", "_").replace("/", "_")
    folder = Path(tempfile.gettempdir()) / "event-workbench-locks"
    if not folder.is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):  # like /tmp: everyone may add a lock, only its owner remove it
            folder.chmod(0o1777)
    return folder / f"{where}-{project}-{names.DEAD_LETTER_RECONCILE_SUBSCRIPTION}.lock"


@contextlib.contextmanager
def reading_lock(
    emulator: str | None, project: str, on_step: Callable[[str], None] = lambda _: None, wait_s: float = LOCK_WAIT_S
) -> Iterator[None]:
    """Hold the subscription's lock for the block, waiting up to wait_s for another reconcile of this machine.

    An flock(2): the kernel releases it when its holder exits in any way, so a killed reconcile leaves no stale lock.
    The file carries the holder's pid and command, for the message, and its holder removes it when done (a test
    session's emulators would otherwise leave one per port behind)."""
    import fcntl

    path = lock_path(emulator, project)
    deadline = time.monotonic() + wait_s
    told = False
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            if time.monotonic() >= deadline:
                raise ReconcileError(
                    f"another reconcile ({holder}) has been reading the dead-letter topic through "
                    f"{names.DEAD_LETTER_RECONCILE_SUBSCRIPTION} for over {wait_s:g} s; two at once would each see "
                    "only part of the dead letters",
                    "wait for it to finish, or pass --no-dead-letter-topic (the dead_letters table carries the same "
                    "check)",
                ) from None
            if not told:
                on_step(f"waiting for another reconcile ({holder}) to finish reading the dead-letter topic")
                told = True
            time.sleep(0.1)
            continue
        if _is_file_at(fd, path):
            break
        os.close(fd)  # locked a file its last holder had already removed: take the one now at the path
    try:
        with contextlib.suppress(OSError):  # another user of this machine may open it next (umask aside)
            os.fchmod(fd, 0o666)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}: {shlex.join(sys.argv)[:300]}".encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):  # removed while still held, so nobody locks it after us
            path.unlink()
        os.close(fd)  # releases the lock


def _is_file_at(fd: int, path: Path) -> bool:
    try:
        at_path = path.stat()
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (at_path.st_dev, at_path.st_ino)


def read_dead_letter_topic(
    project: str,
    emulator: str | None,
    since: datetime,
    on_step: Callable[[str], None] = lambda _: None,
) -> list[dict[str, Any]]:
    """Every dead letter published on the dead-letter topic since `since`, as dead_letters rows.

    Seeks reconcile's own subscription to `since`, pulls until nothing more comes, and acks what it read, holding
    the subscription's lock meanwhile. DeadLetterTopicGap (a ReconcileError) when the subscription cannot hold
    every dead letter since `since` (retention, or created after it): nothing is read then, and the caller must
    not judge the topic for that run.
    """
    from google.api_core import exceptions
    from google.protobuf import timestamp_pb2

    from endpoints.pubsub import subscriber_client

    subscriber = subscriber_client(emulator)
    try:
        with reading_lock(emulator, project, on_step):
            try:
                subscription = ensure_reconcile_subscription(subscriber, project, on_step)
            except exceptions.NotFound:
                raise NotYetReadable(
                    f"the dead-letter topic {names.DEAD_LETTER_TOPIC} does not exist in project {project}",
                    "create the resources (`workbench up` locally; docs/pipeline.md for GCP), "
                    "or pass --no-dead-letter-topic",
                ) from None
            gap = topic_gap(since.astimezone(UTC), reach_of(subscription), datetime.now(UTC))
            if gap is not None:
                raise DeadLetterTopicGap(
                    f"the dead-letter topic cannot show every dead letter of this run: {gap}",
                    "reconcile with --no-dead-letter-topic: the dead_letters table holds the same dead letters; "
                    f"reconcile runs within {_span(reach_of(subscription).retention)} of their start to compare "
                    "the topic too",
                )
            path = subscription.name
            moment = timestamp_pb2.Timestamp()
            moment.FromDatetime(since.astimezone(UTC).replace(tzinfo=None))
            subscriber.seek(request={"subscription": path, "time": moment}, timeout=30)
            letters: list[dict[str, Any]] = []
            while True:
                try:
                    response = subscriber.pull(
                        request={"subscription": path, "max_messages": PULL_BATCH}, timeout=PULL_TIMEOUT_S
                    )
                except exceptions.DeadlineExceeded:
                    break
                received = response.received_messages
                if not received:
                    break
                letters.extend(_dead_letter_row(r.message) for r in received)
                subscriber.acknowledge(request={"subscription": path, "ack_ids": [r.ack_id for r in received]})
                on_step(f"dead-letter topic: {len(letters):,} messages read")
            return letters
    except exceptions.GoogleAPICallError as exc:
        raise ReconcileError(
            f"cannot read the dead-letter topic through {names.DEAD_LETTER_RECONCILE_SUBSCRIPTION}: {exc.message}",
            "check the Pub/Sub emulator (`workbench status`) or your roles on the project (docs/reconcile.md)",
        ) from None
    finally:
        subscriber.close()


def _dead_letter_row(message: Any) -> dict[str, Any]:
    attributes = dict(message.attributes)
    source = attributes.get(names.ATTR_DLQ_SOURCE_MESSAGE_ID) or None
    published = message.publish_time
    return {
        "sink": "dead_letter_topic",
        "location": f"{names.DEAD_LETTER_TOPIC}/{message.message_id}",
        "event_id": (attributes.get(names.ATTR_EVENT_ID) or "").strip() or source,
        "source_message_id": source,
        "run_id": attributes.get(names.ATTR_RUN_ID) or None,
        "reason": attributes.get(names.ATTR_DLQ_REASON),
        "stage": attributes.get(names.ATTR_DLQ_STAGE),
        "payload_digest": hashlib.md5(message.data, usedforsecurity=False).hexdigest(),
        "payload_cut": False,
        "publish_time": None,  # the source message's publish time does not travel with the dead letter
        "landed_time": published if isinstance(published, datetime) else None,
    }
