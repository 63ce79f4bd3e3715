"""`workbench check` against the three pipelines written for these tests (each unlike this project's), each started
by --pipeline through `workbench exec` and judged by its own sink contract: the two honest designs pass the whole
battery, and the buggy one fails exactly the properties its five bugs break, each failure naming the events reconcile
found. (The stack is conftest.py's; each check has a dataset and an output root of its own.)"""

from __future__ import annotations

import shlex
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import orjson
import pytest
from foreign_support import HERE, LOCAL_TZ, SUBSCRIPTION, make_dataset, render_contract
from stack_support import BUCKET, PROJECT

from battery import model as M
from battery.scenarios import NAMES

# A whole battery through a pipeline: minutes, not pytest's default 300 s per test.
pytestmark = pytest.mark.timeout(900)

# flattened.py writes a row per line item on the DirectRunner: on this 2-core machine under the whole suite its GCS
# latency reached 87 s, so its check is held to budgets of minutes (latency and drain are judged in
# tests/battery/ and by the whole_event check below, with a budget no machine meets).
SLOW_MACHINE = ("--latency-budget", "10m", "--drain-budget", "10m")
SMALL = ("--rate", "20", "--duration", "5s", "--burst-for", "3s", "--repeats", "1", "--stop-when-idle", "10s")


def check(
    stack,
    folder: Path,
    name: str,
    dataset: str,
    root: str,
    rejected: str | None,
    *args: str,
    prefix: tuple[str, ...] = (),
    budgets: tuple[str, ...] = (),
) -> tuple[int, dict, ET.Element, str]:
    """`workbench check` of pipeline `name` with its contract and SMALL; (exit status, --json, --junit, output)."""
    make_dataset(stack, dataset)
    contract = render_contract(name, folder / f"{name}.sinks.yaml", dataset, root, rejected)
    command = shlex.join([*prefix, sys.executable, str(HERE / f"{name}.py"), "--streaming", "--runner",
                          "DirectRunner", "--project", PROJECT, "--subscription", SUBSCRIPTION, *args])  # fmt: skip
    json_path, junit = folder / "check.json", folder / "check.xml"
    done = stack.workbench("check", "--sinks", str(contract), "--pipeline", command, *SMALL, *budgets, "--json",
                           str(json_path),
                           "--junit", str(junit), "--html", str(folder / "check.html"), timeout=900,
                           env=stack.exports)  # fmt: skip
    assert json_path.exists(), done.text[-6000:]
    return done.returncode, orjson.loads(json_path.read_bytes()), ET.parse(junit).getroot(), done.text


def _statuses(report: dict) -> dict[tuple[str, str], str]:
    return {(r["scenario"], r["property"]): r["status"] for r in report["scorecard"]["rows"]}


@pytest.mark.slow
def test_the_flattened_design_passes_the_whole_battery(foreign_stack, tmp_path):
    code, report, junit, text = check(foreign_stack, tmp_path, "flattened", "flat_check", str(tmp_path / "output"),
                                      None, "--dataset", "flat_check", "--output", str(tmp_path / "output"),
                                      "--temp_location", str(tmp_path / "tmp"), "--window_seconds", "5",
                                      budgets=SLOW_MACHINE)  # fmt: skip
    statuses = _statuses(report)
    assert code == 0, [r for r in report["scorecard"]["rows"] if r["status"] != "pass"] or text[-4000:]
    assert {s for s, _ in statuses} == {*NAMES, M.RUN_SCENARIO}
    # Its files keep no publish time: the latency is timed from the publisher's acknowledgements, not skipped.
    assert statuses[("steady", M.LATENCY)] == "pass" and statuses[("burst", M.BURST)] == "pass"
    assert int(junit.get("failures")) == 0


@pytest.mark.slow
def test_the_whole_event_design_passes_all_but_a_one_second_drain_of_the_burst(foreign_stack, tmp_path):
    """An object per event (gzipped, in the GCS emulator) and table loads every 5 s hold everything, but drain a
    burst in tens of seconds here: held to a 1 s drain, "kept up with the burst" fails, naming its slowest events."""
    root, rejected = f"gs://{BUCKET}/raw_check", f"gs://{BUCKET}/rejected_check"
    code, report, junit, text = check(foreign_stack, tmp_path, "whole_event", "raw_check", root, rejected,
                                      "--dataset", "raw_check", "--output", root, "--dead_letters", rejected,
                                      "--temp_location", str(tmp_path / "tmp"), "--load_seconds", "5",
                                      budgets=("--drain-budget", "1s", "--latency-budget", "10m"))  # fmt: skip
    rows = report["scorecard"]["rows"]
    assert code == 1, text[-4000:]
    assert {(r["scenario"], r["property"]) for r in rows if r["status"] != "pass"} == {("burst", M.BURST)}, [
        r for r in rows if r["status"] != "pass"
    ]
    burst = next(r for r in rows if r["property"] == M.BURST)
    assert burst["summary"].startswith("too slow in") and burst["samples"]
    assert all("after the burst ended" in s["last_seen"] for s in burst["samples"])
    once = next(r for r in rows if (r["scenario"], r["property"]) == ("duplicates", M.ONCE))
    assert once["title"] == "at-least-once"  # what its contract promises
    failures = [c for c in junit.iter("testcase") if c.find("failure") is not None]
    assert [(c.get("classname"), c.get("name")) for c in failures] == [
        ("workbench.check.burst", "kept up with the burst")
    ]


# Which property each of buggy.py's bugs breaks (its docstring numbers them), through the finding reconcile makes.
BUGGY = {
    M.MALFORMED: "1. a message that is not JSON is dropped without a trace; 6. malformed events of a known type kept",
    M.COMPLETE: "2. files named by the second of their events overwrite each other",
    M.BURST: "2. the burst's overwritten files never land: its backlog never drains",
    M.PLACED: "3. folders and file names in the machine's local time",
    M.LATE_PLACED: "3. folders in local time: late events are misplaced too",
    M.UNCHANGED: "4. item prices rounded to one decimal",
    M.ONCE: "5. nothing deduplicated",
    M.UNEXPECTED: "6. a kept malformed event is a row no published event explains",
}


@pytest.mark.slow
def test_the_buggy_pipeline_fails_exactly_the_properties_its_bugs_break(foreign_stack, tmp_path):
    code, report, junit, text = check(foreign_stack, tmp_path, "buggy", "buggy_check", str(tmp_path / "output"), None,
                                      "--dataset", "buggy_check", "--output", str(tmp_path / "output"),
                                      prefix=("env", f"TZ={LOCAL_TZ}"))  # fmt: skip
    assert code == 1, text[-4000:]
    rows = report["scorecard"]["rows"]
    failed = {r["property"] for r in rows if r["status"] == "fail"}
    assert failed == set(BUGGY), text[-4000:]
    findings = report["reconcile"]["findings"]
    for row in (r for r in rows if r["status"] == "fail"):
        assert row["samples"], row  # each failure names events ...
        for sample in row["samples"]:  # ... that reconcile found, with where each was last seen
            assert sample["last_seen"], sample
            if row["property"] == M.UNEXPECTED:  # rows, not events: named by the sink that holds them
                assert sample["finding"] in ("foreign", "unexpected") and ":" in sample["last_seen"], sample
                continue
            for finding in sample["finding"].split(", "):
                assert sample["event_id"] in findings.get(finding, []), (row["title"], sample)
    statuses = _statuses(report)
    assert statuses[("duplicates", M.ONCE)] == "fail" and statuses[("malformed", M.MALFORMED)] == "fail"
    assert statuses[("late", M.LATE_PLACED)] == "fail"
    # Timely it is: its bugs are not about speed (a scenario whose every copy was overwritten has no lag to time).
    assert (
        all(statuses[(s, M.LATENCY)] in ("pass", "skip") for s in NAMES) and statuses[("steady", M.LATENCY)] == "pass"
    )
    failures = {(c.get("classname"), c.get("name")) for c in junit.iter("testcase") if c.find("failure") is not None}
    assert ("workbench.check.duplicates", "exactly-once") in failures
