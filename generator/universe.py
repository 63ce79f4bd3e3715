"""The entity universe: customers, products, warehouses and users, built once per seed with Faker.

Faker costs ~250 µs per record, far too slow per event at 50,000 events/s, so it runs only here: the
universe is built once (about half a second for the default sizes) and the event factories draw from it
with a plain random.Random. Everything is derived from the seed, so the same seed gives the same universe.

    >>> u = build_universe(seed=7)
    >>> u.customers[0].address  # doctest: +SKIP
    ('Klara-Gorlitz-Platz 12', 'Wertingen', 'Germany')
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

from faker import Faker

from eventmodel.schema import PLATFORMS
from generator.ids import uuid4_str
from generator.providers import CommerceProvider, DeviceProvider

# Unpacked by position so that a platform added to the schema fails here, at import, until the generator
# knows which user agents it has.
WEB, MOBILE, TABLET = PLATFORMS

# (Faker locale, country as an English-speaking shop writes it, weight): a shop with mostly US and European
# customers; non-ASCII streets and cities (ü, é, ł, ã) keep the UTF-8 paths honest.
LOCALES = (
    ("en_US", "United States", 0.34),
    ("en_GB", "United Kingdom", 0.12),
    ("de_DE", "Germany", 0.12),
    ("fr_FR", "France", 0.10),
    ("es_ES", "Spain", 0.07),
    ("it_IT", "Italy", 0.06),
    ("nl_NL", "Netherlands", 0.05),
    ("en_CA", "Canada", 0.05),
    ("pl_PL", "Poland", 0.05),
    ("pt_BR", "Brazil", 0.04),
)
PLATFORM_WEIGHTS = {WEB: 0.5, MOBILE: 0.4, TABLET: 0.1}
IPV6_SHARE = 0.2  # share of users reaching the shop over IPv6


@dataclass(frozen=True, slots=True)
class Customer:
    customer_id: str
    address: tuple[str, str, str]  # street, city, country


@dataclass(frozen=True, slots=True)
class Product:
    product_id: str
    name: str
    price: float  # cents-rounded


@dataclass(frozen=True, slots=True)
class Warehouse:
    warehouse_id: str
    city: str


@dataclass(frozen=True, slots=True)
class User:
    user_id: str
    platform: str
    user_agent: str
    ip_address: str


@dataclass(frozen=True, slots=True)
class Universe:
    seed: int
    customers: tuple[Customer, ...]
    products: tuple[Product, ...]
    warehouses: tuple[Warehouse, ...]
    users: tuple[User, ...]


def _faker(seed: int) -> Faker:
    fake = Faker([code for code, _, _ in LOCALES])
    for i, (code, _, _) in enumerate(LOCALES):
        # Distinct seeds per locale: equal seeds make en_US and en_CA write the very same streets.
        fake[code].seed_instance(seed * 131 + i)
        fake[code].add_provider(CommerceProvider)
        fake[code].add_provider(DeviceProvider)
    _stable_order(fake)
    return fake


def _stable_order(fake: Faker) -> None:
    # Faker's it_IT builds its city list from a set, so its order, and the city a seed draws, changed with
    # PYTHONHASHSEED: the same seed gave different universes in different processes. Sorting fixes the order.
    for provider in fake["it_IT"].providers:
        if isinstance(getattr(provider, "cities", None), list):
            provider.cities = sorted(provider.cities)


def _clean(text: str) -> str:
    # Some locales' formats leave a trailing space ("... Puerta 5 ") or a line break.
    return " ".join(text.split())


def _customers(fake: Faker, rng: random.Random, n: int) -> tuple[Customer, ...]:
    locales = rng.choices(LOCALES, weights=[w for _, _, w in LOCALES], k=n)
    return tuple(
        Customer(uuid4_str(rng), (_clean(fake[code].street_address()), _clean(fake[code].city()), country))
        for code, country, _ in locales
    )


def _products(fake: Faker, rng: random.Random, n: int) -> tuple[Product, ...]:
    products = []
    for _ in range(n):
        name, price = fake["en_US"].product()
        products.append(Product(uuid4_str(rng), name, price))
    return tuple(products)


def _warehouses(fake: Faker, rng: random.Random, n: int) -> tuple[Warehouse, ...]:
    return tuple(Warehouse(uuid4_str(rng), fake[rng.choice(LOCALES)[0]].city()) for _ in range(n))


def _users(fake: Faker, rng: random.Random, n: int) -> tuple[User, ...]:
    devices = fake["en_US"]
    agents = {WEB: devices.desktop_user_agent, MOBILE: devices.mobile_user_agent, TABLET: devices.tablet_user_agent}
    platforms = rng.choices(tuple(PLATFORM_WEIGHTS), weights=tuple(PLATFORM_WEIGHTS.values()), k=n)
    return tuple(
        User(
            uuid4_str(rng),
            platform,
            agents[platform](),
            devices.ipv6() if rng.random() < IPV6_SHARE else devices.ipv4_public(),
        )
        for platform in platforms
    )


@functools.lru_cache(maxsize=8)
def build_universe(
    seed: int = 0, customers: int = 2_000, products: int = 500, warehouses: int = 12, users: int = 3_000
) -> Universe:
    """The universe for a seed and sizes; cached, so every stream of a process shares one build."""
    fake = _faker(seed)
    rng = random.Random(f"universe:{seed}")
    return Universe(
        seed=seed,
        customers=_customers(fake, rng, customers),
        products=_products(fake, rng, products),
        warehouses=_warehouses(fake, rng, warehouses),
        users=_users(fake, rng, users),
    )
