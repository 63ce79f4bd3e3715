"""The entity universe: built once per seed, deterministic, and internally consistent."""

from __future__ import annotations

import ipaddress
import time

import pytest

from eventmodel.schema import PLATFORMS
from generator.universe import MOBILE, TABLET, WEB, build_universe


@pytest.fixture(scope="module")
def universe():
    return build_universe(seed=11)


def test_default_sizes_build_well_under_two_seconds():
    started = time.perf_counter()
    u = build_universe.__wrapped__(seed=12345)  # bypass the cache: measure a real build
    assert time.perf_counter() - started < 2.0
    assert (len(u.customers), len(u.products), len(u.warehouses), len(u.users)) == (2_000, 500, 12, 3_000)


def test_same_seed_same_universe_and_cached():
    assert build_universe.__wrapped__(seed=3, customers=50, products=20, warehouses=2, users=50) == build_universe(
        seed=3, customers=50, products=20, warehouses=2, users=50
    )
    assert build_universe(seed=3, customers=50, products=20, warehouses=2, users=50) is build_universe(
        seed=3, customers=50, products=20, warehouses=2, users=50
    )


def test_different_seeds_differ():
    a = build_universe(seed=1, customers=50, products=20, warehouses=2, users=50)
    b = build_universe(seed=2, customers=50, products=20, warehouses=2, users=50)
    assert a.customers[0] != b.customers[0] and a.users[0] != b.users[0]


def test_ids_are_unique(universe):
    ids = [c.customer_id for c in universe.customers] + [p.product_id for p in universe.products]
    ids += [w.warehouse_id for w in universe.warehouses] + [u.user_id for u in universe.users]
    assert len(ids) == len(set(ids))


def test_addresses_are_clean_and_international(universe):
    countries = {c.address[2] for c in universe.customers}
    assert len(countries) >= 6
    for customer in universe.customers:
        for part in customer.address:
            assert part and part == " ".join(part.split())


def test_prices_are_positive_and_cents_rounded(universe):
    for product in universe.products:
        assert product.price > 0
        assert round(product.price, 2) == product.price
        assert product.name.strip() == product.name


def test_user_agents_match_platforms(universe):
    assert {u.platform for u in universe.users} == set(PLATFORMS)
    for user in universe.users:
        agent = user.user_agent
        if user.platform == MOBILE:
            assert "Mobile" in agent and ("iPhone" in agent or "Android" in agent)
        elif user.platform == TABLET:
            assert "iPad" in agent or ("Android" in agent and " Mobile " not in agent)
        else:
            assert user.platform == WEB
            assert not any(token in agent for token in ("iPhone", "iPad", "Android", "Mobile"))


def test_ips_are_valid_with_some_ipv6(universe):
    versions = [ipaddress.ip_address(u.ip_address).version for u in universe.users]
    share_v6 = versions.count(6) / len(versions)
    assert 0.1 < share_v6 < 0.3
