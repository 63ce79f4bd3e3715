"""The Locust load test on the real local stack: it publishes, its failures are real failures, and its runs
(one process, or a master and two workers) reconcile after the pipeline drains them, like a publish run.
"""

from __future__ import annotations

import csv
from pathlib import Path

import orjson
import pytest
from loadtest_support import aggregated, drain_and_reconcile, options, target

from loadtest.run_manifest import iter_attempts
from publisher.manifest import iter_events, run_dir
from reconcile.run import reconcile
from workbench.loadtest_run import run_loadtest

pytestmark = pytest.mark.integration


def test_a_short_headless_run_publishes_without_failures_and_reconciles(stack):
    run_id, code = run_loadtest(options(stack))
    assert code == 0
    stats = aggregated(run_id)
    assert int(stats["Request Count"]) > 500 and int(stats["Failure Count"]) == 0
    manifest = orjson.loads((run_dir(run_id) / "manifest.json").read_bytes())
    # The manifest holds every confirmed message. locust_stats.csv is a lower bound: Locust rewrites it once a
    # second and not again at shutdown (2.47), and a user stopped mid-call still finishes its batch afterwards.
    assert manifest["status"] == "completed" and manifest["totals"]["failed"] == 0
    assert 0 < int(stats["Request Count"]) <= manifest["totals"]["published"]
    rows = list(iter_events(run_id))
    assert {r["expected"] for r in rows} == {"order", "inventory", "user_activity", "dead_letter"}
    assert any(r["duplicate"] == "1" for r in rows)
    assert (run_dir(run_id) / "locust.html").exists()
    report = drain_and_reconcile(stack, run_id)
    assert report.exit_code == 0, report.headline()
    assert sum(r["sent"] for r in report.by_kind) > 0


def test_a_second_load_test_of_the_same_seed_reconciles_too(stack):
    """Two runs of the same seed, read by one pipeline that deduplicates by event id: the second run's events are
    new events (ids of their own), not repeats of the first's (48,543 'missing' were seen when ids repeated)."""
    first, code = run_loadtest(options(stack, run_time="2s"))
    assert code == 0
    second, code = run_loadtest(options(stack, run_time="2s"))
    assert code == 0
    ids = [{r["event_id"] for r in iter_events(run_id)} for run_id in (first, second)]
    assert not ids[0] & ids[1]
    report = drain_and_reconcile(stack, second)
    assert report.exit_code == 0, report.headline()
    assert reconcile(first, target(stack)).exit_code == 0


def test_publishing_to_a_missing_topic_is_failures_with_the_grpc_error(stack):
    run_id, code = run_loadtest(options(stack, topic="no-such-topic", run_time="2s"))
    assert code == 1  # Locust's exit status when requests failed
    stats = aggregated(run_id)
    assert int(stats["Request Count"]) > 0 and stats["Failure Count"] == stats["Request Count"]
    with (run_dir(run_id) / "locust_failures.csv").open(newline="") as f:
        errors = {r["Error"] for r in csv.DictReader(f)}
    assert errors and all("NOT_FOUND" in e for e in errors), errors
    assert {r["outcome"] for r in iter_events(run_id)} == {"failed"}
    # NOT_FOUND is not retried (the library retries only transient codes): one attempt, recorded with its code.
    attempts = list(iter_attempts(run_id))
    assert {(a["attempt"], a["code"], a["outcome"]) for a in attempts} == {("1", "NOT_FOUND", "failed")}
    assert {a["event_id"] for a in attempts} == {r["event_id"] for r in iter_events(run_id)}


def test_a_master_and_two_workers_make_one_reconcilable_run(stack):
    # Workers report to the master every 3 s and each builds its entity universe first (~1.5 s of Faker).
    run_id, code = run_loadtest(options(stack, workers=2, users=4, run_time="8s"))
    assert code == 0
    assert sorted(p.name for p in run_dir(run_id).glob("events-*.csv")) == ["events-1.csv", "events-2.csv"]
    manifest = orjson.loads((run_dir(run_id) / "manifest.json").read_bytes())
    assert 0 < int(aggregated(run_id)["Request Count"]) <= manifest["totals"]["published"]
    ids = [r["event_id"] for r in iter_events(run_id) if r["duplicate"] != "1"]
    assert len(ids) == len(set(ids))  # the workers' substreams never share an event id
    report = drain_and_reconcile(stack, run_id)
    assert report.exit_code == 0, report.headline()


@pytest.mark.slow
def test_a_hundred_users_for_a_minute_never_crash(stack, tmp_path):
    """gevent and gRPC together, as Locust runs them: 100 users for 60 s, no crash and no failure."""
    run_id, code = run_loadtest(options(stack, users=100, spawn_rate=50, run_time="60s", user_rate=2, batch_size=5))
    assert code == 0
    stats = aggregated(run_id)
    assert int(stats["Failure Count"]) == 0 and int(stats["Request Count"]) > 50_000
    assert not Path(run_dir(run_id) / "locust_exceptions.csv").read_text().strip().splitlines()[1:]


def test_the_shapes_mean_what_publish_profiles_mean():
    from loadtest.shape_curves import users_at  # pure: importing Locust here would gevent-patch pytest

    assert [users_at("steady", p, 40) for p in (0, 0.5, 0.99)] == [40, 40, 40]
    assert [users_at("step", p, 40) for p in (0, 0.3, 0.6, 0.9)] == [10, 20, 30, 40]
    assert [users_at("ramp", p, 41) for p in (0, 0.5, 1)] == [1, 21, 41]
    assert [users_at("spike", p, 40) for p in (0.1, 0.45, 0.7)] == [10, 40, 10]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--run-time", "ten"], "is not a duration"),
        (["--users", "0"], "--users must be at least 1"),
        (["--workers", "-1"], "--workers must be 0 or more"),
    ],
)
def test_bad_flags_say_what_to_write_instead(tmp_path, monkeypatch, capsys, args, says):
    from workbench.cli import main

    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path))
    with pytest.raises(SystemExit) as exit_:
        main(["loadtest", "--emulator", "127.0.0.1:9", *args])
    assert exit_.value.code == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # nothing started, nothing recorded
