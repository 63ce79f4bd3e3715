"""Helpers shared by the generator tests: a frozen clock, small universes, and a schema conformance check."""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime
from typing import Any

from eventmodel.schema import EVENT_TIME_FIELD, SCHEMAS, Field
from generator.stream import EventStream, GeneratorConfig, OutgoingMessage

NOW = datetime(2025, 2, 8, 13, 9, 1, 123000, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
# A universe small enough to build in ~50 ms, so tests can afford many seeds.
SMALL = {"customers": 150, "products": 60, "warehouses": 4, "users": 200}

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


def frozen_clock() -> float:
    return NOW.timestamp()


def stream(run_id: str = "run-test", worker: int = 0, workers: int = 1, **config: Any) -> EventStream:
    settings = {**SMALL, **config}
    return EventStream(GeneratorConfig(**settings), run_id, worker=worker, workers=workers, clock=frozen_clock)


def ms_of(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def event_ms(message: OutgoingMessage, event: dict[str, Any]) -> int:
    return ms_of(event[EVENT_TIME_FIELD[message.event_type]])


def conformance_errors(event: dict[str, Any], fields: tuple[Field, ...], prefix: str = "") -> list[str]:
    """Everything in `event` that is not exactly the schema: keys, JSON types, formats, enums, ranges."""
    errors = []
    names = [f.name for f in fields]
    if list(event) != names:
        errors.append(f"{prefix or 'event'} keys {list(event)} != schema {names}")
    for f in fields:
        value = event.get(f.name)
        path = prefix + f.name
        if f.kind == "uuid" and not (type(value) is str and UUID.fullmatch(value)):
            errors.append(f"{path}: not a v4 UUID: {value!r}")
        elif f.kind == "timestamp" and not (type(value) is str and TIMESTAMP.fullmatch(value)):
            errors.append(f"{path}: not a millisecond UTC timestamp: {value!r}")
        elif f.kind == "string" and not (type(value) is str and value.strip() == value and value):
            errors.append(f"{path}: not a trimmed non-empty string: {value!r}")
        elif f.kind == "ip_address":
            try:
                ipaddress.ip_address(value)
            except (ValueError, TypeError):
                errors.append(f"{path}: not an IP address: {value!r}")
        elif f.kind == "integer" and not (type(value) is int and _in_range(value, f)):
            errors.append(f"{path}: not an integer in range: {value!r}")
        elif f.kind == "number" and not (type(value) in (int, float) and _in_range(value, f)):
            errors.append(f"{path}: not a number in range: {value!r}")
        elif f.kind == "enum" and value not in f.values:
            errors.append(f"{path}: {value!r} not in {f.values}")
        elif f.kind == "record":
            errors += (
                conformance_errors(value, f.fields, path + ".") if type(value) is dict else [f"{path}: not object"]
            )
        elif f.kind == "records":
            if type(value) is not list or not value:
                errors.append(f"{path}: not a non-empty array")
            else:
                for i, item in enumerate(value):
                    errors += conformance_errors(item, f.fields, f"{path}[{i}].")
    return errors


def _in_range(value: float, f: Field) -> bool:
    return (f.minimum is None or value >= f.minimum) and (f.maximum is None or value <= f.maximum)


def schema_errors(event_type: str, event: dict[str, Any]) -> list[str]:
    return conformance_errors(event, SCHEMAS[event_type])
