"""The validator: bytes in, either Accepted(event_type, event, event_time) or Rejected(reason, detail) out.

It is the pipeline's validation core, so it is built for speed and totality:
- the schemas are compiled once, at import, into small check functions (no per-call schema walking);
- orjson parses; the common valid path raises nothing and allocates little;
- no input can make it raise: every failure is a Rejected with a reason code from eventmodel.reasons,
  and an unforeseen exception inside a check is caught and reported as PROCESSING_ERROR.

    >>> validate(b'{"event_type": "nope"}')
    Rejected(reason='UNKNOWN_EVENT_TYPE', detail="event_type 'nope' is not one of: order, inventory, user_activity")
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson

from eventmodel import reasons as R
from eventmodel.schema import (
    EVENT_TIME_FIELD,
    EVENT_TYPES,
    INVENTORY,
    INVENTORY_REASON_SIGN,
    MAX_PAYLOAD_BYTES,
    ORDER,
    SCHEMAS,
    Field,
)


class Accepted(NamedTuple):
    event_type: str
    event: dict[str, Any]
    event_time: datetime  # the event's own timestamp, timezone-aware UTC


class Rejected(NamedTuple):
    reason: str
    detail: str


class _Invalid(Exception):
    """Raised inside compiled checks; caught once at the top. Invalid events are the rare path."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail


_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# RFC 3339: date, 'T', time, optional fraction, and a zone (Z or +hh:mm); 't' and 'z' may be lower case (RFC 3339
# 5.6). Up to 9 fraction digits, as Java's Instant and Go write them; BigQuery keeps microseconds, so the parsed
# time is truncated to them. A timestamp without a zone is ambiguous and rejected rather than guessed.
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})")
# BigQuery INT64: a larger integer is valid JSON but can never be stored.
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_DEFAULT_TYPE_LIST = ", ".join(EVENT_TYPES)

Check = Callable[[Any, str], Any]


def parse_timestamp(text: str) -> datetime | None:
    """An RFC 3339 timestamp as an aware UTC datetime, or None when it is not one. Shared with the pipeline."""
    if type(text) is not str or not _TIMESTAMP.fullmatch(text):
        return None
    try:
        return datetime.fromisoformat(text.upper()).astimezone(UTC)
    except (ValueError, OverflowError):  # no real time (2025-02-30, 25:00), or beyond year 1..9999 once in UTC
        return None


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer", float: "number"}.get(
        type(value), "null"
    )


def _compile_field(field: Field) -> Check:
    """A function (value, path) -> normalised value that raises _Invalid. `value` is never None here."""
    kind = field.kind

    def wrong_type(value: Any, path: str, expected: str) -> _Invalid:
        return _Invalid(R.WRONG_TYPE, f"{path} must be {expected}, got {_json_type(value)} {_describe(value)}")

    if kind == "uuid":

        def check(value: Any, path: str) -> Any:
            if type(value) is not str:
                raise wrong_type(value, path, "a UUID string")
            if not _UUID.fullmatch(value):
                raise _Invalid(R.BAD_UUID, f"{path} is not a UUID: {_describe(value)}")
            return value

    elif kind == "timestamp":

        def check(value: Any, path: str) -> Any:
            if type(value) is not str:
                raise wrong_type(value, path, "an ISO-8601 timestamp string")
            if parse_timestamp(value) is None:
                raise _Invalid(R.BAD_TIMESTAMP, f"{path} is not an ISO-8601 time with a zone: {_describe(value)}")
            return value

    elif kind in ("string", "ip_address"):
        is_ip = kind == "ip_address"

        def check(value: Any, path: str) -> Any:
            if type(value) is not str:
                raise wrong_type(value, path, "a string")
            if not value.strip():
                raise _Invalid(R.BLANK_STRING, f"{path} is empty")
            if is_ip:
                try:
                    ipaddress.ip_address(value)
                except ValueError:
                    raise _Invalid(R.BAD_IP_ADDRESS, f"{path} is not an IP address: {_describe(value)}") from None
            return value

    elif kind in ("integer", "number"):
        allowed = (int,) if kind == "integer" else (int, float)
        expected = "an integer" if kind == "integer" else "a number"
        lo, hi = field.minimum, field.maximum

        def check(value: Any, path: str) -> Any:
            # bool is an int subclass in Python but a different JSON type: exact type test on purpose.
            if type(value) not in allowed:
                if kind == "integer" and type(value) is float and value.is_integer() and abs(value) >= 2**63:
                    # orjson reads integers beyond 64 bits as floats: the producer meant a (too large) integer.
                    raise _Invalid(R.OUT_OF_RANGE, f"{path} {value:.0f} does not fit a 64-bit integer")
                raise wrong_type(value, path, expected)
            if type(value) is int and not _INT64_MIN <= value <= _INT64_MAX:
                raise _Invalid(R.OUT_OF_RANGE, f"{path} {value} does not fit a 64-bit integer")
            if lo is not None and value < lo:
                if value < 0 <= lo:
                    raise _Invalid(R.NEGATIVE_VALUE, f"{path} must not be negative, got {value}")
                raise _Invalid(R.OUT_OF_RANGE, f"{path} must be >= {lo}, got {value}")
            if hi is not None and value > hi:
                raise _Invalid(R.OUT_OF_RANGE, f"{path} must be <= {hi}, got {value}")
            return value

    elif kind == "enum":
        values = frozenset(field.values)
        listed = ", ".join(field.values)

        def check(value: Any, path: str) -> Any:
            if type(value) is not str:
                raise wrong_type(value, path, f"one of {listed}")
            if value not in values:
                raise _Invalid(R.BAD_ENUM, f"{path} {_describe(value)} is not one of: {listed}")
            return value

    elif kind == "record":
        check_record = _compile_record(field.fields)

        def check(value: Any, path: str) -> Any:
            if type(value) is not dict:
                raise wrong_type(value, path, "an object")
            return check_record(value, path + ".")

    elif kind == "records":
        check_record = _compile_record(field.fields)

        def check(value: Any, path: str) -> Any:
            if type(value) is not list:
                raise wrong_type(value, path, "an array of objects")
            if not value:
                raise _Invalid(R.EMPTY_ITEMS, f"{path} is empty")
            for i, item in enumerate(value):
                if type(item) is not dict:
                    raise wrong_type(item, f"{path}[{i}]", "an object")
                check_record(item, f"{path}[{i}].")
            return value

    else:  # pragma: no cover - a schema typo must fail at import, not at run time
        raise ValueError(f"unknown field kind {kind!r}")
    return check


def _compile_record(fields: tuple[Field, ...]) -> Callable[[dict, str], dict]:
    checks = tuple((f.name, f.required, _compile_field(f)) for f in fields)
    known = frozenset(f.name for f in fields)

    def check_record(obj: dict, prefix: str) -> dict:
        for name, required, check in checks:
            value = obj.get(name)
            if value is None:
                if name in obj:
                    if required:
                        raise _Invalid(R.NULL_FIELD, f"{prefix}{name} is null")
                elif required:
                    raise _Invalid(R.MISSING_FIELD, f"{prefix}{name} is missing")
                continue
            check(value, prefix + name)
        if len(obj) > len(checks) or not known.issuperset(obj):
            extra = sorted(k for k in obj if k not in known)
            if extra:
                raise _Invalid(
                    R.UNEXPECTED_FIELD,
                    f"unexpected field {prefix}{extra[0]}"
                    + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""),
                )
        return obj

    return check_record


def _check_order_rules(event: dict) -> None:
    total = sum(item["quantity"] * item["price"] for item in event["items"])
    if abs(event["total_amount"] - round(total, 2)) > 0.005:
        raise _Invalid(
            R.TOTAL_MISMATCH,
            f"total_amount {event['total_amount']} is not the sum of quantity * price ({round(total, 2)})",
        )


def _check_inventory_rules(event: dict) -> None:
    sign = INVENTORY_REASON_SIGN[event["reason"]]
    if event["quantity_change"] * sign <= 0:
        expected = "positive" if sign > 0 else "negative"
        raise _Invalid(
            R.SIGN_MISMATCH,
            f"quantity_change {event['quantity_change']} must be {expected} for reason {event['reason']!r}",
        )


_BUSINESS_RULES: dict[str, Callable[[dict], None]] = {ORDER: _check_order_rules, INVENTORY: _check_inventory_rules}
_RECORD_CHECKS = {event_type: _compile_record(fields) for event_type, fields in SCHEMAS.items()}


def _reject_undecodable(data: bytes, error: orjson.JSONDecodeError) -> Rejected:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejected(R.INVALID_UTF8, f"invalid UTF-8 at byte {exc.start}")
    if not data.strip():
        return Rejected(R.EMPTY_PAYLOAD, "the body is only white space")
    if error.msg == "unexpected end of data" or error.pos >= len(data.rstrip()):
        return Rejected(R.TRUNCATED_JSON, f"JSON ends early at byte {error.pos} of {len(data)}")
    return Rejected(R.NOT_JSON, f"not JSON: {error.msg} at byte {error.pos}")


def validate(data: bytes) -> Accepted | Rejected:
    """Classify one message body. Never raises."""
    try:
        return _validate(data)
    except Exception as exc:  # a bug in a check must dead-letter the event, not crash the pipeline
        return Rejected(R.PROCESSING_ERROR, f"validator failed: {type(exc).__name__}: {exc}")


def _validate(data: bytes) -> Accepted | Rejected:
    if not data:
        return Rejected(R.EMPTY_PAYLOAD, "the body is empty")
    if len(data) > MAX_PAYLOAD_BYTES:
        return Rejected(R.OVERSIZE_PAYLOAD, f"{len(data)} bytes; the limit is {MAX_PAYLOAD_BYTES}")
    try:
        event = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        return _reject_undecodable(bytes(data), exc)
    if type(event) is not dict:
        return Rejected(R.NOT_AN_OBJECT, f"expected a JSON object, got {_json_type(event)}")
    event_type = event.get("event_type")
    if type(event_type) is not str:
        if event_type is None:
            return Rejected(
                R.MISSING_EVENT_TYPE, "event_type is missing" if "event_type" not in event else "event_type is null"
            )
        return Rejected(R.MISSING_EVENT_TYPE, f"event_type must be a string, got {_json_type(event_type)}")
    check = _RECORD_CHECKS.get(event_type)
    if check is None:
        return Rejected(R.UNKNOWN_EVENT_TYPE, f"event_type {_describe(event_type)} is not one of: {_DEFAULT_TYPE_LIST}")
    try:
        check(event, "")
        rule = _BUSINESS_RULES.get(event_type)
        if rule is not None:
            rule(event)
    except _Invalid as exc:
        return Rejected(exc.reason, exc.detail)
    # The event-time field passed its check above, so it parses.
    return Accepted(event_type, event, parse_timestamp(event[EVENT_TIME_FIELD[event_type]]))
