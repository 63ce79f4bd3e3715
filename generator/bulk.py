"""Bulk orders: an order event grown, line by line, to a payload of an exact number of bytes.

The `oversize` scenario needs valid orders at and just under the pipeline's size limit (eventmodel.schema
MAX_PAYLOAD_BYTES: a payload of exactly that many bytes is still an event) and orders just past it (the
`oversize_event` malformed kind). A wholesale customer's order of thousands of lines is how a real producer gets
there, so that is what is built: lines taken in turn from a list of products, one unit each (some lines 10, 100 or
1000 units, which is how the size is met to the byte), total_amount recomputed exactly as the validator recomputes
it (generator.factories.order_total), so the event stays valid whatever its size.

The money stays moderate on purpose (EventStream hands in the products priced up to BULK_LINE_PRICE_MAX): a
near-limit order of such lines totals well under 1,000,000, which every sink stores and compares exactly. The
scenario is about size; a total of millions would also test the sinks' NUMERIC range (the local BigQuery emulator
keeps NUMERIC as DuckDB's DECIMAL(18,3), and reconcile's canonical SQL overflows it from 1,000,000: reported).

    >>> import random
    >>> lines = [("6f1c3c8e-7d0a-4b8e-9d51-3f0e2c1b5a77", "Desk lamp", 24.5)]
    >>> event = {"event_type": "order", "order_id": "9b2f...", "items": [], "total_amount": 0}
    >>> len(grow_order(event, 20_000, lines, random.Random(1)))
    20000
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import orjson

from generator.factories import ITEMS, PRICE, PRODUCT_ID, PRODUCT_NAME, QUANTITY, TOTAL_AMOUNT, order_total

Line = tuple[str, str, float]  # product_id, product_name, price
Event = dict[str, Any]

# The smallest size grow_order is asked for: enough lines that changing quantities by one digit each can close any
# gap shorter than one line (four digits at most per quantity: a bulk order, not a typo).
BULK_MIN_BYTES = 10_000
MAX_QUANTITY_DIGITS = 4
_MARGIN = 64  # bytes kept free while adding lines in bulk: total_amount may gain digits as lines are added
BULK_LINE_PRICE_MAX = 50.0  # the dearest product a valid bulk order lists (see above)


def bulk_lines(lines: Sequence[Line]) -> tuple[Line, ...]:
    """The lines a valid bulk order is made of: the products priced up to BULK_LINE_PRICE_MAX (all of them when
    none is that cheap)."""
    return tuple(line for line in lines if line[2] <= BULK_LINE_PRICE_MAX) or tuple(lines)


def _digits(n: int) -> int:
    return len(str(n))


def grow_order(event: Event, size: int, lines: Sequence[Line], rng: random.Random) -> bytes:
    """orjson bytes of `event` (an order; its items and total_amount are replaced, in place) of exactly `size`
    bytes. Lines come from `lines` in turn from a random start. Raises ValueError for a size below
    BULK_MIN_BYTES."""
    if size < BULK_MIN_BYTES:
        raise ValueError(f"a bulk order needs at least {BULK_MIN_BYTES} bytes, got {size}")
    items: list[Event] = []
    event[ITEMS] = items
    at = rng.randrange(len(lines))
    longest = max(len(orjson.dumps({PRODUCT_ID: p, PRODUCT_NAME: n, QUANTITY: 10**MAX_QUANTITY_DIGITS - 1,
                                    PRICE: price})) for p, n, price in lines) + 1  # fmt: skip

    def add(count: int) -> None:
        nonlocal at
        for _ in range(count):
            product_id, name, price = lines[at % len(lines)]
            items.append({PRODUCT_ID: product_id, PRODUCT_NAME: name, QUANTITY: 1, PRICE: price})
            at += 1

    def encoded() -> bytes:
        event[TOTAL_AMOUNT] = order_total(items)
        return orjson.dumps(event)

    add(1)
    data = encoded()
    # Coarse: whole lines while more than a line (and a margin) is missing; never overshoots, as each line added
    # is at most `longest` bytes.
    while (gap := size - len(data)) > longest + _MARGIN:
        add((gap - _MARGIN) // longest)
        data = encoded()
    # Fine: a quantity given one digit more (1 -> 10 -> 100 -> 1000) or less is one byte more or less; total_amount
    # follows, and may change length with it, so measure again until the size is met.
    turn = 0
    for _ in range(64):
        gap = size - len(data)
        if gap == 0:
            return data
        step = 1 if gap > 0 else -1
        changed = 0
        for _ in range(len(items)):
            if changed == abs(gap):
                break
            item = items[turn % len(items)]
            turn += 1
            digits = _digits(item[QUANTITY]) + step
            if 1 <= digits <= MAX_QUANTITY_DIGITS:
                item[QUANTITY] = 10 ** (digits - 1)
                changed += 1
        if not changed:
            break
        data = encoded()
    gap = size - len(data)
    if gap < 0:  # pragma: no cover - the quantities can always lose the digits they were given
        raise RuntimeError(f"bulk order of {len(data)} bytes cannot shrink to {size}")
    # Last resort, when total_amount's own length kept moving: JSON white space between tokens (after the opening
    # brace) for the last bytes. The event is the same to every JSON reader; only its byte count changes.
    return data[:1] + b" " * gap + data[1:]
