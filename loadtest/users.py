"""The Locust users: an abstract Pub/Sub user and the three scenario users, one per event type.

Each scenario user publishes the generator's events for its type (order lifecycles, inventory movements, user
sessions), with the run's share of malformed messages and duplicates, from a random substream of its own.
Weights follow the generator's default mix (30% orders, 30% inventory, 40% user activity).
"""

from __future__ import annotations

import itertools
from typing import Any, ClassVar

from locust import User, constant_throughput, task

from eventmodel.schema import INVENTORY, ORDER, USER_ACTIVITY
from generator.stream import EventStream, GeneratorConfig, parse_malformed_weights
from generator.universe import build_universe
from loadtest import run_manifest
from loadtest.client import PubSubClient

# Substreams: every user of every Locust process draws from its own (process index, user number) stream.
USERS_PER_PROCESS = 1_000_000
_numbers = itertools.count()


def build_universe_before_the_run(environment: Any) -> None:
    """On a local runner, build the seed's entity universe (Faker, ~1.5 s of CPU) at init, before the test starts.
    Built by the first user's on_start instead, it blocks every greenlet of the process for that long inside the run
    time. A worker learns the seed from its master's spawn message only, so its first user still builds it (building
    it at the worker's test_start delays the spawn by as long, and a short run then ends before any user starts)."""
    if run_manifest.runner_kind(environment) == "local":
        # With the arguments EventStream passes: they are the cache key.
        config = GeneratorConfig(seed=environment.parsed_options.seed)
        build_universe(config.seed, config.customers, config.products, config.warehouses, config.users)


class PubSubUser(User):
    """Publishes batches of `event_type` events to the topic; abstract (set event_type in a subclass)."""

    abstract = True
    event_type: ClassVar[str] = ""

    def wait_time(self) -> float:
        # --user-rate: batches per second per user (Locust's constant_throughput); 0 publishes flat out.
        rate = self.environment.parsed_options.user_rate
        return constant_throughput(rate)(self) if rate > 0 else 0.0

    def on_start(self) -> None:
        options = self.environment.parsed_options
        state = run_manifest.process_state(self.environment)
        config = GeneratorConfig(
            seed=options.seed,
            malformed_rate=options.malformed_rate,
            malformed_weights=parse_malformed_weights(options.malformed_kinds),
            duplicate_rate=options.duplicate_rate,
            type_weights={t: (1.0 if t == self.event_type else 0.0) for t in (ORDER, INVENTORY, USER_ACTIVITY)},
        )
        number = state.index * USERS_PER_PROCESS + next(_numbers)
        self.stream = EventStream(config, state.run_id, worker=number, workers=(state.index + 1) * USERS_PER_PROCESS)
        self.batch_size = options.batch_size
        topic = f"projects/{options.project}/topics/{options.topic}"
        self.client = PubSubClient(
            topic, options.emulator_host or None, self.environment.events.request, state.log, state.attempts
        )

    @task
    def publish(self) -> None:
        self.client.publish(self.stream.take(self.batch_size))

    def on_stop(self) -> None:
        self.client.close()


class OrderUser(PubSubUser):
    weight = 3
    event_type = ORDER


class InventoryUser(PubSubUser):
    weight = 3
    event_type = INVENTORY


class SessionUser(PubSubUser):
    weight = 4
    event_type = USER_ACTIVITY


def scenario_users() -> list[type[Any]]:
    return [OrderUser, InventoryUser, SessionUser]
