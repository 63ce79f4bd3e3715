"""Event factories: valid events assembled cheaply from the entity universe with a seeded random.Random.

No Faker here: every value comes from the universe or from `rng`, so one event costs a few microseconds.
Three factories keep the state that makes the streams realistic:
- OrderBook: a pool of open orders; each order event is either a new order (pending) or the next status of
  an open one (pending -> processing -> shipped -> delivered), with the same items, customer, address and
  total in every status event and a later order_date each time;
- InventoryFeed: one sale per order line when the order ships (quantity_change = -quantity), the occasional
  return after delivery, and stand-alone restocks, returns and damage with the sign their reason demands;
- SessionPool: open user sessions running login -> view_product* -> add_to_cart/remove_from_cart* -> logout
  under one session_id, with the user's own platform, user agent and IP.

Events share nested objects (items, address, metadata) with the factories' state: encode them, don't mutate
them (sample_event() gives a fresh event that is the caller's to spoil).

Field names, enums and ranges come from eventmodel.schema; the names are unpacked by position, so a field
added to or removed from the schema fails here at import rather than producing events the validator rejects.
"""

from __future__ import annotations

import random
from collections import deque
from typing import Any

from eventmodel.schema import (
    ACTIVITY_TYPES,
    INVENTORY,
    INVENTORY_REASON_SIGN,
    INVENTORY_REASONS,
    ORDER,
    ORDER_STATUSES,
    QUANTITY_CHANGE_RANGE,
    SCHEMAS,
    USER_ACTIVITY,
)
from generator.ids import TimestampFormatter, uuid4_str
from generator.timeline import Timeline
from generator.universe import Customer, Product, Universe, User

Event = dict[str, Any]


def _names(event_type: str, record: str | None = None) -> tuple[str, ...]:
    fields = SCHEMAS[event_type]
    if record is not None:
        fields = next(f for f in fields if f.name == record).fields
    return tuple(f.name for f in fields)


EVENT_TYPE, ORDER_ID, CUSTOMER_ID, ORDER_DATE, STATUS, ITEMS, SHIPPING_ADDRESS, TOTAL_AMOUNT = _names(ORDER)
PRODUCT_ID, PRODUCT_NAME, QUANTITY, PRICE = _names(ORDER, ITEMS)
STREET, CITY, COUNTRY = _names(ORDER, SHIPPING_ADDRESS)
_, INVENTORY_ID, INV_PRODUCT_ID, WAREHOUSE_ID, QUANTITY_CHANGE, REASON, INV_TIMESTAMP = _names(INVENTORY)
_, USER_ID, ACTIVITY_TYPE, IP_ADDRESS, USER_AGENT, UA_TIMESTAMP, METADATA = _names(USER_ACTIVITY)
SESSION_ID, PLATFORM = _names(USER_ACTIVITY, METADATA)

# ORDER_STATUSES is the lifecycle, in order.
PENDING, PROCESSING, SHIPPED, DELIVERED = ORDER_STATUSES
RESTOCK, SALE, RETURN, DAMAGE = INVENTORY_REASONS
LOGIN, LOGOUT, VIEW_PRODUCT, ADD_TO_CART, REMOVE_FROM_CART = ACTIVITY_TYPES

MINUTE_MS, HOUR_MS, DAY_MS = 60_000, 3_600_000, 86_400_000


def order_total(items: list[Event]) -> float:
    """total_amount exactly as the validator recomputes it: the sum of quantity * price, rounded to cents."""
    return round(sum(item[QUANTITY] * item[PRICE] for item in items), 2)


def clamp_change(magnitude: int, reason: str) -> int:
    """A non-zero quantity_change of `magnitude` with the sign of `reason`, inside QUANTITY_CHANGE_RANGE."""
    sign = INVENTORY_REASON_SIGN[reason]
    low, high = QUANTITY_CHANGE_RANGE
    limit = high if sign > 0 else -low
    return sign * max(1, min(magnitude, limit))


class _OpenOrder:
    __slots__ = ("base", "lag", "last", "lines", "stage", "warehouse_id")

    def __init__(self, base: Event, warehouse_id: str, lag: int, last: int) -> None:
        self.base = base  # the event with every field but status and order_date final
        self.warehouse_id = warehouse_id
        self.lag = lag
        self.last = last
        self.stage = 0


class OrderBook:
    """Open orders advanced over time; sales and returns they cause go to the inventory feed."""

    # Lines per order and units per line, weighted the way baskets look: mostly one or two.
    LINE_COUNTS = (1, 1, 1, 1, 2, 2, 2, 3, 3, 4, 5)
    QUANTITIES = (1, 1, 1, 1, 1, 1, 2, 2, 3, 4)
    # History mode gap to the next status, (min, max) ms: minutes to process, hours to ship, days to deliver.
    STATUS_GAPS_MS = ((MINUTE_MS, 30 * MINUTE_MS), (2 * HOUR_MS, 48 * HOUR_MS), (DAY_MS, 5 * DAY_MS))
    assert len(STATUS_GAPS_MS) == len(ORDER_STATUSES) - 1, "one gap per status change"
    RETURN_SHARE = 0.05  # delivered orders with one line sent back
    NEW_ORDER_SHARE = 0.3  # while the pool has room; otherwise open orders advance
    LAST_STAGE = len(ORDER_STATUSES) - 1

    def __init__(
        self,
        universe: Universe,
        rng: random.Random,
        timeline: Timeline,
        fmt: TimestampFormatter,
        feed: InventoryFeed,
        open_orders: int = 200,
    ) -> None:
        self._u = universe
        self._rng = rng
        self._timeline = timeline
        self._fmt = fmt
        self._feed = feed
        self._open: list[_OpenOrder] = []
        self._target = open_orders

    def _new_base(self) -> Event:
        rng = self._rng
        customer: Customer = rng.choice(self._u.customers)
        products: list[Product] = rng.sample(self._u.products, rng.choice(self.LINE_COUNTS))
        quantities = self.QUANTITIES
        items = [
            {PRODUCT_ID: p.product_id, PRODUCT_NAME: p.name, QUANTITY: rng.choice(quantities), PRICE: p.price}
            for p in products
        ]
        street, city, country = customer.address
        return {
            EVENT_TYPE: ORDER,
            ORDER_ID: uuid4_str(rng),
            CUSTOMER_ID: customer.customer_id,
            ORDER_DATE: None,
            STATUS: None,
            ITEMS: items,
            SHIPPING_ADDRESS: {STREET: street, CITY: city, COUNTRY: country},
            TOTAL_AMOUNT: order_total(items),
        }

    def next_event(self) -> Event:
        rng = self._rng
        pool = self._open
        if not pool or (len(pool) < self._target and rng.random() < self.NEW_ORDER_SHARE):
            lag = self._timeline.lag()
            order = _OpenOrder(self._new_base(), rng.choice(self._u.warehouses).warehouse_id, lag, 0)
            order.last = self._timeline.first(lag)
            pool.append(order)
        else:
            i = rng.randrange(len(pool))
            order = pool[i]
            order.stage += 1
            low, high = self.STATUS_GAPS_MS[order.stage - 1]
            order.last = self._timeline.after(order.last, order.lag, rng.randint(low, high))
            if order.stage == self.LAST_STAGE:  # delivered: the order's life is over
                pool[i] = pool[-1]
                pool.pop()
        event = dict(order.base)
        event[ORDER_DATE] = self._fmt(order.last)
        status = ORDER_STATUSES[order.stage]
        event[STATUS] = status
        if status == SHIPPED:
            self._feed.sales(order.base[ITEMS], order.warehouse_id, order.last)
        elif status == DELIVERED and rng.random() < self.RETURN_SHARE:
            line = rng.choice(order.base[ITEMS])
            when = self._timeline.after(order.last, order.lag, rng.randint(DAY_MS, 14 * DAY_MS))
            self._feed.queue(
                line[PRODUCT_ID], order.warehouse_id, clamp_change(rng.randint(1, line[QUANTITY]), RETURN), when
            )
        return event

    def bulk_base(self) -> Event:
        """A new pending order that joins no pool (it never advances): the start of a bulk order, whose lines the
        caller replaces (generator.bulk). Late and out of order like any new order."""
        event = self._new_base()
        event[ORDER_DATE] = self._fmt(self._timeline.first(self._timeline.lag()))
        event[STATUS] = PENDING
        return event

    def sample_event(self) -> Event:
        """A valid order event in any status that touches no open order (material for malformed kinds)."""
        event = self._new_base()
        event[ORDER_DATE] = self._fmt(self._timeline.first(0))
        event[STATUS] = self._rng.choice(ORDER_STATUSES)
        return event


class InventoryFeed:
    """Stock movements: queued sales/returns caused by orders first, stand-alone restock/return/damage else."""

    # Stand-alone movements: (reason, weight, magnitudes). Restocks come in case packs, damage is a unit or two.
    STANDALONE = (
        (RESTOCK, 0.45, (12, 20, 24, 25, 40, 48, 50, 60, 96, 100)),
        (RETURN, 0.35, (1, 1, 1, 2, 3)),
        (DAMAGE, 0.20, (1, 1, 2, 3, 6)),
    )
    FOLLOW_SHARE = 0.7  # chance an inventory event serves the queue of order-caused movements when it has any
    QUEUE_LIMIT = 10_000  # bounded memory when orders far outweigh inventory events; the oldest are dropped

    def __init__(self, universe: Universe, rng: random.Random, timeline: Timeline, fmt: TimestampFormatter) -> None:
        self._u = universe
        self._rng = rng
        self._timeline = timeline
        self._fmt = fmt
        self._queue: deque[tuple[str, str, int, str, int]] = deque(maxlen=self.QUEUE_LIMIT)
        self._reasons = tuple(r for r, _, _ in self.STANDALONE)
        self._cum = []
        total = 0.0
        for _, weight, _ in self.STANDALONE:
            total += weight
            self._cum.append(total)
        self._magnitudes = {r: m for r, _, m in self.STANDALONE}

    def sales(self, items: list[Event], warehouse_id: str, when: int) -> None:
        for item in items:
            self._queue.append((item[PRODUCT_ID], warehouse_id, clamp_change(item[QUANTITY], SALE), SALE, when))

    def queue(self, product_id: str, warehouse_id: str, change: int, when: int) -> None:
        self._queue.append((product_id, warehouse_id, change, RETURN, when))

    def next_event(self) -> Event:
        rng = self._rng
        if self._queue and rng.random() < self.FOLLOW_SHARE:
            product_id, warehouse_id, change, reason, when = self._queue.popleft()
            return self._event(product_id, warehouse_id, change, reason, when)
        return self._standalone(self._timeline.first(self._timeline.lag()))

    def _standalone(self, when: int) -> Event:
        rng = self._rng
        r = rng.random() * self._cum[-1]
        reason = self._reasons[0 if r < self._cum[0] else 1 if r < self._cum[1] else 2]
        change = clamp_change(rng.choice(self._magnitudes[reason]), reason)
        return self._event(
            rng.choice(self._u.products).product_id, rng.choice(self._u.warehouses).warehouse_id, change, reason, when
        )

    def _event(self, product_id: str, warehouse_id: str, change: int, reason: str, when: int) -> Event:
        return {
            EVENT_TYPE: INVENTORY,
            INVENTORY_ID: uuid4_str(self._rng),
            INV_PRODUCT_ID: product_id,
            WAREHOUSE_ID: warehouse_id,
            QUANTITY_CHANGE: change,
            REASON: reason,
            INV_TIMESTAMP: self._fmt(when),
        }

    def sample_event(self) -> Event:
        """A valid stand-alone movement that leaves the queue alone (material for malformed kinds)."""
        event = self._standalone(self._timeline.first(0))
        if self._rng.random() < 0.3:  # sales too, so malformed kinds see every reason
            event[REASON] = SALE
            event[QUANTITY_CHANGE] = clamp_change(self._rng.choice(OrderBook.QUANTITIES), SALE)
        return event


class _Session:
    __slots__ = ("cart", "lag", "last", "metadata", "steps", "user")

    def __init__(self, user: User, metadata: Event, lag: int, last: int, steps: int) -> None:
        self.user = user
        self.metadata = metadata  # one dict shared by every event of the session
        self.lag = lag
        self.last = last
        self.steps = steps  # events left before the session is logged out
        self.cart = 0  # items in the cart: nothing can be removed from an empty cart


class SessionPool:
    """Concurrent user sessions, each advanced one activity at a time."""

    STEP_GAP_MS = (2_000, 90_000)  # history mode: seconds to a minute and a half between clicks
    STEPS = (2, 25)  # activities between login and the forced logout
    # After login and each later step: view 55%, add 20%, remove 8% (when the cart has items), logout 17%.
    VIEW, ADD, REMOVE = 0.55, 0.75, 0.83
    NEW_SESSION_SHARE = 0.15

    def __init__(
        self,
        universe: Universe,
        rng: random.Random,
        timeline: Timeline,
        fmt: TimestampFormatter,
        open_sessions: int = 100,
    ) -> None:
        self._u = universe
        self._rng = rng
        self._timeline = timeline
        self._fmt = fmt
        self._open: list[_Session] = []
        self._target = open_sessions

    def next_event(self) -> Event:
        rng = self._rng
        pool = self._open
        if not pool or (len(pool) < self._target and rng.random() < self.NEW_SESSION_SHARE):
            user: User = rng.choice(self._u.users)
            lag = self._timeline.lag()
            session = _Session(
                user,
                {SESSION_ID: uuid4_str(rng), PLATFORM: user.platform},
                lag,
                self._timeline.first(lag),
                rng.randint(*self.STEPS),
            )
            pool.append(session)
            activity = LOGIN
        else:
            i = rng.randrange(len(pool))
            session = pool[i]
            session.last = self._timeline.after(session.last, session.lag, rng.randint(*self.STEP_GAP_MS))
            session.steps -= 1
            r = rng.random()
            if session.steps <= 0 or r >= self.REMOVE:
                activity = LOGOUT
                pool[i] = pool[-1]
                pool.pop()
            elif r < self.VIEW or (r >= self.ADD and not session.cart):
                activity = VIEW_PRODUCT
            elif r < self.ADD:
                activity = ADD_TO_CART
                session.cart += 1
            else:
                activity = REMOVE_FROM_CART
                session.cart -= 1
        user = session.user
        return {
            EVENT_TYPE: USER_ACTIVITY,
            USER_ID: user.user_id,
            ACTIVITY_TYPE: activity,
            IP_ADDRESS: user.ip_address,
            USER_AGENT: user.user_agent,
            UA_TIMESTAMP: self._fmt(session.last),
            METADATA: session.metadata,
        }

    def sample_event(self) -> Event:
        """A valid activity of a fresh session that joins no pool (material for malformed kinds)."""
        rng = self._rng
        user: User = rng.choice(self._u.users)
        return {
            EVENT_TYPE: USER_ACTIVITY,
            USER_ID: user.user_id,
            ACTIVITY_TYPE: rng.choice(ACTIVITY_TYPES),
            IP_ADDRESS: user.ip_address,
            USER_AGENT: user.user_agent,
            UA_TIMESTAMP: self._fmt(self._timeline.first(0)),
            METADATA: {SESSION_ID: uuid4_str(rng), PLATFORM: user.platform},
        }
