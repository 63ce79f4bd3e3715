"""How `workbench check` turns a run's manifest and reconcile's rows into the scorecard's input (pure parts)."""

from __future__ import annotations

from battery.model import Lag, SentEvent
from workbench.check_run import first_published, lags_of, phases_of


def _sent(event_id: str, published_ms: int | None, duplicate: bool = False) -> SentEvent:
    return SentEvent(event_id, "steady", "order", "order", None, None, None, duplicate, "m", published_ms)


def test_a_copy_without_a_publish_time_is_timed_from_the_first_acknowledged_message():
    events = [_sent("a", 1_000), _sent("b", 2_000), _sent("a", 5_000, duplicate=True), _sent("c", None)]
    published = first_published(events)
    assert published == {"a": 1_000, "b": 2_000}
    rows = [
        {"event_id": "a", "sink": "gcs", "publish_ms": 900, "landed_ms": 4_000},  # the sink's own publish time wins
        {"event_id": "a", "sink": "bigquery", "publish_ms": None, "landed_ms": 3_000},
        {"event_id": "b", "sink": "bigquery", "publish_ms": None, "landed_ms": 2_500},
        {"event_id": "c", "sink": "bigquery", "publish_ms": None, "landed_ms": 9_000},  # neither: left out
    ]
    assert lags_of(rows, published) == [Lag("a", "gcs", 900, 4_000), Lag("a", "bigquery", 1_000, 3_000),
                                        Lag("b", "bigquery", 2_000, 2_500)]  # fmt: skip


def test_phases_are_read_with_their_wall_clock_spans():
    manifest = {"phases": [
        {"name": "steady", "rate": 500, "seed": 0, "started_at": "2026-12-07T18:00:00Z",
         "finished_at": "2026-12-07T18:01:00.500Z", "sent": 30_000, "published": 29_999},
        {"name": "burst", "rate": 5000, "seed": 6, "started_at": "2026-12-07T18:01:00.500Z", "finished_at": None,
         "sent": 10, "published": 10},
    ]}  # fmt: skip
    steady, burst = phases_of(manifest)
    assert (steady.name, steady.rate, steady.seed, steady.sent) == ("steady", 500.0, 0, 29_999)
    assert steady.finished_ms - steady.started_ms == 60_500
    assert burst.seed == 6 and burst.finished_ms == 0  # still running: no end yet
    assert phases_of({}) == []
