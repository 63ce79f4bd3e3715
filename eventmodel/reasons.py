"""Reason codes: why an event was dead-lettered. Stable strings, one per kind of fault.

Codes of kind "payload" are decided by the validator from the bytes alone; every malformed kind in the
generator's catalogue maps to exactly one of them. Codes of kind "processing" and "sink" are set by the
pipeline when a stage or a sink fails for an event the validator accepted. docs/reason-codes.md is
generated from this table (scripts/render_reason_codes.py), and a test keeps the two equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class Reason:
    code: str
    kind: Literal["payload", "processing", "sink"]
    meaning: str


EMPTY_PAYLOAD = "EMPTY_PAYLOAD"
OVERSIZE_PAYLOAD = "OVERSIZE_PAYLOAD"
INVALID_UTF8 = "INVALID_UTF8"
TRUNCATED_JSON = "TRUNCATED_JSON"
NOT_JSON = "NOT_JSON"
NOT_AN_OBJECT = "NOT_AN_OBJECT"
MISSING_EVENT_TYPE = "MISSING_EVENT_TYPE"
UNKNOWN_EVENT_TYPE = "UNKNOWN_EVENT_TYPE"
MISSING_FIELD = "MISSING_FIELD"
NULL_FIELD = "NULL_FIELD"
UNEXPECTED_FIELD = "UNEXPECTED_FIELD"
WRONG_TYPE = "WRONG_TYPE"
BLANK_STRING = "BLANK_STRING"
BAD_ENUM = "BAD_ENUM"
BAD_UUID = "BAD_UUID"
BAD_TIMESTAMP = "BAD_TIMESTAMP"
BAD_IP_ADDRESS = "BAD_IP_ADDRESS"
OUT_OF_RANGE = "OUT_OF_RANGE"
NEGATIVE_VALUE = "NEGATIVE_VALUE"
EMPTY_ITEMS = "EMPTY_ITEMS"
TOTAL_MISMATCH = "TOTAL_MISMATCH"
SIGN_MISMATCH = "SIGN_MISMATCH"
PROCESSING_ERROR = "PROCESSING_ERROR"
BIGQUERY_INSERT_FAILED = "BIGQUERY_INSERT_FAILED"
GCS_WRITE_FAILED = "GCS_WRITE_FAILED"
SOURCE_UNREADABLE = "SOURCE_UNREADABLE"

REASONS: dict[str, Reason] = {
    r.code: r
    for r in (
        Reason(EMPTY_PAYLOAD, "payload", "the message body is empty or only white space"),
        Reason(OVERSIZE_PAYLOAD, "payload", "the body is larger than any event can be (schema.MAX_PAYLOAD_BYTES)"),
        Reason(INVALID_UTF8, "payload", "the body is not valid UTF-8"),
        Reason(TRUNCATED_JSON, "payload", "the JSON ends before the document does (a cut-off write)"),
        Reason(NOT_JSON, "payload", "the body is not JSON at all, or has a syntax error"),
        Reason(NOT_AN_OBJECT, "payload", "valid JSON, but an array, string, number or null instead of an object"),
        Reason(MISSING_EVENT_TYPE, "payload", "the object has no event_type (or it is not a string)"),
        Reason(UNKNOWN_EVENT_TYPE, "payload", "event_type is not order, inventory or user_activity"),
        Reason(MISSING_FIELD, "payload", "a required field is absent"),
        Reason(NULL_FIELD, "payload", "a required field is present but null"),
        Reason(UNEXPECTED_FIELD, "payload", "a field the schema does not define (it would fail the BigQuery insert)"),
        Reason(WRONG_TYPE, "payload", "a field has the wrong JSON type (a string for a number, a bool, ...)"),
        Reason(BLANK_STRING, "payload", "a required text field is empty or only white space"),
        Reason(BAD_ENUM, "payload", "a value outside its enum (status, reason, activity_type, platform)"),
        Reason(BAD_UUID, "payload", "an id that is not a UUID in its 8-4-4-4-12 hex form"),
        Reason(BAD_TIMESTAMP, "payload", "a timestamp that is not ISO-8601 with a time zone, or no real time"),
        Reason(BAD_IP_ADDRESS, "payload", "ip_address is not an IPv4 or IPv6 address"),
        Reason(OUT_OF_RANGE, "payload", "a number outside its range (quantity_change -100..100, quantity >= 1)"),
        Reason(NEGATIVE_VALUE, "payload", "a price, quantity or total_amount below zero"),
        Reason(EMPTY_ITEMS, "payload", "an order with no items"),
        Reason(TOTAL_MISMATCH, "payload", "total_amount is not the sum of quantity * price, rounded to cents"),
        Reason(SIGN_MISMATCH, "payload", "quantity_change has the wrong sign for its reason (a sale that adds stock)"),
        Reason(PROCESSING_ERROR, "processing", "a pipeline stage raised on an accepted event (poison message)"),
        Reason(BIGQUERY_INSERT_FAILED, "sink", "BigQuery rejected the row, or kept failing after retries"),
        Reason(GCS_WRITE_FAILED, "sink", "the GCS/file write kept failing after retries"),
        Reason(
            SOURCE_UNREADABLE,
            "processing",
            "a backfill could not read a history object (refused, or not gzip "
            "though it says so); the dead letter names the object, its bytes are empty",
        ),
    )
}

PAYLOAD_REASONS: tuple[str, ...] = tuple(code for code, r in REASONS.items() if r.kind == "payload")


def markdown_table() -> str:
    """The reason-code table as Markdown, exactly as docs/reason-codes.md holds it."""
    lines = [
        "# Reason codes",
        "",
        "Why an event ends in the dead letter. Generated from `eventmodel/reasons.py`"
        " by `scripts/render_reason_codes.py`; a test keeps them equal.",
        "",
        "| code | decided by | meaning |",
        "| --- | --- | --- |",
    ]
    decided_by = {"payload": "validator", "processing": "pipeline stage", "sink": "pipeline sink"}
    lines += [f"| `{r.code}` | {decided_by[r.kind]} | {r.meaning} |" for r in REASONS.values()]
    return "\n".join(lines) + "\n"
