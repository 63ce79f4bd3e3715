"""Runs of phases (publisher.run.Phase, `workbench check`'s scenarios as one run): each phase is published in
order with its own rate, bound and generator settings, every event is tagged with its phase in the manifest, and
manifest.json says when each phase ran and what it sent. Against a real Pub/Sub emulator, with one worker thread
and with two worker processes; a stop in the middle phase leaves the later one unpublished.

The plan checks and the merge of the workers' phase reports are pure and tested first.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from datetime import datetime

import pytest

from generator.stream import EventStream, GeneratorConfig
from publisher.manifest import EVENT_COLUMNS, INTERRUPTED, iter_events, load_manifest, run_dir
from publisher.run import Phase, Publisher, PublishPlan, publish, run_with_signals
from publisher.s3 import S3Target
from publisher.sinks import FileTarget, PubSubTarget
from publisher.stats import WorkerSnapshot, merge_phases

FILE = FileTarget("-")


def phases(*specs: tuple[str, float, int]) -> tuple[Phase, ...]:
    return tuple(Phase(name, rate, count=count, generator=GeneratorConfig(seed=i + 1)) for i, (name, rate, count)
                 in enumerate(specs))  # fmt: skip


# ---- the plan: totals, shares, checks (pure) ----


def test_a_run_of_phases_sends_the_sum_of_its_phases_split_per_phase_between_the_workers():
    plan = PublishPlan(
        run_id="r",
        target=PubSubTarget("p", "t", None),
        workers=2,
        phases=(
            Phase("steady", 100, count=101, generator=GeneratorConfig(seed=1)),
            Phase("burst", 1000, duration=0.5, generator=GeneratorConfig(seed=2)),  # 500
            Phase("ramp", 400, duration=1.3, profile="ramp:1s:0", count=1000, generator=GeneratorConfig(seed=3)),
        ),
    )
    plan.check()
    assert [p.total() for p in plan.phases] == [101, 500, 320]
    assert plan.total() == 921
    legs = [plan.legs(w) for w in (0, 1)]
    assert [[leg.quota for leg in worker] for worker in legs] == [[51, 250, 160], [50, 250, 160]]
    assert [leg.name for leg in legs[0]] == ["steady", "burst", "ramp"]
    assert plan.worker_quota(0) + plan.worker_quota(1) == 921
    # Each worker paces at its share of each phase's own rate.
    assert [leg.profile.rate(5.0) for leg in legs[1]] == [50, 500, 200]


def test_a_run_without_phases_is_one_untagged_leg():
    plan = PublishPlan(run_id="r", target=FILE, rate=300, count=1000)
    (leg,) = plan.legs(0)
    assert (leg.name, leg.quota, leg.profile.rate(1.0)) == ("", 1000, 300)


@pytest.mark.parametrize(
    ("plan_changes", "phase_list", "says"),
    [
        ({"count": 100}, phases(("a", 10, 5)), "drop the run's count and duration"),
        ({"duration": 5.0}, phases(("a", 10, 5)), "drop the run's count and duration"),
        ({}, phases(("a", 10, 5), ("a", 20, 5)), "two phases are named 'a'"),
        ({}, phases(("", 10, 5)), "every phase needs a name"),
        ({}, phases(("  ", 10, 5)), "every phase needs a name"),
        ({}, (Phase("open", 10),), "phase 'open' has no end: give it a count or a duration"),
        ({}, (Phase("a", 0, count=5),), "phase 'a': --rate must be greater than 0"),
        ({}, (Phase("a", 10, count=-1),), "phase 'a': count must be a positive number"),
        ({}, (Phase("a", 10, duration=0),), "phase 'a': duration must be longer than 0"),
        ({}, (Phase("a", 10, count=5, profile="wobble"),), "phase 'a': unknown --profile 'wobble'"),
        ({}, (Phase("a", 10, count=5, generator=GeneratorConfig(malformed_rate=2.0)),), "phase 'a': malformed_rate"),
        ({}, (Phase("a", 10, count=5), Phase("b", 10, count=5)), "phases 'a' and 'b' both have seed 0"),
        (
            {},
            (
                Phase("a", 10, count=5, generator=GeneratorConfig(seed=1, ids_of="x")),
                Phase("b", 10, count=5, generator=GeneratorConfig(seed=2)),
            ),
            "give every phase the same ids_of",
        ),
        ({"target": S3Target("s3://bucket/x")}, phases(("a", 10, 5)), "phases publish to Pub/Sub or a file"),
        ({"target": FileTarget("out.jsonl"), "workers": 2}, phases(("a", 10, 5)), "drop --workers"),
    ],
)
def test_check_refuses_a_bad_run_of_phases_with_the_fix(plan_changes, phase_list, says):
    plan = PublishPlan(**{"run_id": "r", "target": PubSubTarget("p", "t", None), "phases": phase_list, **plan_changes})
    with pytest.raises(ValueError) as refused:
        plan.check()
    assert says in str(refused.value)


def test_with_phases_the_plans_own_rate_and_generator_do_not_apply():
    plan = PublishPlan(
        run_id="r", target=FILE, generator=GeneratorConfig(malformed_rate=5.0), phases=phases(("a", 9, 3))
    )
    plan.check()  # no rate, a generator that would not validate: neither is used
    with pytest.raises(ValueError, match="--rate must be greater than 0"):
        PublishPlan(run_id="r", target=FILE, count=3).check()


def test_merging_phase_reports_takes_the_first_start_and_the_last_end_once_no_worker_can_still_send():
    names = ["a", "b", "c"]
    w0 = WorkerSnapshot(worker=0, phase="b", phase_started={"a": 10.0, "b": 12.0}, phase_finished={"a": 12.0},
                        phase_sent={"a": 5, "b": 2}, phase_published={"a": 5, "b": 1})  # fmt: skip
    w1 = WorkerSnapshot(worker=1, phase="a", phase_started={"a": 10.5}, phase_sent={"a": 4}, phase_published={"a": 3})
    a, b, c = merge_phases(names, [w0, w1], workers=2)
    assert (a.started, a.finished, a.sent, a.published, a.failed) == (10.0, None, 9, 8, 0)  # worker 1 is still in a
    assert (b.started, b.finished, b.sent) == (12.0, None, 2)
    assert (c.started, c.finished, c.sent) == (None, None, 0)
    w1.phase_finished["a"], w1.phase = 13.0, ""
    assert merge_phases(names, [w0, w1], workers=2)[0].finished == 13.0
    # A missing report (a worker still starting) leaves every phase open.
    assert merge_phases(names, [w0], workers=2)[0].finished is None
    # Stopped: worker 1 ended without entering b, worker 0 left it; nobody entered c.
    w0.phase_finished["b"], w0.finished, w1.finished = 12.5, True, True
    a, b, c = merge_phases(names, [w0, w1], workers=2)
    assert (b.started, b.finished) == (12.0, 12.5)
    assert (c.started, c.finished) == (None, None)


def test_the_events_csvs_end_with_the_scenario_and_outcome_time_columns():
    assert EVENT_COLUMNS[-3:] == ("event", "scenario", "outcome_ms")


# ---- on a real Pub/Sub emulator ----


@pytest.fixture
def project(make_stack, request) -> str:
    """A project of the test's own on the session's emulator (`workbench_emulator`), so that its subscription holds
    this test's messages only."""
    return make_stack(request, "phases", bigquery=False).project


def pulled(emulator: str, project: str, expected: int, timeout_s: float = 30.0) -> dict[str, str]:
    """message id -> event_id attribute of every message the topic's subscription holds (acknowledged)."""
    import time

    from endpoints.pubsub import subscriber_client
    from eventmodel.resources import ATTR_EVENT_ID, SUBSCRIPTION

    subscriber = subscriber_client(emulator)
    path = subscriber.subscription_path(project, SUBSCRIPTION)
    received: dict[str, str] = {}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        response = subscriber.pull(request={"subscription": path, "max_messages": 1000}, timeout=10)
        if not response.received_messages:
            if len(received) >= expected:
                break
            continue
        messages = response.received_messages
        received.update({m.message.message_id: m.message.attributes[ATTR_EVENT_ID] for m in messages})
        subscriber.acknowledge(request={"subscription": path, "ack_ids": [m.ack_id for m in messages]})
    return received


def by_scenario(run_id: str, worker: int | None = None) -> dict[str, list[dict[str, str]]]:
    """The recorded messages of a run (or of one worker's events CSV) by their scenario tag, in recorded order."""
    import csv

    if worker is None:
        recorded = list(iter_events(run_id))
    else:
        with (run_dir(run_id) / f"events-{worker}.csv").open(newline="") as f:
            recorded = list(csv.DictReader(f))
    rows: dict[str, list[dict[str, str]]] = {}
    for row in recorded:
        rows.setdefault(row["scenario"], []).append(row)
    return rows


def at(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def assert_phases_ran_in_order_at_their_rates(manifest: dict, plan: PublishPlan, single_worker: bool) -> None:
    entries = manifest["phases"]
    assert [e["name"] for e in entries] == [p.name for p in plan.phases]
    starts = [at(e["started_at"]) for e in entries]
    ends = [at(e["finished_at"]) for e in entries]
    assert starts == sorted(starts) and ends == sorted(ends) and all(s < e for s, e in zip(starts, ends, strict=True))
    if single_worker:  # one worker publishes one phase after the other
        assert all(ends[i] <= starts[i + 1] for i in range(len(entries) - 1)), entries
    for phase, entry, start, end in zip(plan.phases, entries, starts, ends, strict=True):
        assert (entry["rate"], entry["count"], entry["duration_s"], entry["profile"]) == (
            phase.rate, phase.count, phase.duration, phase.profile)  # fmt: skip
        assert entry["seed"] == phase.generator.seed and entry["generator"] == phase.generator.as_dict()
        assert entry["sent"] == entry["published"] == entry["planned"] == phase.total() and entry["failed"] == 0
        # Paced on the integral: never faster than asked (the first message goes at once, hence n - 1 intervals),
        # and on this busy 2-core machine not much slower either.
        achieved = (entry["sent"] - 1) / (end - start)
        assert 0.6 * phase.rate <= achieved <= 1.1 * phase.rate, (phase.name, achieved, phase.rate)


THREE = (
    Phase("steady", 300, count=300, generator=GeneratorConfig(seed=11, duplicate_rate=0.05)),
    Phase("malformed", 150, count=120, generator=GeneratorConfig(seed=12, malformed_rate=0.5)),
    Phase("burst", 900, duration=0.5, generator=GeneratorConfig(seed=13)),  # 450 messages
)


@pytest.mark.integration
def test_three_phases_on_pubsub_each_tagged_counted_and_timed(home, workbench_emulator, project):
    plan = PublishPlan(run_id="three", target=PubSubTarget(project, "backend-events-topic", workbench_emulator.target),
                       phases=THREE)  # fmt: skip
    result = publish(plan)
    assert result.status == "completed" and result.totals.published == 870 == plan.total()
    manifest = load_manifest(plan.run_id)
    assert manifest["manifest_version"] == 5 and manifest["status"] == "completed"
    assert manifest["plan"] == {"rate": None, "profile": None, "count": None, "duration_s": None, "workers": 1}
    assert manifest["generator"] == {"ids_of": None}
    assert_phases_ran_in_order_at_their_rates(manifest, plan, single_worker=True)

    rows = by_scenario(plan.run_id)
    assert {name: len(r) for name, r in rows.items()} == {"steady": 300, "malformed": 120, "burst": 450}
    for phase in plan.phases:
        # Each phase's messages are exactly what its own generator settings make, in order (the ids do not depend
        # on the clock): the stream of the phase's config, under the run's id.
        made = EventStream(phase.generator, plan.run_id, scenario=phase.name).take(phase.total())
        assert [r["event_id"] for r in rows[phase.name]] == [m.event_id for m in made]
        assert [r["kind"] for r in rows[phase.name]] == [m.kind or "" for m in made]
    kinds = {name: Counter(r["expected"] == "dead_letter" for r in phase_rows) for name, phase_rows in rows.items()}
    assert kinds["steady"][True] == kinds["burst"][True] == 0 and kinds["malformed"][True] > 30
    assert sum(r["duplicate"] == "1" for r in rows["steady"]) > 0
    ids = {name: {r["event_id"] for r in phase_rows} for name, phase_rows in rows.items()}
    assert not (ids["steady"] & ids["malformed"] or ids["steady"] & ids["burst"] or ids["malformed"] & ids["burst"])

    # Each outcome's time (outcome_ms: the publish acknowledged) falls within its phase, give or take the drain.
    for phase in manifest["phases"]:
        began, ended = (datetime.fromisoformat(phase[k].replace("Z", "+00:00")).timestamp() * 1000
                        for k in ("started_at", "finished_at"))  # fmt: skip
        stamps = [int(r["outcome_ms"]) for r in rows[phase["name"]]]
        assert began <= min(stamps) and max(stamps) <= ended + 5_000, (phase["name"], began, ended, stamps[:3])

    # What the topic holds is what the manifest says, message by message.
    received = pulled(workbench_emulator.target, project, 870)
    recorded = {r["message_id"]: r["event_id"] for phase_rows in rows.values() for r in phase_rows}
    assert len(recorded) == 870 and received == recorded


@pytest.mark.integration
def test_two_worker_processes_publish_every_phase_in_their_shares(home, workbench_emulator, project):
    plan = PublishPlan(run_id="two", target=PubSubTarget(project, "backend-events-topic", workbench_emulator.target),
                       phases=(*THREE[:2], Phase("odd", 201, count=201, generator=GeneratorConfig(seed=14))),
                       workers=2)  # fmt: skip
    publisher = Publisher(plan)
    result = run_with_signals(publisher)
    assert result.status == "completed" and result.totals.published == plan.total() == 621
    manifest = load_manifest(plan.run_id)
    assert_phases_ran_in_order_at_their_rates(manifest, plan, single_worker=False)
    # The workers start the first phase together (each builds its streams first, then waits for the other), so
    # the phase runs at its whole rate from its start; without that wait they start up to half a second apart here.
    first, second = (s.phase_started["steady"] for s in publisher.snapshots())
    assert abs(first - second) < 0.08
    rows = by_scenario(plan.run_id)
    assert {name: len(r) for name, r in rows.items()} == {"steady": 300, "malformed": 120, "odd": 201}
    for worker, share in ((0, {"steady": 150, "malformed": 60, "odd": 101}), (1, {"steady": 150, "malformed": 60,
                                                                                "odd": 100})):  # fmt: skip
        assert {name: len(r) for name, r in by_scenario(plan.run_id, worker).items()} == share
        for phase in plan.phases:  # worker w's substream of the phase's own generator
            made = EventStream(phase.generator, plan.run_id, worker=worker, workers=2).take(share[phase.name])
            assert [r["event_id"] for r in by_scenario(plan.run_id, worker)[phase.name]] == [m.event_id for m in made]
    all_ids = [r["event_id"] for phase_rows in rows.values() for r in phase_rows if r["duplicate"] != "1"]
    assert len(all_ids) == len(set(all_ids))
    assert len(pulled(workbench_emulator.target, project, 621)) == 621


@pytest.mark.integration
@pytest.mark.parametrize("how", ["SIGTERM", "abort"])
def test_a_stop_in_the_second_phase_leaves_the_third_unpublished(home, workbench_emulator, project, how):
    plan = PublishPlan(
        run_id=f"stopped-{how}",
        target=PubSubTarget(project, "backend-events-topic", workbench_emulator.target),
        phases=(
            Phase("first", 600, count=200, generator=GeneratorConfig(seed=21)),
            Phase("second", 200, count=4000, generator=GeneratorConfig(seed=22, malformed_rate=0.1)),  # 20 s
            Phase("third", 600, count=200, generator=GeneratorConfig(seed=23)),
        ),
    )
    publisher = Publisher(plan)

    def stop_in_the_second(p: Publisher) -> None:
        second = p.phases()[1]
        if p.current_phase() == "second" and second.published >= 100 and not p.stopping:
            if how == "SIGTERM":
                os.kill(os.getpid(), signal.SIGTERM)  # run_with_signals' handler: drain and stop
            else:
                p.abort()

    result = run_with_signals(publisher, stop_in_the_second)
    assert result.status == INTERRUPTED
    manifest = load_manifest(plan.run_id)
    assert manifest["status"] == INTERRUPTED
    assert manifest["stop"]["signal"] == ("SIGTERM" if how == "SIGTERM" else None)
    assert manifest["stop"]["forced"] is (how == "abort")
    first, second, third = manifest["phases"]
    assert first["sent"] == first["published"] == 200 and first["finished_at"]
    assert 100 <= second["sent"] < 4000 and second["started_at"] and second["finished_at"]
    assert at(first["finished_at"]) <= at(second["started_at"]) < at(second["finished_at"])
    assert (third["started_at"], third["finished_at"], third["sent"], third["published"]) == (None, None, 0, 0)
    rows = by_scenario(plan.run_id)
    assert set(rows) == {"first", "second"}
    # The phases' outcomes are what the events CSVs hold (after a forced stop too, recounted from them).
    assert [second["published"], second["failed"]] == [
        sum(r["outcome"] == o for r in rows["second"]) for o in ("published", "failed")
    ]
    assert manifest["totals"]["published"] == first["published"] + second["published"]


def test_the_live_view_names_the_phase_being_published(home):
    import io

    from rich.console import Console

    from workbench.publish_view import LiveView

    plan = PublishPlan(run_id="viewed", target=FileTarget(str(home / "out.jsonl")),
                       phases=phases(("warm-up", 200, 150), ("flood", 300, 300)))  # fmt: skip
    home.mkdir(parents=True, exist_ok=True)
    publisher = Publisher(plan)
    view = LiveView(publisher)  # never entered: nothing is drawn on the terminal
    screens = []

    def capture(p: Publisher) -> None:
        console = Console(file=io.StringIO(), width=160, color_system=None)
        console.print(view._render())
        screens.append(console.file.getvalue())

    assert run_with_signals(publisher, capture).status == "completed"
    phase_rows = [line.split() for screen in screens for line in screen.splitlines() if line.startswith("phase")]
    assert ["phase", "warm-up", "1", "of", "2"] in phase_rows and ["phase", "flood", "2", "of", "2"] in phase_rows
    assert phase_rows[-1] == ["phase", "-", "2", "phases"]  # every worker has left the last phase


def test_the_scenario_column_is_read_beside_events_csvs_of_version_4(home):
    import csv

    from publisher.manifest import recount

    directory = run_dir("mixed")
    directory.mkdir(parents=True)
    row = {"event_id": "e1", "expected": "order", "event_type": "order", "outcome": "published", "event": "{}"}
    for worker, columns, scenario in ((0, EVENT_COLUMNS, "steady"), (1, EVENT_COLUMNS[:-2], None)):
        with (directory / f"events-{worker}.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, columns, restval="")
            writer.writeheader()
            writer.writerow({**row, "event_id": f"e{worker}", **({"scenario": scenario} if scenario else {})})
            writer.writerow({**row, "event_id": f"f{worker}", "outcome": "failed"})
    assert [(r["event_id"], r.get("scenario")) for r in iter_events("mixed")] == [
        ("e0", "steady"), ("f0", ""), ("e1", None), ("f1", None)]  # fmt: skip
    scenarios: dict = {}
    totals, counts = recount("mixed", sent=5, scenarios=scenarios)
    assert counts["expected:order"] == 2
    assert totals == {"sent": 5, "published": 2, "failed": 2, "in_flight": 1}
    assert scenarios == {"steady": Counter(published=1)}


def test_an_interrupted_run_of_phases_says_how_many_its_phases_planned():
    from publisher.manifest import stop_note

    manifest = {"run_id": "r", "status": "interrupted", "stop": {"signal": "SIGINT"}, "totals": {"published": 250},
                "plan": {"count": None}, "phases": [{"planned": 300}, {"planned": 700}]}  # fmt: skip
    assert "250 of the 1,000 planned messages were published before the stop" in stop_note(manifest)
