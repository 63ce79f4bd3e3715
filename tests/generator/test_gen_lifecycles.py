"""Realistic behaviour over many samples: order lifecycles, inventory that follows orders, user sessions."""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from datetime import UTC, datetime

import orjson
import pytest
from gen_support import ms_of, stream

from eventmodel.schema import (
    ACTIVITY_TYPES,
    INVENTORY,
    INVENTORY_REASON_SIGN,
    ORDER,
    ORDER_STATUSES,
    QUANTITY_CHANGE_RANGE,
    USER_ACTIVITY,
)
from generator.factories import order_total

LOGIN, LOGOUT, VIEW, ADD, REMOVE = ACTIVITY_TYPES
HISTORY = (datetime(2025, 2, 1, tzinfo=UTC), datetime(2025, 2, 8, tzinfo=UTC))
MODES = {"now": {}, "history": {"history": HISTORY}, "late": {"late_rate": 0.2, "out_of_order_rate": 0.2}}


def events(seed: int, n: int = 12_000, **config) -> list[dict]:
    return [orjson.loads(m.data) for m in stream(seed=seed, **config).take(n) if m.expected != "dead_letter"]


@pytest.fixture(scope="module", params=list(MODES))
def sample(request):
    return request.param, [e for seed in (1, 2, 3) for e in events(seed, **MODES[request.param])]


def test_orders_move_through_their_lifecycle_in_order(sample):
    mode, evs = sample
    by_order = defaultdict(list)
    for e in evs:
        if e["event_type"] == ORDER:
            by_order[e["order_id"]].append(e)
    completed = 0
    for history in by_order.values():
        assert [h["status"] for h in history] == list(ORDER_STATUSES[: len(history)])
        first = history[0]
        for h in history:
            assert (h["items"], h["customer_id"], h["shipping_address"], h["total_amount"]) == (
                first["items"],
                first["customer_id"],
                first["shipping_address"],
                first["total_amount"],
            )
        dates = [ms_of(h["order_date"]) for h in history]
        assert dates == sorted(dates)
        if mode != "history":
            assert all(a < b for a, b in itertools.pairwise(dates))
        completed += len(history) == len(ORDER_STATUSES)
    assert completed > 100


def test_order_totals_are_the_sum_of_the_lines(sample):
    _, evs = sample
    for e in evs:
        if e["event_type"] == ORDER:
            assert e["total_amount"] == order_total(e["items"])
            assert e["total_amount"] == round(sum(i["quantity"] * i["price"] for i in e["items"]), 2)
            assert len({i["product_id"] for i in e["items"]}) == len(e["items"])


def test_inventory_signs_and_ranges_fit_the_reason(sample):
    _, evs = sample
    low, high = QUANTITY_CHANGE_RANGE
    reasons = Counter()
    for e in evs:
        if e["event_type"] == INVENTORY:
            change = e["quantity_change"]
            assert change != 0 and low <= change <= high
            assert change * INVENTORY_REASON_SIGN[e["reason"]] > 0
            reasons[e["reason"]] += 1
    assert set(reasons) == set(INVENTORY_REASON_SIGN)


def test_sales_follow_shipped_orders():
    evs = events(seed=5, n=30_000)
    shipped_lines = Counter()
    for e in evs:
        if e["event_type"] == ORDER and e["status"] == "shipped":
            for item in e["items"]:
                shipped_lines[(item["product_id"], -item["quantity"])] += 1
    sales = Counter(
        (e["product_id"], e["quantity_change"]) for e in evs if e["event_type"] == INVENTORY and e["reason"] == "sale"
    )
    assert sales and not sales - shipped_lines  # every sale is a line of a shipped order
    assert sales.total() > 0.9 * shipped_lines.total()  # and nearly every shipped line was sold already


def test_sessions_run_login_to_logout_on_one_device(sample):
    mode, evs = sample
    sessions = defaultdict(list)
    for e in evs:
        if e["event_type"] == USER_ACTIVITY:
            sessions[e["metadata"]["session_id"]].append(e)
    ended = 0
    for session in sessions.values():
        activities = [s["activity_type"] for s in session]
        assert activities[0] == LOGIN and LOGIN not in activities[1:]
        assert LOGOUT not in activities[:-1]
        ended += activities[-1] == LOGOUT
        assert len({(s["user_id"], s["user_agent"], s["ip_address"], s["metadata"]["platform"]) for s in session}) == 1
        cart = 0
        for a in activities:
            cart += (a == ADD) - (a == REMOVE)
            assert cart >= 0  # nothing is removed from an empty cart
        times = [ms_of(s["timestamp"]) for s in session]
        if mode == "history":
            assert times == sorted(times)
        else:
            assert all(a < b for a, b in itertools.pairwise(times))
    assert ended > 100
    assert len(sessions) > 300


def test_session_user_agents_match_platform():
    for e in events(seed=8, n=3_000):
        if e["event_type"] == USER_ACTIVITY and e["metadata"]["platform"] == "web":
            assert "Mobile" not in e["user_agent"]
