"""Hand-built events for the data-model tests: small, readable, and valid by eventmodel's own validator."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import orjson

from eventmodel.validate import Accepted, validate


def uid(label: str) -> str:
    """A stable UUID per label, so test data reads by name."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, label))


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def accepted(event: dict) -> Accepted:
    result = validate(orjson.dumps(event))
    assert isinstance(result, Accepted), result
    return result


def order(order_id: str, status: str, at: datetime, country: str = "DE") -> Accepted:
    items = [
        {"product_id": uid("p1"), "product_name": "Lamp", "quantity": 2, "price": 19.99},
        {"product_id": uid("p2"), "product_name": "Desk", "quantity": 1, "price": 150.1},
    ]
    return accepted(
        {
            "event_type": "order",
            "order_id": order_id,
            "customer_id": uid("customer"),
            "order_date": iso(at),
            "status": status,
            "items": items,
            "shipping_address": {"street": "1 Main St", "city": "Berlin", "country": country},
            "total_amount": 190.08,
        }
    )


def inventory(product: str, warehouse: str, change: int, reason: str, at: datetime, movement: str) -> Accepted:
    return accepted(
        {
            "event_type": "inventory",
            "inventory_id": uid(movement),
            "product_id": uid(product),
            "warehouse_id": uid(warehouse),
            "quantity_change": change,
            "reason": reason,
            "timestamp": iso(at),
        }
    )


def activity(session: str, activity_type: str, at: datetime, platform: str = "mobile") -> Accepted:
    return accepted(
        {
            "event_type": "user_activity",
            "user_id": uid("user"),
            "activity_type": activity_type,
            "ip_address": "203.0.113.7",
            "user_agent": "Mozilla/5.0",
            "timestamp": iso(at),
            "metadata": {"session_id": uid(session), "platform": platform},
        }
    )


T0 = datetime(2025, 2, 8, 13, 9, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
