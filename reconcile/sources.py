"""Where reconcile reads each sink: the GCS tree, the BigQuery tables and the dead-letter topic.

- The GCS tree (a local directory or gs://) is listed and read through Beam's FileSystems, the code the
  pipeline writes with. Each file's place in the tree is judged here, once per file (not per line): its type
  folder, its minute folder, and whether its name is `<type>_<YYYYMMDDHHmm><NNNN>.json` of that folder.
- The BigQuery tables are read by the comparison's own SELECTs (reconcile.queries), run by BigQuery itself.
- The dead-letter topic is read through a subscription of reconcile's own (DEAD_LETTER_RECONCILE_SUBSCRIPTION,
  retaining acked messages): reconcile seeks it back to the run's start and pulls, so it consumes nothing
  another reader needs, and a second reconcile sees the same messages as the first.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eventmodel import resources as names
from eventmodel.schema import EVENT_TYPES
from pipeline.core import sequence_of
from reconcile.errors import ReconcileError

# How long a pull may wait for more dead letters once the backlog looks empty.
PULL_TIMEOUT_S = 3.0
PULL_BATCH = 1000


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


def place_of(root: str, uri: str) -> tuple[str, str | None, bool] | None:
    """(type folder, minute folder, name fits) of a file under root; None when it is outside every type folder.

    >>> place_of("out", "out/order/2025/02/08/13/09/order_2025020813090001.json")
    ('order', '202502081309', True)
    """
    relative = uri[len(root.rstrip("/")) + 1 :] if uri.startswith(root.rstrip("/") + "/") else None
    if relative is None:
        return None
    parts = relative.split("/")
    if parts[0] not in EVENT_TYPES:
        return None
    event_type = parts[0]
    folders = parts[1:-1]
    minute = "".join(folders) if len(folders) == 5 and all(p.isdigit() for p in folders) else None
    if minute is not None and [len(p) for p in folders] != [4, 2, 2, 2, 2]:
        minute = None
    name_ok = minute is not None and sequence_of(parts[-1], event_type, minute) is not None
    return event_type, minute, name_ok


def list_event_files(root: str) -> list[EventFile]:
    """Every *.json file under root's type folders, with its place and its last update time."""
    from apache_beam.io.filesystems import FileSystems

    found: list[EventFile] = []
    for event_type in EVENT_TYPES:
        pattern = f"{root.rstrip('/')}/{event_type}/**"
        try:
            matches = FileSystems.match([pattern])[0].metadata_list
        except Exception as exc:  # BeamIOError wraps "nothing matched" and unreachable stores alike
            if _nothing_matched(exc):
                continue
            raise ReconcileError(
                f"cannot list the GCS tree at {root}: {exc}",
                "check --output-root (and, for gs:// on the local stack, that `workbench up --gcs` runs)",
            ) from None
        for meta in matches:
            if not meta.path.endswith(".json"):
                continue
            place = place_of(root, meta.path)
            if place is None:
                continue
            updated = getattr(meta, "last_updated_in_seconds", None)
            found.append(
                EventFile(
                    meta.path,
                    *place,
                    datetime.fromtimestamp(updated, UTC) if updated else None,
                    meta.size_in_bytes,
                )
            )
    return found


def _nothing_matched(exc: Exception) -> bool:
    text = str(exc).lower()
    return "no such file" in text or "not found" in text or "matched no files" in text or "404" in text


@contextlib.contextmanager
def local_copies(files: list[EventFile]) -> Iterator[dict[str, str]]:
    """{uri: local path} for the files: local files as they are, gs:// objects downloaded (in parallel) into a
    temporary folder that is removed afterwards. DuckDB reads local files in bulk; its httpfs is not offline."""
    remote = [f for f in files if "://" in f.uri]
    mapping = {f.uri: f.uri for f in files if "://" not in f.uri}
    if not remote:
        yield mapping
        return
    from apache_beam.io.filesystems import FileSystems

    folder = Path(tempfile.mkdtemp(prefix="reconcile-gcs-"))

    def fetch(item: tuple[int, EventFile]) -> tuple[str, str]:
        index, file = item
        target = folder / f"{index:08d}.json"
        with FileSystems.open(file.uri, compression_type="uncompressed") as source, target.open("wb") as sink:
            shutil.copyfileobj(source, sink, 1 << 20)
        return file.uri, str(target)

    try:
        with ThreadPoolExecutor(max_workers=16) as pool:
            mapping.update(pool.map(fetch, enumerate(remote)))
        yield mapping
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ------------------------------------------------------------------------------------------ dead-letter topic


def ensure_reconcile_subscription(subscriber: Any, project: str) -> bool:
    """Create reconcile's own subscription on the dead-letter topic when missing; True when it already existed.

    It retains acked messages (7 days, Pub/Sub's maximum for a subscription), which is what lets every
    reconcile seek back and read the same dead letters again.
    """
    from google.api_core import exceptions

    path = subscriber.subscription_path(project, names.DEAD_LETTER_RECONCILE_SUBSCRIPTION)
    try:
        subscriber.get_subscription(request={"subscription": path}, timeout=10)
        return True
    except exceptions.NotFound:
        pass
    subscriber.create_subscription(request=reconcile_subscription_request(project), timeout=10)
    return False


def reconcile_subscription_request(project: str) -> dict[str, Any]:
    """The create request of reconcile's dead-letter subscription (also made by `workbench up`)."""
    return {
        "name": f"projects/{project}/subscriptions/{names.DEAD_LETTER_RECONCILE_SUBSCRIPTION}",
        "topic": f"projects/{project}/topics/{names.DEAD_LETTER_TOPIC}",
        "ack_deadline_seconds": 60,
        "retain_acked_messages": True,
        "message_retention_duration": {"seconds": 7 * 24 * 3600},
    }


def read_dead_letter_topic(
    project: str,
    emulator: str | None,
    since: datetime,
    on_step: Callable[[str], None] = lambda _: None,
) -> list[dict[str, Any]]:
    """Every dead letter published on the dead-letter topic since `since`, as dead_letters rows.

    Seeks reconcile's own subscription to `since`, pulls until nothing more comes, and acks what it read.
    """
    from google.api_core import exceptions
    from google.protobuf import timestamp_pb2

    from workbench.localstack.clients import subscriber_client

    subscriber = subscriber_client(emulator)
    try:
        try:
            existed = ensure_reconcile_subscription(subscriber, project)
        except exceptions.NotFound:
            raise ReconcileError(
                f"the dead-letter topic {names.DEAD_LETTER_TOPIC} does not exist in project {project}",
                "create the resources (`workbench up` locally; docs/pipeline.md for GCP), "
                "or pass --no-dead-letter-topic",
            ) from None
        if not existed:
            on_step(
                f"created {names.DEAD_LETTER_RECONCILE_SUBSCRIPTION}: dead letters published before now are not "
                "visible through it"
            )
        path = subscriber.subscription_path(project, names.DEAD_LETTER_RECONCILE_SUBSCRIPTION)
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
