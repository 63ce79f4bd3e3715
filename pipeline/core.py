"""The pipeline's pure core: plain functions and records, no Beam, no I/O, no network.

Everything the transforms decide is decided here, so it is testable with plain asserts:
- which id identifies an event (the event_id attribute, else the Pub/Sub message_id),
- where an event's file goes (output/<type>/YYYY/MM/DD/HH/mm/<type>_<YYYYMMDDHHmm><NNNN>.json),
- what one line of such a file holds,
- what a dead letter carries (original bytes, original attributes plus the dlq_* attributes).

File line format (JSON lines, one accepted event per line, keys in this order):

    {"event_id": "...",          # the id the pipeline deduplicated on (attribute, else message_id)
     "message_id": "...",        # the Pub/Sub message id of the copy that was kept
     "publish_time": "...Z",     # Pub/Sub publish time, RFC 3339 UTC (null when the source had none)
     "attributes": {...},        # every Pub/Sub attribute of the message (run_id, schema_version, ...)
     "event": {...}}             # the event exactly as validated (the assessment's schema)

The event sits under one key instead of being merged with the metadata so that no event field can ever
collide with a metadata name, and `line["event"]` is the event a producer sent.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson

from eventmodel import rows
from eventmodel.resources import (
    ATTR_DLQ_DETAIL,
    ATTR_DLQ_REASON,
    ATTR_DLQ_SOURCE_MESSAGE_ID,
    ATTR_DLQ_STAGE,
    ATTR_EVENT_TYPE,
)

Clock = Callable[[], float]  # seconds; the DoFns take one so that tests drive their timers (TestStream)

# Stage names: where in the pipeline a dead letter was decided (attribute dlq_stage, column dead_letters.stage).
STAGE_VALIDATE = "validate"
STAGE_DEDUPLICATE = "deduplicate"
STAGE_FORMAT_LINE = "format_line"
STAGE_BUILD_ROW = "build_row"
STAGE_GCS = "gcs"
STAGE_BIGQUERY = "bigquery"

# Pub/Sub limits an attribute value to 1024 bytes; a longer detail would make the dead-letter publish fail.
MAX_ATTRIBUTE_VALUE_BYTES = 1024
# The NNNN of a file name: four digits as the assessment shows; a 10,001st file of one type in one minute
# keeps counting with more digits rather than wrapping onto an existing name.
SEQUENCE_DIGITS = 4


class ValidEvent(NamedTuple):
    """An accepted event with the Pub/Sub metadata every sink needs; `data` is the original body."""

    event_type: str
    event: dict[str, Any]
    event_time: datetime  # the event's own time, aware UTC (decides the minute folder)
    event_id: str
    message_id: str
    publish_time: datetime | None
    attributes: dict[str, str]
    data: bytes


class DeadLetter(NamedTuple):
    """A message the pipeline could not deliver: the original body and attributes, and why."""

    data: bytes
    attributes: dict[str, str]  # the source message's attributes, untouched
    reason: str  # a code of eventmodel.reasons
    detail: str
    stage: str
    source_message_id: str
    event_id: str
    publish_time: datetime | None


def event_id_of(attributes: dict[str, str] | None, message_id: str) -> str:
    """The event's identity: the event_id attribute when non-blank, else the Pub/Sub message id (the event
    model's rule, eventmodel.rows.event_id_of); "" when a message has neither, which dedup never keys on."""
    try:
        return rows.event_id_of(message_id, attributes)
    except ValueError:
        return ""


def minute_key(event_time: datetime) -> str:
    """YYYYMMDDHHmm of an aware datetime, in UTC: the file-name stamp and the grouping key of a minute."""
    return event_time.astimezone(UTC).strftime("%Y%m%d%H%M")


def minute_folder(root: str, event_type: str, minute: str) -> str:
    """<root>/<type>/YYYY/MM/DD/HH/mm for a minute key (root may be a local path or gs://bucket/prefix)."""
    return "/".join((root.rstrip("/"), event_type, minute[0:4], minute[4:6], minute[6:8], minute[8:10], minute[10:12]))


def file_name(event_type: str, minute: str, sequence: int) -> str:
    """<type>_<YYYYMMDDHHmm><NNNN>.json"""
    if sequence < 0:
        raise ValueError(f"sequence must be >= 0, got {sequence}")
    return f"{event_type}_{minute}{sequence:0{SEQUENCE_DIGITS}d}.json"


def file_path(root: str, event_type: str, minute: str, sequence: int) -> str:
    return f"{minute_folder(root, event_type, minute)}/{file_name(event_type, minute, sequence)}"


def sequence_of(name: str, event_type: str, minute: str) -> int | None:
    """The NNNN of a file name written by file_name() for this type and minute, or None for any other name."""
    base = name.rsplit("/", 1)[-1]
    prefix = f"{event_type}_{minute}"
    if not (base.startswith(prefix) and base.endswith(".json")):
        return None
    digits = base[len(prefix) : -len(".json")]
    if len(digits) < SEQUENCE_DIGITS or not digits.isdigit():
        return None
    return int(digits)


def rfc3339(moment: datetime | None) -> str | None:
    """UTC RFC 3339 with microseconds and a Z, as BigQuery and reconcile read it."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def file_line(event: ValidEvent) -> bytes:
    """One JSON line (with its newline) for an event's file; the format is in this module's docstring."""
    return (
        orjson.dumps(
            {
                "event_id": event.event_id,
                "message_id": event.message_id,
                "publish_time": rfc3339(event.publish_time),
                "attributes": event.attributes,
                "event": event.event,
            }
        )
        + b"\n"
    )


def _clip(text: str, limit: int = MAX_ATTRIBUTE_VALUE_BYTES) -> str:
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return text
    return encoded[: limit - 3].decode("utf-8", errors="ignore") + "..."


def dead_letter_attributes(letter: DeadLetter) -> dict[str, str]:
    """The dead-letter message's attributes: the source's own, plus reason, detail, source message id, stage."""
    attributes = dict(letter.attributes)
    attributes[ATTR_DLQ_REASON] = letter.reason
    attributes[ATTR_DLQ_DETAIL] = _clip(letter.detail)
    attributes[ATTR_DLQ_SOURCE_MESSAGE_ID] = letter.source_message_id
    attributes[ATTR_DLQ_STAGE] = letter.stage
    return attributes


def dead_letter_from_event(event: ValidEvent, reason: str, detail: str, stage: str) -> DeadLetter:
    """A dead letter for an event that was accepted but then failed a later stage: original bytes kept."""
    return DeadLetter(
        event.data, event.attributes, reason, detail, stage, event.message_id, event.event_id, event.publish_time
    )


def dead_letter_from_line(line: bytes, reason: str, detail: str, stage: str) -> DeadLetter:
    """A dead letter for a file line that could not be written.

    The body is the event re-encoded from the line (compact JSON, key order kept); the file buffer holds lines,
    not the original bodies, to keep the writer's state small. For producers that send compact JSON (orjson,
    the generator, most serializers) the bytes are identical to the original.
    """
    record = orjson.loads(line)
    return DeadLetter(
        orjson.dumps(record["event"]),
        record["attributes"],
        reason,
        detail,
        stage,
        record["message_id"],
        record["event_id"],
        _parse_time(record["publish_time"]),
    )


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def event_type_hint(attributes: dict[str, str]) -> str | None:
    """The event_type attribute, a hint only (the payload decides); used for dead-letter triage."""
    return attributes.get(ATTR_EVENT_TYPE) or None


def describe_exception(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
