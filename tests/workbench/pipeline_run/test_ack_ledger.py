"""The local run's ack ledger (workbench/pipeline_run/ack_ledger.py), driven by a fake clock: a message is
acknowledged once every copy of it is committed, never before; its lease is extended while it waits; the reader
pulls only while there is room. No Pub/Sub and no sleeps: acknowledge and extend are recorded, and the test runs
the ledger's two periodic steps (a flush of the acks, an extension of the leases) itself, at the times it chooses.
"""

from __future__ import annotations

import pytest

from workbench.pipeline_run.ack_ledger import ACK_BATCH, AckLedger


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class PubSub:
    """What the ledger sent: acknowledged ack ids (one list per request) and lease extensions."""

    def __init__(self) -> None:
        self.acks: list[list[str]] = []
        self.extensions: list[tuple[list[str], int]] = []
        self.down = False

    def acknowledge(self, ack_ids: list[str]) -> None:
        if self.down:
            raise ConnectionRefusedError("503 failed to connect to all addresses")
        self.acks.append(list(ack_ids))

    def extend(self, ack_ids: list[str], seconds: int) -> None:
        if self.down:
            raise ConnectionRefusedError("503 failed to connect to all addresses")
        self.extensions.append((list(ack_ids), seconds))

    @property
    def acked(self) -> list[str]:
        return [a for request in self.acks for a in request]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def pubsub() -> PubSub:
    return PubSub()


def ledger_of(pubsub: PubSub, clock: FakeClock, **settings) -> AckLedger:
    return AckLedger(pubsub.acknowledge, pubsub.extend, clock=clock, **settings)


def test_a_message_is_acknowledged_once_every_copy_is_committed_and_not_before(pubsub, clock):
    ledger = ledger_of(pubsub, clock)
    ledger.received([("m1", "ack-1", 100), ("m2", "ack-2", 50)])
    ledger.hold("m1", 2)  # two more sinks write m1: three copies in all
    for _ in range(2):
        ledger.release(["m1"])
        ledger._flush_acks()
        assert pubsub.acked == [], "acknowledged before its last sink committed it"
    ledger.release(["m1", "m2"])
    ledger._flush_acks()
    assert sorted(pubsub.acked) == ["ack-1", "ack-2"]
    assert ledger.outstanding() == 0 and ledger.snapshot().acked == 2


def test_a_redelivery_of_a_pending_message_is_one_more_copy_and_both_ack_ids_are_acknowledged(pubsub, clock):
    ledger = ledger_of(pubsub, clock)
    ledger.received([("m1", "first", 10)])
    ledger.received([("m1", "again", 10)])  # Pub/Sub redelivered it while the sinks still worked on it
    assert ledger.outstanding() == 1 and ledger.snapshot().outstanding_bytes == 10
    ledger.release(["m1"])
    ledger._flush_acks()
    assert pubsub.acked == []
    ledger.release(["m1"])
    ledger._flush_acks()
    assert sorted(pubsub.acked) == ["again", "first"]
    stats = ledger.snapshot()
    assert (stats.received, stats.acked, stats.outstanding, stats.outstanding_bytes) == (2, 2, 0, 0)


def test_a_release_of_a_message_this_ledger_never_read_changes_nothing(pubsub, clock):
    ledger = ledger_of(pubsub, clock)
    ledger.received([("m1", "ack-1", 10)])
    ledger.release(["not-read-here", "m1", "m1"])  # the second m1 is a release after the message was finished
    ledger._flush_acks()
    assert pubsub.acked == ["ack-1"] and ledger.outstanding() == 0


def test_the_reader_has_room_while_fewer_than_the_limits_are_outstanding(pubsub, clock):
    by_count = ledger_of(pubsub, clock, max_messages=2)
    by_count.received([("m1", "a1", 1)])
    assert by_count.room()
    by_count.received([("m2", "a2", 1)])
    assert not by_count.room()
    by_count.release(["m1"])
    assert by_count.room()

    by_size = ledger_of(pubsub, clock, max_bytes=1000)
    by_size.received([("big", "a", 999)])
    assert by_size.room()
    by_size.received([("more", "b", 1)])
    assert not by_size.room()
    by_size.release(["big"])
    assert by_size.room() and by_size.snapshot().outstanding_bytes == 1


def test_a_pending_lease_is_extended_shortly_before_it_runs_out_and_a_finished_one_never(pubsub, clock):
    ledger = ledger_of(pubsub, clock, ack_deadline_seconds=10)
    ledger.received([("pending", "p", 1), ("done", "d", 1)])  # leases run out at +10 s
    ledger.release(["done"])
    clock.now += 4.9  # 5.1 s left: more than the margin (5 s)
    ledger._extend_leases()
    assert pubsub.extensions == []
    clock.now += 0.1  # 5 s left
    ledger._extend_leases()
    assert pubsub.extensions == [(["p"], 10)], "extended by the subscription's deadline, the finished one not"
    clock.now += 1  # the new lease runs out 10 s after the extension
    ledger._extend_leases()
    assert len(pubsub.extensions) == 1
    clock.now += 4
    ledger._extend_leases()
    assert pubsub.extensions == [(["p"], 10), (["p"], 10)]
    assert ledger.snapshot().extended == 2


@pytest.mark.parametrize(("deadline", "extended_by", "margin"), [(30, 30, 5.0), (60, 60, 5.0), (5, 10, 5.0)])
def test_a_lease_is_extended_by_the_subscriptions_deadline_at_least_the_minimum(
    pubsub, clock, deadline, extended_by, margin
):
    ledger = ledger_of(pubsub, clock, ack_deadline_seconds=deadline)
    ledger.received([("m", "a", 1)])
    clock.now += deadline - margin - 0.01
    ledger._extend_leases()
    assert pubsub.extensions == []
    clock.now += 0.01
    ledger._extend_leases()
    assert pubsub.extensions == [(["a"], extended_by)]


def test_acks_go_in_requests_of_at_most_a_batch(pubsub, clock):
    ledger = ledger_of(pubsub, clock)
    count = ACK_BATCH * 2 + 500
    ledger.received([(f"m{i}", f"a{i}", 1) for i in range(count)])
    ledger.release([f"m{i}" for i in range(count)])
    ledger._flush_acks()
    assert [len(request) for request in pubsub.acks] == [ACK_BATCH, ACK_BATCH, 500]
    assert len(set(pubsub.acked)) == count


def test_acks_that_fail_are_kept_and_sent_once_pubsub_answers_again(pubsub, clock):
    ledger = ledger_of(pubsub, clock)
    ledger.received([("m1", "a1", 1)])
    ledger.release(["m1"])
    pubsub.down = True
    assert ledger._flush_acks() is False
    clock.now += 3
    assert ledger._flush_acks() is False
    assert ledger.source.down_for() == 3 and "503" in ledger.snapshot().troubles["pubsub acks"]
    pubsub.down = False
    assert ledger._flush_acks() is True
    assert pubsub.acked == ["a1"], "sent once, after the outage"
    assert ledger.source.down_for() == 0 and "pubsub acks" not in ledger.snapshot().troubles


def test_an_extension_that_fails_counts_as_pubsub_down_and_is_not_counted_as_extended(pubsub, clock):
    ledger = ledger_of(pubsub, clock, ack_deadline_seconds=10)
    ledger.received([("m1", "a1", 1)])
    clock.now += 5
    pubsub.down = True
    ledger._extend_leases()
    clock.now += 2
    assert ledger.source.down_for() == 2 and ledger.snapshot().extended == 0


def test_close_acknowledges_what_was_committed_and_counts_what_was_not(pubsub, clock):
    ledger = ledger_of(pubsub, clock)
    ledger.received([("m1", "a1", 1), ("m2", "a2", 1), ("m3", "a3", 1)])
    ledger.release(["m1", "m3"])
    assert ledger.close() == 1  # m2: Pub/Sub delivers it again to the next run
    assert sorted(pubsub.acked) == ["a1", "a3"]


def test_a_sinks_trouble_is_shown_until_it_clears(pubsub, clock):
    ledger = ledger_of(pubsub, clock)
    ledger.trouble("bigquery", "ServiceUnavailable: 503")
    assert ledger.snapshot().troubles == {"bigquery": "ServiceUnavailable: 503"}
    ledger.trouble("bigquery", None)
    assert ledger.snapshot().troubles == {}
