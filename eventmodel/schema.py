"""The three event schemas of the assessment, declared once.

Everything else derives from these declarations: the validator compiles them into checks, the generator
builds events that satisfy them, the DDL tests compare BigQuery columns against them, and reconcile knows
each event's own timestamp field from them. Nothing else restates a field name, an enum or a range.

Wire format: UTF-8 JSON objects exactly as the assessment shows them; timestamps are UTC ISO-8601 with a Z
(offsets are accepted and normalised to UTC by the validator); ids are RFC 4122 UUID strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SCHEMA_VERSION = "1"

Kind = Literal["uuid", "timestamp", "string", "ip_address", "integer", "number", "enum", "record", "records"]


@dataclass(frozen=True, slots=True)
class Field:
    """One field of an event. `records` is an array of records (BigQuery ARRAY<STRUCT>)."""

    name: str
    kind: Kind
    required: bool = True
    values: tuple[str, ...] = ()  # allowed values of an enum
    minimum: int | float | None = None
    maximum: int | float | None = None
    fields: tuple[Field, ...] = ()  # members of a record / records
    description: str = ""


ORDER = "order"
INVENTORY = "inventory"
USER_ACTIVITY = "user_activity"
EVENT_TYPES: tuple[str, ...] = (ORDER, INVENTORY, USER_ACTIVITY)

ORDER_STATUSES = ("pending", "processing", "shipped", "delivered")
INVENTORY_REASONS = ("restock", "sale", "return", "damage")
ACTIVITY_TYPES = ("login", "logout", "view_product", "add_to_cart", "remove_from_cart")
PLATFORMS = ("web", "mobile", "tablet")

# The sign quantity_change must have for each inventory reason: stock goes up on restock and return,
# down on sale and damage. A zero change records nothing and is rejected with the sign rule.
INVENTORY_REASON_SIGN = {"restock": 1, "sale": -1, "return": 1, "damage": -1}
QUANTITY_CHANGE_RANGE = (-100, 100)


def _event_type(name: str) -> Field:
    return Field("event_type", "enum", values=(name,), description="discriminator; always the event's type")


SCHEMAS: dict[str, tuple[Field, ...]] = {
    ORDER: (
        _event_type(ORDER),
        Field("order_id", "uuid", description="one order; every status change is a new event with the same id"),
        Field("customer_id", "uuid"),
        Field("order_date", "timestamp", description="when this status was reached (the event time)"),
        Field("status", "enum", values=ORDER_STATUSES),
        Field(
            "items",
            "records",
            fields=(
                Field("product_id", "uuid"),
                Field("product_name", "string"),
                Field("quantity", "integer", minimum=1),
                Field("price", "number", minimum=0),
            ),
            description="at least one line; total_amount is the sum of quantity * price, rounded to cents",
        ),
        Field(
            "shipping_address",
            "record",
            fields=(Field("street", "string"), Field("city", "string"), Field("country", "string")),
        ),
        Field("total_amount", "number", minimum=0),
    ),
    INVENTORY: (
        _event_type(INVENTORY),
        Field("inventory_id", "uuid", description="one stock movement"),
        Field("product_id", "uuid"),
        Field("warehouse_id", "uuid"),
        Field(
            "quantity_change",
            "integer",
            minimum=QUANTITY_CHANGE_RANGE[0],
            maximum=QUANTITY_CHANGE_RANGE[1],
            description="signed: positive for restock/return, negative for sale/damage",
        ),
        Field("reason", "enum", values=INVENTORY_REASONS),
        Field("timestamp", "timestamp"),
    ),
    USER_ACTIVITY: (
        _event_type(USER_ACTIVITY),
        Field("user_id", "uuid"),
        Field("activity_type", "enum", values=ACTIVITY_TYPES),
        Field("ip_address", "ip_address", description="IPv4 or IPv6 text form"),
        Field("user_agent", "string"),
        Field("timestamp", "timestamp"),
        Field(
            "metadata",
            "record",
            fields=(Field("session_id", "uuid"), Field("platform", "enum", values=PLATFORMS)),
        ),
    ),
}

# The field holding each event's own time: it decides the GCS minute folder and the BigQuery partition.
EVENT_TIME_FIELD: dict[str, str] = {ORDER: "order_date", INVENTORY: "timestamp", USER_ACTIVITY: "timestamp"}

# Largest payload the pipeline accepts as an event; real events are about 0.3-2 KB. Beyond this it is a
# producer bug (or an attack), and the BigQuery streaming row limit would reject it later anyway.
MAX_PAYLOAD_BYTES = 1_000_000


def field_paths(event_type: str) -> dict[str, Field]:
    """Every field of a type by dotted path ("items.price"), records included; handy for checks and docs."""
    paths: dict[str, Field] = {}

    def walk(prefix: str, fields: tuple[Field, ...]) -> None:
        for f in fields:
            path = f"{prefix}{f.name}"
            paths[path] = f
            if f.fields:
                walk(f"{path}.", f.fields)

    walk("", SCHEMAS[event_type])
    return paths
