"""battery.scorecard: each property judged per scenario from hand-built CheckData (tests/battery/battery_samples.py)."""

from __future__ import annotations

import json

import pytest
from battery_samples import T0, RunBuilder, full_battery

from battery import scorecard as S
from battery.model import (
    BURST,
    COMPLETE,
    FAIL,
    LATE_PLACED,
    LATENCY,
    MALFORMED,
    ONCE,
    PASS,
    PLACED,
    RUN_SCENARIO,
    SKIP,
    UNCHANGED,
    UNEXPECTED,
    Budgets,
)
from reconcile.report import PROBLEM_LABELS

VALID_ONLY = [COMPLETE, ONCE, UNCHANGED, PLACED, LATENCY]


def _statuses(card: S.Scorecard) -> dict[tuple[str, str], str]:
    return {(r.scenario, r.property): r.status for r in card.rows}


def _failing(card: S.Scorecard) -> set[tuple[str, str]]:
    return {k for k, status in _statuses(card).items() if status == FAIL}


def test_a_clean_run_passes_every_property_and_each_scenario_is_judged_on_what_it_sent() -> None:
    run, _ = full_battery()
    card = S.score(run.data())
    judged = {s: [r.property for r in card.rows_of(s)] for s in card.scenarios}
    assert judged == {
        "steady": VALID_ONLY,
        "malformed": [COMPLETE, ONCE, UNCHANGED, PLACED, MALFORMED, LATENCY],
        "duplicates": VALID_ONLY,
        "late": [COMPLETE, ONCE, UNCHANGED, PLACED, LATE_PLACED, LATENCY],
        "out-of-order": [COMPLETE, ONCE, UNCHANGED, PLACED, LATE_PLACED, LATENCY],
        "oversize": [COMPLETE, ONCE, UNCHANGED, PLACED, MALFORMED, LATENCY],
        "burst": [*VALID_ONLY, BURST],
        RUN_SCENARIO: [UNEXPECTED],
    }
    assert all(r.status == PASS for r in card.rows), [(r.scenario, r.property, r.summary) for r in card.rows]
    assert card.passed and card.exit_code == 0
    assert card.get("steady", ONCE).title == "exactly-once"
    assert card.get("steady", COMPLETE).summary == "every sink holds all 20 events"
    assert card.get("malformed", MALFORMED).counts == {"messages": 8, "kinds": 4, "failing": 0}
    # the re-sends are one event each: 10 events, 2 re-sent
    assert card.get("duplicates", ONCE).counts["events"] == 10 and card.get("duplicates", ONCE).counts["resent"] == 2


def test_a_scenario_of_malformed_messages_only_is_judged_on_malformed_and_latency() -> None:
    run = RunBuilder()
    run.scenario("malformed", malformed=4)
    card = S.score(run.data())
    assert [r.property for r in card.rows_of("malformed")] == [MALFORMED, LATENCY]


def test_missing_events_fail_complete_naming_each_with_where_it_was_last_seen() -> None:
    run, ids = full_battery()
    steady = ids["steady"]
    for event_id in steady[4:7]:
        run.drop(event_id, "bigquery").find("missing_in_bigquery", event_id)
    run.drop(steady[2]).find("missing", steady[2])
    card = S.score(run.data())
    assert _failing(card) == {("steady", COMPLETE)}
    row = card.get("steady", COMPLETE)
    assert row.counts == {"events": 20, "failing": 4, "missing_in_bigquery": 3, "missing": 1}
    assert row.summary == "4 of 20 events missing: 3 missing in bigquery, 1 missing"
    # in publish order, each with where it was last seen
    assert [s.event_id for s in row.samples] == [steady[2], *steady[4:7]]
    assert row.samples[0].last_seen == "published as message m-steady-2, seen in no sink"
    assert row.samples[1].finding == "missing_in_bigquery"
    assert row.samples[1].last_seen == "gcs: output/inventory/2026/12/01/10/20/inventory_2026120110200001.json"
    assert card.exit_code == 1 and not card.passed


def test_samples_stop_at_ten_events_but_the_counts_hold_them_all() -> None:
    run, ids = full_battery()
    for event_id in ids["steady"][:15]:
        run.drop(event_id, "gcs").find("missing_in_gcs", event_id)
    row = S.score(run.data()).get("steady", COMPLETE)
    assert row.counts["failing"] == 15 and len(row.samples) == S.SAMPLES == 10
    assert [s.event_id for s in row.samples] == ids["steady"][:10]


def test_duplicates_fail_exactly_once_where_the_contract_promises_deduplication() -> None:
    run, ids = full_battery()
    twice = ids["duplicates"][:2]  # the two events the scenario re-sent, each held from both of its messages
    for event_id in twice:
        run.copy(event_id, "gcs").find("duplicated", event_id)
    card = S.score(run.data())
    assert _failing(card) == {("duplicates", ONCE)}
    row = card.get("duplicates", ONCE)
    assert row.title == "exactly-once"
    assert row.counts["duplicated"] == 2 and row.counts["extra_copies"] == 2 and row.counts["resent"] == 2
    assert row.summary.startswith("2 of 10 events not held exactly-once: 2 duplicated")
    assert row.samples[0].last_seen.startswith("gcs: output/") and "(2 copies)" in row.samples[0].last_seen


def test_duplicates_are_evidence_never_a_failure_under_an_at_least_once_promise() -> None:
    run, ids = full_battery(promise="at_least_once")
    twice = ids["duplicates"][:2]
    for event_id in twice:  # reconcile finds nothing: at-least-once allows the copies
        run.copy(event_id, "gcs").copy(event_id, "bigquery", after_ms=600)
    run.raw_duplicates.append({"event_id": twice[0], "event_type": "order", "gcs_copies": 2, "bigquery_copies": 3})
    card = S.score(run.data())
    assert card.passed
    row = card.get("duplicates", ONCE)
    assert row.status == PASS and row.title == "at-least-once"
    # twice[0]: gcs 1 extra, bigquery 2 (the raw rows say 3 copies though one lag is missing); twice[1]: 1 and 1
    assert row.counts["extra_copies"] == 5 and row.counts["events_with_copies"] == 2
    assert "5 extra copies of 2 events (bigquery 3, gcs 2), allowed" in row.summary
    assert [s.event_id for s in row.samples] == twice and row.samples[0].finding == "extra copies"
    assert row.samples[0].last_seen == "bigquery: 2 copies; gcs: 2 copies"


def test_an_id_reused_fails_once_even_at_least_once() -> None:
    run, ids = full_battery(promise="at_least_once")
    run.drop(ids["steady"][0]).find("id_reused", ids["steady"][0])
    card = S.score(run.data())
    assert _failing(card) == {("steady", ONCE)}
    assert card.get("steady", ONCE).title == "at-least-once"


def test_altered_events_fail_unchanged_with_the_fields_that_differ() -> None:
    run, ids = full_battery()
    changed = ids["steady"][0]
    run.find("altered", changed)
    run.altered_fields += [
        {"event_id": changed, "event_type": "order", "sink": "orders", "field": "total_amount",
         "published": "129.99", "held": "130"},
        {"event_id": changed, "event_type": "order", "sink": "gcs", "field": "items[0].price",
         "published": "19.99", "held": "19.9"},
    ]  # fmt: skip
    card = S.score(run.data())
    assert _failing(card) == {("steady", UNCHANGED)}
    row = card.get("steady", UNCHANGED)
    assert row.counts == {"events": 20, "failing": 1, "altered": 1, "fields": 2}
    assert row.summary == "1 of 20 events altered; fields orders total_amount (1), gcs items[0].price (1)"
    assert row.samples[0].detail == "orders total_amount: '129.99' -> '130'; gcs items[0].price: '19.99' -> '19.9'"


def test_misplaced_late_events_fail_placement_and_late_placement_lost_ones_fail_late_placement_too() -> None:
    run, ids = full_battery()
    late = ids["late"]
    run.find("misplaced", late[1]).find("misplaced", late[5])
    run.drop(late[3], "bigquery").find("missing_in_bigquery", late[3])
    run.find("collision", ids["out-of-order"][0])  # placed, but not a matter of time
    card = S.score(run.data())
    assert _failing(card) == {("late", PLACED), ("late", LATE_PLACED), ("late", COMPLETE), ("out-of-order", PLACED)}
    row = card.get("late", LATE_PLACED)
    assert row.counts == {"events": 7, "failing": 3, "misplaced": 2, "missing_in_bigquery": 1}
    assert [s.event_id for s in row.samples] == [late[1], late[3], late[5]]
    assert card.get("late", PLACED).counts["failing"] == 2
    assert card.get("out-of-order", LATE_PLACED).status == PASS


def test_malformed_messages_mishandled_fail_malformed_never_complete() -> None:
    run, ids = full_battery()
    malformed = ids["malformed"][4:]  # the scenario's first 4 are valid
    run.drop(malformed[0]).copy(malformed[0], "gcs").find("accepted", malformed[0])
    run.find("other_reason", malformed[1], dead_letter_reasons="WRONG_TYPE")
    run.drop(malformed[2]).find("missing", malformed[2])
    run.find("altered", malformed[3])  # its dead letter's bytes differ from what was published
    card = S.score(run.data())
    assert _failing(card) == {("malformed", MALFORMED)}
    row = card.get("malformed", MALFORMED)
    assert row.counts == {"messages": 8, "kinds": 4, "failing": 4, "accepted": 1, "other_reason": 1, "missing": 1,
                          "altered": 1}  # fmt: skip
    seen = {s.event_id: s.last_seen for s in row.samples}
    assert seen[malformed[0]].startswith("gcs: output/")
    assert seen[malformed[1]] == "dead letter: reason WRONG_TYPE"
    assert seen[malformed[2]] == f"published as message m-malformed-{4 + 2}, seen in no sink"


def test_p95_latency_over_budget_fails_latency_with_the_slowest_copies() -> None:
    run, ids = full_battery(budgets=Budgets(latency_s=60))
    steady = ids["steady"]
    run.slow(steady[3:4], "gcs", 90_000)  # 1 of 20: p95 is the 19th of 20 values, 2 s, within the budget
    assert S.score(run.data()).get("steady", LATENCY).status == PASS
    run.slow(steady[2:3], "gcs", 75_000)  # 2 of 20: p95 is 75 s
    card = S.score(run.data())
    assert _failing(card) == {("steady", LATENCY)}
    row = card.get("steady", LATENCY)
    assert row.counts["gcs.p95_ms"] == 75_000 and row.counts["bigquery.p95_ms"] == 500 and row.counts["gcs.n"] == 20
    assert row.summary == "over budget in gcs: p95 bigquery 0.5 s, gcs 75 s (budget 60 s)"
    assert [s.event_id for s in row.samples] == [steady[3], steady[2]] and row.samples[0].finding == "slow in gcs"
    assert row.samples[0].last_seen == "gcs: landed 90 s after publish"


def test_p95_latency_at_the_budget_passes() -> None:
    run, ids = full_battery(budgets=Budgets(latency_s=60))
    run.slow(ids["steady"], "gcs", 60_000)
    assert S.score(run.data()).get("steady", LATENCY).status == PASS
    run.slow(ids["steady"], "gcs", 60_001)
    assert S.score(run.data()).get("steady", LATENCY).status == FAIL


def test_a_burst_that_drains_too_slowly_fails_burst_with_its_drain_time() -> None:
    run, ids = full_battery(budgets=Budgets(drain_s=30))
    card = S.score(run.data())
    row = card.get("burst", BURST)
    phase = next(p for p in run.phases if p.name == "burst")
    last = ids["burst"][-1]
    assert row.status == PASS and row.counts["missing"] == 0
    assert row.counts["gcs.drain_ms"] == run.published_ms[last] + 2_000 - phase.finished_ms
    run.slow([last], "bigquery", phase.finished_ms - run.published_ms[last] + 45_000)
    card = S.score(run.data())
    assert _failing(card) == {("burst", BURST)}
    row = card.get("burst", BURST)
    assert row.counts["bigquery.drain_ms"] == 45_000
    assert row.summary == "too slow in bigquery: drained bigquery 45 s, gcs 2 s after the burst ended (budget 30 s)"
    assert [s.event_id for s in row.samples] == [last]  # only the copies that landed past the budget
    assert row.samples[0].event_id == last and row.samples[0].last_seen == (
        "bigquery: landed 45 s after the burst ended"
    )


def test_a_burst_whose_events_never_landed_never_drained() -> None:
    run, ids = full_battery()
    run.drop(ids["burst"][7], "gcs").find("missing_in_gcs", ids["burst"][7])
    card = S.score(run.data())
    assert _failing(card) == {("burst", COMPLETE), ("burst", BURST)}
    row = card.get("burst", BURST)
    assert row.counts["missing"] == 1 and row.samples[0].event_id == ids["burst"][7]
    assert row.summary.startswith("1 of 30 burst events never landed (1 missing in gcs)")


def test_without_landed_times_latency_and_burst_are_skipped_with_the_fix() -> None:
    run, _ = full_battery(with_lags=False)
    card = S.score(run.data())
    skipped = {k for k, status in _statuses(card).items() if status == SKIP}
    assert skipped == {(s, LATENCY) for s in card.scenarios if s != RUN_SCENARIO} | {("burst", BURST)}
    row = card.get("steady", LATENCY)
    assert row.summary == "no landed time known for this scenario's events in any sink"
    assert "metadata.publish_time" in row.fix and "metadata.landed_time" in row.fix
    assert card.exit_code == 0  # a skip is not a failure


def test_without_landed_times_a_burst_whose_events_never_landed_still_fails() -> None:
    run, ids = full_battery(with_lags=False)
    run.find("missing", ids["burst"][2])
    row = S.score(run.data()).get("burst", BURST)
    assert row.status == FAIL and row.counts["missing"] == 1
    assert row.summary.startswith("1 of 30 burst events never landed") and row.samples[0].event_id == ids["burst"][2]


def test_a_sink_without_landed_times_is_named_beside_those_measured() -> None:
    run, _ = full_battery()
    run.lags = [g for g in run.lags if g.sink != "bigquery"]
    row = S.score(run.data()).get("steady", LATENCY)
    assert row.status == PASS and row.summary.endswith("not measured, no landed time: bigquery")


def test_rows_of_no_scenario_fail_the_run_row() -> None:
    run, _ = full_battery()
    run.unexpected.append({"sink": "gcs", "event_id": "never-sent-1", "message_id": "m-x", "event_type": "order",
                           "location": "output/order/2026/12/01/10/20/order_2026120110200002.json"})  # fmt: skip
    assert _failing(S.score(run.data())) == {(RUN_SCENARIO, UNEXPECTED)}
    run.foreign.append({"sink": "bigquery", "message_id": "m-foreign", "event_id": None, "event_type": "order",
                        "run_id": None, "location": "events.orders"})  # fmt: skip
    card = S.score(run.data())
    assert _failing(card) == {(RUN_SCENARIO, UNEXPECTED)}
    row = card.get(RUN_SCENARIO, UNEXPECTED)
    assert row.counts == {"unexpected": 1, "foreign": 1, "unknown_events": 0}
    assert [(s.event_id, s.finding) for s in row.samples] == [("never-sent-1", "unexpected"),
                                                              ("message m-foreign", "foreign")]  # fmt: skip
    assert row.samples[1].last_seen == "bigquery: events.orders (run none)"


def test_foreign_rows_pass_when_allowed() -> None:
    run, _ = full_battery(allow_foreign=True)
    run.foreign.append({"sink": "gcs", "message_id": "m-f", "event_id": None, "run_id": None, "location": "x"})
    row = S.score(run.data()).get(RUN_SCENARIO, UNEXPECTED)
    assert row.status == PASS and "1 foreign rows (allowed)" in row.summary


def test_a_finding_of_an_event_the_check_does_not_list_fails_the_run_row() -> None:
    run, _ = full_battery()
    run.findings["missing"] = ["not-in-the-events"]
    row = S.score(run.data()).get(RUN_SCENARIO, UNEXPECTED)
    assert row.status == FAIL and row.counts["unknown_events"] == 1


def test_every_diagnosis_reconcile_makes_counts_against_a_property() -> None:
    assert set(PROBLEM_LABELS) <= set(S.VALID_FINDINGS)


def test_nearest_rank_percentiles() -> None:
    assert S.percentile([5], 95) == 5
    assert S.percentile(list(range(1, 21)), 95) == 19
    assert S.percentile(list(range(1, 101)), 95) == 95
    assert S.percentile([3, 1, 2], 50) == 2


def test_latency_series_per_sink_per_second_of_publish() -> None:
    run = RunBuilder()
    ids = run.scenario("steady", valid=4, rate=2)  # two events per second
    run.slow([ids[1]], "gcs", 9_000)
    series = S.latency_series(run.data(), "steady")
    assert list(series) == ["bigquery", "gcs"]
    assert series["gcs"] == [S.LatencyPoint(T0 // 1000, 2, 2_000, 9_000), S.LatencyPoint(T0 // 1000 + 1, 2, 2_000,
                                                                                          2_000)]  # fmt: skip
    assert S.latency_series(run.data(), "nothing") == {}


def test_backlog_series_rises_with_the_burst_and_drains_to_zero() -> None:
    run = RunBuilder()
    burst = run.scenario("burst", valid=10, rate=10)  # one per 100 ms over a second
    run.slow(burst[5:], "gcs", 4_000)
    series = S.backlog_series(run.data(), "burst")
    gcs = [(p.second - T0 // 1000, p.published, p.landed, p.backlog) for p in series["gcs"]]
    # (seconds since the first publish, published by then, landed by then, backlog)
    assert gcs[0] == (0, 1, 0, 1)  # the first event is published at the run's first instant
    assert gcs[1] == (1, 10, 0, 10)  # all published within the first second, none landed yet (2 s)
    assert gcs[3] == (3, 10, 5, 5)  # the first five landed 2 s after their publish, the others take 4 s
    assert gcs[-1] == (5, 10, 10, 0)  # the second after the last landing: drained
    assert "dead_letter_table" not in series  # no malformed messages to hold


def test_backlog_keeps_events_that_never_landed_from_their_phase_end() -> None:
    run = RunBuilder()
    ids = run.scenario("steady", valid=4, rate=2)
    run.drop(ids[3])  # landed nowhere: no publish time known, counted as published when the phase ended
    series = S.backlog_series(run.data())
    assert series["gcs"][-1].published == 4 and series["gcs"][-1].backlog == 1


def test_missing_by_scenario_for_the_live_view() -> None:
    run, ids = full_battery()
    run.find("missing_in_gcs", ids["late"][0]).find("missing", ids["late"][1]).find("misplaced", ids["late"][2])
    run.find("missing_in_dead_letter_table", ids["malformed"][5])
    counts = S.missing_by_scenario(run.report(), run.events)
    assert counts == {"steady": 0, "malformed": 1, "duplicates": 0, "late": 2, "out-of-order": 0, "oversize": 0,
                      "burst": 0}  # fmt: skip


def test_to_dict_is_plain_json_with_every_row() -> None:
    run, ids = full_battery()
    run.drop(ids["steady"][0]).find("missing", ids["steady"][0])
    card = S.score(run.data())
    shape = json.loads(json.dumps(card.to_dict()))
    assert shape["passed"] is False and shape["exit_code"] == 1 and shape["promise"] == "deduplicated"
    assert shape["tally"] == {"pass": len(card.rows) - 1, "fail": 1, "skip": 0}
    assert shape["scenarios"][-1] == RUN_SCENARIO
    row = next(r for r in shape["rows"] if r["status"] == FAIL)
    assert set(row) == {"scenario", "property", "status", "title", "summary", "counts", "samples", "fix"}
    seen = "published as message m-steady-0, seen in no sink"
    assert row["samples"][0] == {"event_id": ids["steady"][0], "finding": "missing", "last_seen": seen, "detail": None}


def test_evidence_lines_give_counts_then_each_event() -> None:
    run, ids = full_battery()
    run.drop(ids["steady"][1], "gcs").find("missing_in_gcs", ids["steady"][1])
    lines = S.evidence_lines(S.score(run.data()).get("steady", COMPLETE))
    assert lines == [
        "1 of 20 events missing: 1 missing in gcs",
        "counts: events=20, failing=1, missing_in_gcs=1",
        "first 1 events (event id: finding; last seen):",
        "  steady-001: missing_in_gcs; bigquery: events.inventorys",
    ]


@pytest.mark.parametrize("promise", ["deduplicated", "at_least_once"])
def test_the_once_title_follows_the_promise(promise: str) -> None:
    run, _ = full_battery(promise=promise)
    titles = {r.title for r in S.score(run.data()).rows if r.property == ONCE}
    assert titles == {"exactly-once" if promise == "deduplicated" else "at-least-once"}
