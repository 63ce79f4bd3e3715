"""The malformed-event catalogue: the mistakes real producers make, each with the reason code it must get.

Every kind is a small function (rng, a valid event dict) -> bytes that corrupts a fresh valid event the way
a buggy producer would (numbers as strings, epoch-millis timestamps, a time without a zone, an uppercase
enum, a UTF-8 BOM, a cut-off write, ...), and maps to exactly one code of eventmodel.reasons.PAYLOAD_REASONS.
The event handed in is the caller's to spoil: kinds mutate it freely.

Which field a kind corrupts is chosen from eventmodel.schema by kind of field (any uuid, any enum, any
required field), so the catalogue follows the schema instead of restating it. docs/generator.md lists the
kinds; tests/generator/test_malformed.py proves each one is rejected with its code.

    >>> kind = CATALOGUE["timestamp_without_zone"]
    >>> kind.reason
    'BAD_TIMESTAMP'
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import format_datetime
from typing import Any

import orjson

from eventmodel import reasons as R
from eventmodel.resources import ATTR_EVENT_ID
from eventmodel.schema import (
    ACTIVITY_TYPES,
    EVENT_TIME_FIELD,
    EVENT_TYPES,
    INVENTORY,
    INVENTORY_REASON_SIGN,
    INVENTORY_REASONS,
    MAX_PAYLOAD_BYTES,
    ORDER,
    ORDER_STATUSES,
    PLATFORMS,
    QUANTITY_CHANGE_RANGE,
    SCHEMAS,
    Field,
)
from eventmodel.validate import parse_timestamp
from generator.bulk import grow_order
from generator.factories import (
    EVENT_TYPE,
    ITEMS,
    PRICE,
    PRODUCT_ID,
    PRODUCT_NAME,
    QUANTITY,
    QUANTITY_CHANGE,
    REASON,
    TOTAL_AMOUNT,
)
from generator.ids import uuid4_str

Event = dict[str, Any]
Build = Callable[[random.Random, Event], bytes]


@dataclass(frozen=True, slots=True)
class MalformedKind:
    name: str
    reason: str  # the code eventmodel.validate must return
    build: Build
    description: str
    event_types: tuple[str, ...] = EVENT_TYPES  # the events it can corrupt
    claims_type: bool = True  # whether the producer still sets the event_type attribute


# --- picking a field by its kind in the schema ---------------------------------------------------------------

_ANY_FIELD = ("uuid", "timestamp", "string", "ip_address", "integer", "number", "enum", "record", "records")


@functools.cache
def _paths(event_type: str, kinds: frozenset[str]) -> tuple[tuple[str, ...], ...]:
    """Dotted paths (as key tuples) of the fields of `kinds`, event_type excluded, records descended into."""
    found: list[tuple[str, ...]] = []

    def walk(prefix: tuple[str, ...], fields: tuple[Field, ...]) -> None:
        for f in fields:
            path = (*prefix, f.name)
            if path == (EVENT_TYPE,):
                continue
            if f.kind in kinds and f.required:
                found.append(path)
            if f.fields:
                walk(path, f.fields)

    walk((), SCHEMAS[event_type])
    return tuple(found)


def _having(*kinds: str) -> tuple[str, ...]:
    """The event types that have a field of one of `kinds`: where a kind aimed at such fields applies."""
    return tuple(t for t in EVENT_TYPES if _paths(t, frozenset(kinds)))


def _slot(rng: random.Random, event: Event, *kinds: str) -> tuple[Any, str]:
    """(container, key) of a random field of one of `kinds`; inside an array, a random element's field."""
    path = rng.choice(_paths(event[EVENT_TYPE], frozenset(kinds)))
    container: Any = event
    for key in path[:-1]:
        container = container[key]
        if type(container) is list:
            container = rng.choice(container)
    return container, path[-1]


def aims_at(*kinds: str) -> Callable[[Build], Build]:
    """Mark a build as corrupting a field of `kinds`: it then applies to the event types having one."""

    def mark(build: Build) -> Build:
        build.field_kinds = kinds  # type: ignore[attr-defined]
        return build

    return mark


def _dumps(event: Event) -> bytes:
    return orjson.dumps(event)


def _replace(*kinds: str, value: Callable[[random.Random, Any], Any]) -> Build:
    """A kind that replaces one field of `kinds` by value(rng, old)."""

    def build(rng: random.Random, event: Event) -> bytes:
        container, key = _slot(rng, event, *kinds)
        container[key] = value(rng, container[key])
        return _dumps(event)

    return aims_at(*kinds)(build)


# --- the body as a whole ---------------------------------------------------------------------------------------


def empty_body(rng: random.Random, event: Event) -> bytes:
    return b""


def whitespace_body(rng: random.Random, event: Event) -> bytes:
    return rng.choice((b" ", b"\n", b"\r\n", b"\t \n"))


def oversize_batch(rng: random.Random, event: Event) -> bytes:
    # A producer that flushes its whole buffer as one message: an array of events past the size limit.
    one = _dumps(event)
    return b"[" + b",".join([one] * (MAX_PAYLOAD_BYTES // (len(one) + 1) + 2)) + b"]"


OVERSIZE_EVENT_MAX_BYTES = 2 * MAX_PAYLOAD_BYTES  # far enough past the limit; Pub/Sub itself takes 10 MB


def oversize_event(rng: random.Random, event: Event) -> bytes:
    # A producer that never caps an order's lines: one valid-looking order just past the size limit (the first
    # byte too many, a quarter of the time) or up to twice it.
    low = MAX_PAYLOAD_BYTES + 1
    size = low if rng.random() < 0.25 else rng.randint(low + 1, OVERSIZE_EVENT_MAX_BYTES)
    lines = [(item[PRODUCT_ID], item[PRODUCT_NAME], item[PRICE]) for item in event[ITEMS]]
    return grow_order(event, size, lines, rng)


# Text a Windows-1252 producer writes with bytes that are not UTF-8.
_ACCENTED = ("Café", "Müller", "Señora", "Crème brûlée", "Ærøskøbing", "São Paulo", "½ price")


@aims_at("string")
def cp1252_encoded(rng: random.Random, event: Event) -> bytes:
    container, key = _slot(rng, event, "string")
    container[key] = f"{container[key]} {rng.choice(_ACCENTED)}"
    return _dumps(event).decode().encode("cp1252", errors="replace")


def utf16_encoded(rng: random.Random, event: Event) -> bytes:
    # .NET and PowerShell writers default to UTF-16 with a byte-order mark.
    return _dumps(event).decode().encode("utf-16")


def _char_boundary(data: bytes, cut: int) -> int:
    while cut > 1 and (data[cut] & 0xC0) == 0x80:  # never split a multi-byte character: that is INVALID_UTF8
        cut -= 1
    return cut


def cut_off_write(rng: random.Random, event: Event) -> bytes:
    data = _dumps(event)
    return data[: _char_boundary(data, rng.randrange(1, len(data) - 1))]


def python_repr(rng: random.Random, event: Event) -> bytes:
    # str(dict) instead of json.dumps: single quotes, True/None.
    return str(event).encode()


@aims_at("number", "integer")
def nan_literal(rng: random.Random, event: Event) -> bytes:
    # json.dumps(float("nan")) writes NaN, which is not JSON.
    container, key = _slot(rng, event, "number", "integer")
    container[key] = "\x00nan\x00"
    return _dumps(event).replace(b'"\\u0000nan\\u0000"', rng.choice((b"NaN", b"Infinity", b"-Infinity")))


def trailing_comma(rng: random.Random, event: Event) -> bytes:
    return _dumps(event)[:-1] + b",}"


def bom_prefix(rng: random.Random, event: Event) -> bytes:
    return b"\xef\xbb\xbf" + _dumps(event)


def concatenated_events(rng: random.Random, event: Event) -> bytes:
    # Two events in one message, back to back or as JSON lines.
    one = _dumps(event)
    return one + rng.choice((b"", b"\n")) + one


def key_value_log(rng: random.Random, event: Event) -> bytes:
    return " ".join(f"{k}={v}" for k, v in event.items()).encode()


def wrapped_in_array(rng: random.Random, event: Event) -> bytes:
    return b"[" + _dumps(event) + b"]"


def double_encoded(rng: random.Random, event: Event) -> bytes:
    # json.dumps applied twice: a JSON string holding the event.
    return orjson.dumps(_dumps(event).decode())


def bare_json_value(rng: random.Random, event: Event) -> bytes:
    return rng.choice((b"null", b"true", b"0", b'"ok"', b"[]"))


# --- event_type ------------------------------------------------------------------------------------------------


def missing_event_type(rng: random.Random, event: Event) -> bytes:
    del event[EVENT_TYPE]
    return _dumps(event)


def renamed_event_type(rng: random.Random, event: Event) -> bytes:
    # Another service's envelope convention: "type" or "eventType".
    renamed = {rng.choice(("type", "eventType", "kind")) if k == EVENT_TYPE else k: v for k, v in event.items()}
    return _dumps(renamed)


def event_type_not_string(rng: random.Random, event: Event) -> bytes:
    event[EVENT_TYPE] = rng.choice((None, EVENT_TYPES.index(event[EVENT_TYPE]), [event[EVENT_TYPE]]))
    return _dumps(event)


def _type_variants(event_type: str) -> tuple[str, ...]:
    spellings = (
        event_type.upper(),
        event_type.title(),
        event_type + "s",
        event_type + "_event",
        event_type.replace("_", "-"),
        "".join(p.title() if i else p for i, p in enumerate(event_type.split("_"))),
        "page_view",
        "payment",
    )
    return tuple(dict.fromkeys(s for s in spellings if s not in EVENT_TYPES))


def misspelled_event_type(rng: random.Random, event: Event) -> bytes:
    event[EVENT_TYPE] = rng.choice(_type_variants(event[EVENT_TYPE]))
    return _dumps(event)


# --- required fields -------------------------------------------------------------------------------------------


@aims_at(*_ANY_FIELD)
def missing_field(rng: random.Random, event: Event) -> bytes:
    container, key = _slot(rng, event, *_ANY_FIELD)
    del container[key]
    return _dumps(event)


@aims_at(*_ANY_FIELD)
def null_field(rng: random.Random, event: Event) -> bytes:
    container, key = _slot(rng, event, *_ANY_FIELD)
    container[key] = None
    return _dumps(event)


def event_id_in_payload(rng: random.Random, event: Event) -> bytes:
    # The envelope's id written into the body as well.
    event[ATTR_EVENT_ID] = uuid4_str(rng)
    return _dumps(event)


_EXTRA_NAMES = ("created_at", "source", "version", "currency", "postal_code", "sku", "app_version", "trace_id")


@aims_at(*_ANY_FIELD)
def extra_field(rng: random.Random, event: Event) -> bytes:
    container, _ = _slot(rng, event, *_ANY_FIELD)  # the top level or any record, weighted by field count
    name = rng.choice([n for n in _EXTRA_NAMES if n not in container])
    container[name] = rng.choice(("web-backend", "2", 1, True, "EUR"))
    return _dumps(event)


# --- types -----------------------------------------------------------------------------------------------------


def _as_text(rng: random.Random, value: Any) -> str:
    return rng.choice((str(value), f"{value:.2f}" if isinstance(value, float) else str(value), "NaN"))


def _as_float(rng: random.Random, value: Any) -> float:
    return float(value)


def _epoch_millis(rng: random.Random, value: Any) -> int:
    return int(parse_timestamp(value).timestamp() * 1000)


def epoch_millis_timestamp(rng: random.Random, event: Event) -> bytes:
    key = EVENT_TIME_FIELD[event[EVENT_TYPE]]
    event[key] = _epoch_millis(rng, event[key])
    return _dumps(event)


@aims_at("record", "records")
def record_as_json_string(rng: random.Random, event: Event) -> bytes:
    container, key = _slot(rng, event, "record", "records")
    container[key] = _dumps(container[key]).decode()
    return _dumps(event)


@aims_at("uuid")
def id_as_number(rng: random.Random, event: Event) -> bytes:
    container, key = _slot(rng, event, "uuid")
    container[key] = rng.randrange(1, 10_000_000)
    return _dumps(event)


# --- values ----------------------------------------------------------------------------------------------------

_BLANKS = ("", " ", "  ", "\t", "\n")


def _blank(rng: random.Random, value: Any) -> str:
    return rng.choice(_BLANKS)


def _upper(rng: random.Random, value: Any) -> str:
    return value.upper()


def _padded(rng: random.Random, value: Any) -> str:
    return rng.choice((f"{value} ", f" {value}", f"{value}\n"))


# Values a producer's newer (or older) enum has that the schema does not, keyed by the schema's enum.
_FOREIGN_VALUES = {
    ORDER_STATUSES: ("cancelled", "canceled", "refunded", "on_hold", "returned"),
    INVENTORY_REASONS: ("transfer", "adjustment", "theft", "recount"),
    ACTIVITY_TYPES: ("purchase", "search", "checkout", "page_view"),
    PLATFORMS: ("ios", "android", "desktop", "smart_tv"),
}
_ENUM_OF = {v: values for values in _FOREIGN_VALUES for v in values}


@aims_at("enum")
def foreign_enum_value(rng: random.Random, event: Event) -> bytes:
    container, key = _slot(rng, event, "enum")
    container[key] = rng.choice(_FOREIGN_VALUES[_ENUM_OF[container[key]]])
    return _dumps(event)


def _without_dashes(rng: random.Random, value: str) -> str:
    return value.replace("-", "")


def _braced(rng: random.Random, value: str) -> str:
    return rng.choice((f"{{{value}}}", f"urn:uuid:{value}"))


def _legacy_id(rng: random.Random, value: str) -> str:
    return rng.choice((f"ORD-{rng.randrange(10**6):06d}", str(rng.randrange(1, 10**9)), value[:-1], value[:8]))


def _time_field(build: Callable[[random.Random, str], str]) -> Build:
    def kind(rng: random.Random, event: Event) -> bytes:
        key = EVENT_TIME_FIELD[event[EVENT_TYPE]]
        event[key] = build(rng, event[key])
        return _dumps(event)

    return kind


def _no_zone(rng: random.Random, value: str) -> str:
    return value[:-1]


def _space_separated(rng: random.Random, value: str) -> str:
    return value.replace("T", " ")


def _epoch_text(rng: random.Random, value: str) -> str:
    millis = _epoch_millis(rng, value)
    return rng.choice((str(millis), str(millis // 1000)))


def _rfc2822(rng: random.Random, value: str) -> str:
    return format_datetime(parse_timestamp(value), usegmt=True)


def _impossible_date(rng: random.Random, value: str) -> str:
    # Day 30 of February, month 13, hour 25: the pattern fits, the calendar does not.
    year = value[:4]
    return rng.choice((f"{year}-02-30{value[10:]}", f"{year}-13-{value[8:]}", f"{value[:11]}25:{value[14:]}"))


def _ip_with_port(rng: random.Random, value: str) -> str:
    port = rng.choice((443, 80, 8080, 51234))
    return f"[{value}]:{port}" if ":" in value else f"{value}:{port}"


def _forwarded_for(rng: random.Random, value: str) -> str:
    # The whole X-Forwarded-For header instead of its first address.
    return f"{value}, 10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def _hostname(rng: random.Random, value: str) -> str:
    return rng.choice(("localhost", "unknown", f"ip-10-0-{rng.randrange(256)}-{rng.randrange(256)}.ec2.internal"))


def _octet_overflow(rng: random.Random, value: str) -> str:
    return f"{rng.randrange(256, 1000)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}"


# --- numbers and business rules ---------------------------------------------------------------------------------


def bulk_quantity_change(rng: random.Random, event: Event) -> bytes:
    # A pallet booked as one movement: beyond the range, with the sign its reason wants.
    low, high = QUANTITY_CHANGE_RANGE
    sign = INVENTORY_REASON_SIGN[event[REASON]]
    event[QUANTITY_CHANGE] = rng.randint(high + 1, high * 10) if sign > 0 else rng.randint(low * 10, low - 1)
    return _dumps(event)


def zero_quantity(rng: random.Random, event: Event) -> bytes:
    rng.choice(event[ITEMS])[QUANTITY] = 0
    return _dumps(event)


def negative_price(rng: random.Random, event: Event) -> bytes:
    item = rng.choice(event[ITEMS])
    item[PRICE] = -item[PRICE]
    return _dumps(event)


def negative_quantity(rng: random.Random, event: Event) -> bytes:
    # A cancelled line written as a negative quantity.
    item = rng.choice(event[ITEMS])
    item[QUANTITY] = -item[QUANTITY]
    return _dumps(event)


def negative_total(rng: random.Random, event: Event) -> bytes:
    # A refund booked on the order itself.
    event[TOTAL_AMOUNT] = -event[TOTAL_AMOUNT]
    return _dumps(event)


def empty_items(rng: random.Random, event: Event) -> bytes:
    event[ITEMS] = []
    event[TOTAL_AMOUNT] = rng.choice((0.0, 0))
    return _dumps(event)


def total_with_shipping(rng: random.Random, event: Event) -> bytes:
    event[TOTAL_AMOUNT] = round(event[TOTAL_AMOUNT] + rng.choice((4.99, 5.95, 9.99)), 2)
    return _dumps(event)


def total_with_tax(rng: random.Random, event: Event) -> bytes:
    event[TOTAL_AMOUNT] = round(event[TOTAL_AMOUNT] * rng.choice((1.19, 1.2, 1.21)), 2)
    return _dumps(event)


def total_in_cents(rng: random.Random, event: Event) -> bytes:
    event[TOTAL_AMOUNT] = round(event[TOTAL_AMOUNT] * 100)
    return _dumps(event)


def line_added_after_total(rng: random.Random, event: Event) -> bytes:
    # A retry appended a line twice after the total was computed.
    event[ITEMS].append(dict(rng.choice(event[ITEMS])))
    return _dumps(event)


def wrong_sign(rng: random.Random, event: Event) -> bytes:
    # A sale booked as a positive number, a restock as a negative one.
    event[QUANTITY_CHANGE] = -event[QUANTITY_CHANGE]
    return _dumps(event)


def zero_quantity_change(rng: random.Random, event: Event) -> bytes:
    event[QUANTITY_CHANGE] = 0
    return _dumps(event)


# --- the catalogue ---------------------------------------------------------------------------------------------


def _kind(
    name: str,
    reason: str,
    build: Build,
    description: str,
    types: tuple[str, ...] | None = None,
    claims_type: bool = True,
) -> MalformedKind:
    if types is None:
        kinds = getattr(build, "field_kinds", None)
        types = _having(*kinds) if kinds else EVENT_TYPES
    return MalformedKind(name, reason, build, description, types, claims_type)


_NO_TYPE = {"claims_type": False}  # the producer of such a body sets no event_type attribute either
_TEXT = ("string", "ip_address")
_O, _I = (ORDER,), (INVENTORY,)

# fmt: off
KINDS: tuple[MalformedKind, ...] = (
    _kind("empty_body", R.EMPTY_PAYLOAD, empty_body, "no bytes at all", **_NO_TYPE),
    _kind("whitespace_body", R.EMPTY_PAYLOAD, whitespace_body, "only spaces or newlines", **_NO_TYPE),
    _kind("oversize_batch", R.OVERSIZE_PAYLOAD, oversize_batch, "a whole buffer of events as one message, > 1 MB"),
    _kind("oversize_event", R.OVERSIZE_PAYLOAD, oversize_event, "one order of thousands of lines, 1-2 MB", _O),
    _kind("cp1252_encoded", R.INVALID_UTF8, cp1252_encoded, "accented text written as Windows-1252, not UTF-8"),
    _kind("utf16_encoded", R.INVALID_UTF8, utf16_encoded, "the JSON written as UTF-16 with a byte-order mark"),
    _kind("cut_off_write", R.TRUNCATED_JSON, cut_off_write, "the JSON cut off at a random point"),
    _kind("python_repr", R.NOT_JSON, python_repr, "str(dict) instead of JSON: single quotes, True, None"),
    _kind("nan_literal", R.NOT_JSON, nan_literal, "a number written as NaN or Infinity"),
    _kind("trailing_comma", R.NOT_JSON, trailing_comma, "a comma before the closing brace"),
    _kind("bom_prefix", R.NOT_JSON, bom_prefix, "a UTF-8 byte-order mark before the JSON"),
    _kind("concatenated_events", R.NOT_JSON, concatenated_events, "two events in one message"),
    _kind("key_value_log", R.NOT_JSON, key_value_log, "a key=value log line instead of JSON", **_NO_TYPE),
    _kind("wrapped_in_array", R.NOT_AN_OBJECT, wrapped_in_array, "the event inside a one-element array"),
    _kind("double_encoded", R.NOT_AN_OBJECT, double_encoded, "the event JSON encoded again as a JSON string"),
    _kind("bare_json_value", R.NOT_AN_OBJECT, bare_json_value, "null, true, 0, a string or []", **_NO_TYPE),
    _kind("missing_event_type", R.MISSING_EVENT_TYPE, missing_event_type, "no event_type"),
    _kind("renamed_event_type", R.MISSING_EVENT_TYPE, renamed_event_type, "event_type under another name (type)"),
    _kind("event_type_not_string", R.MISSING_EVENT_TYPE, event_type_not_string, "event_type null, a number, a list"),
    _kind("misspelled_event_type", R.UNKNOWN_EVENT_TYPE, misspelled_event_type, "ORDER, orders, user-activity, ..."),
    _kind("missing_field", R.MISSING_FIELD, missing_field, "a required field left out, at any depth"),
    _kind("null_field", R.NULL_FIELD, null_field, "a required field set to null, at any depth"),
    _kind("event_id_in_payload", R.UNEXPECTED_FIELD, event_id_in_payload, "the envelope's event_id in the body"),
    _kind("extra_field", R.UNEXPECTED_FIELD, extra_field, "a field the schema lacks (currency, sku, ...)"),
    _kind("number_as_string", R.WRONG_TYPE, _replace("number", "integer", value=_as_text), 'quoted: "19.99", "NaN"'),
    _kind("integer_as_float", R.WRONG_TYPE, _replace("integer", value=_as_float), "a count written as 2.0"),
    _kind("epoch_millis_timestamp", R.WRONG_TYPE, epoch_millis_timestamp, "the event time as epoch milliseconds"),
    _kind("record_as_json_string", R.WRONG_TYPE, record_as_json_string, "a nested object sent as a JSON string"),
    _kind("id_as_number", R.WRONG_TYPE, id_as_number, "a database row number instead of the UUID"),
    _kind("blank_string", R.BLANK_STRING, _replace(*_TEXT, value=_blank), "a text field empty or white space"),
    _kind("uppercase_enum", R.BAD_ENUM, _replace("enum", value=_upper), "SHIPPED, WEB: the enum upper-cased"),
    _kind("padded_enum", R.BAD_ENUM, _replace("enum", value=_padded), "an enum value with a stray space or newline"),
    _kind("foreign_enum_value", R.BAD_ENUM, foreign_enum_value, "cancelled, transfer, purchase, ios: not in the enum"),
    _kind("uuid_without_dashes", R.BAD_UUID, _replace("uuid", value=_without_dashes), "32 hex digits, no dashes"),
    _kind("braced_uuid", R.BAD_UUID, _replace("uuid", value=_braced), "{...} or urn:uuid:... around the UUID"),
    _kind("legacy_id", R.BAD_UUID, _replace("uuid", value=_legacy_id), "ORD-000123, a row number, a cut-off UUID"),
    _kind("timestamp_without_zone", R.BAD_TIMESTAMP, _time_field(_no_zone), "2025-02-08T13:09:01.123 (no Z)"),
    _kind("space_separated_timestamp", R.BAD_TIMESTAMP, _time_field(_space_separated), "2025-02-08 13:09:01.123Z"),
    _kind("epoch_text_timestamp", R.BAD_TIMESTAMP, _time_field(_epoch_text), "epoch seconds or millis as a string"),
    _kind("rfc2822_timestamp", R.BAD_TIMESTAMP, _time_field(_rfc2822), "Sat, 08 Feb 2025 13:09:01 GMT"),
    _kind("impossible_date", R.BAD_TIMESTAMP, _time_field(_impossible_date), "February 30th, month 13, hour 25"),
    _kind("ip_with_port", R.BAD_IP_ADDRESS, _replace("ip_address", value=_ip_with_port), "address:port"),
    _kind("forwarded_for_chain", R.BAD_IP_ADDRESS, _replace("ip_address", value=_forwarded_for), "X-Forwarded-For"),
    _kind("hostname_as_ip", R.BAD_IP_ADDRESS, _replace("ip_address", value=_hostname), "localhost or a host name"),
    _kind("octet_overflow", R.BAD_IP_ADDRESS, _replace("ip_address", value=_octet_overflow), "an octet above 255"),
    _kind("bulk_quantity_change", R.OUT_OF_RANGE, bulk_quantity_change, "quantity_change beyond -100..100", _I),
    _kind("zero_quantity", R.OUT_OF_RANGE, zero_quantity, "an order line of 0 units", _O),
    _kind("negative_price", R.NEGATIVE_VALUE, negative_price, "a line price below zero", _O),
    _kind("negative_quantity", R.NEGATIVE_VALUE, negative_quantity, "a line quantity below zero", _O),
    _kind("negative_total", R.NEGATIVE_VALUE, negative_total, "a refund as a negative total", _O),
    _kind("empty_items", R.EMPTY_ITEMS, empty_items, "an order with no lines", _O),
    _kind("total_with_shipping", R.TOTAL_MISMATCH, total_with_shipping, "the total includes a shipping fee", _O),
    _kind("total_with_tax", R.TOTAL_MISMATCH, total_with_tax, "the total includes VAT", _O),
    _kind("total_in_cents", R.TOTAL_MISMATCH, total_in_cents, "the total in cents", _O),
    _kind("line_added_after_total", R.TOTAL_MISMATCH, line_added_after_total, "a line appended after totalling", _O),
    _kind("wrong_sign", R.SIGN_MISMATCH, wrong_sign, "a sale that adds stock, a restock that removes it", _I),
    _kind("zero_quantity_change", R.SIGN_MISMATCH, zero_quantity_change, "a movement of 0 units", _I),
)
# fmt: on
CATALOGUE: dict[str, MalformedKind] = {k.name: k for k in KINDS}


def markdown_table() -> str:
    """The catalogue as the Markdown table docs/generator.md holds (a test keeps the two equal)."""
    lines = [
        "| kind | reason code | what the producer got wrong | underlying event types |",
        "| --- | --- | --- | --- |",
    ]
    lines += [
        f"| `{k.name}` | `{k.reason}` | {k.description.replace('|', '/')} | {', '.join(k.event_types)} |" for k in KINDS
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # python -m generator.malformed: print the table for docs/generator.md
    print(markdown_table(), end="")
