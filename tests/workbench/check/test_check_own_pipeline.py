"""`workbench check` against this project's own pipeline, as a user runs it: the stack up, the pipeline started by
--pipeline through `workbench exec`, the default contract, a relative ./output, every scenario. It passes the whole
battery; with no pipeline reading, the same battery fails, and the JUnit XML says so testcase by testcase."""

from __future__ import annotations

import shlex
import sys
import xml.etree.ElementTree as ET

import orjson
import pytest

from battery.scenarios import NAMES

# A whole battery through a pipeline: minutes, not pytest's default 300 s per test.
pytestmark = pytest.mark.timeout(900)

PIPELINE = shlex.join([sys.executable, "-m", "workbench.cli", "run-pipeline", "--stop-when-idle", "20s"])
SMALL = ("--rate", "100", "--duration", "5s", "--burst-for", "3s", "--repeats", "1")


def _check(stack, tmp_path, *args: str, timeout: float = 900):
    reports = {name: tmp_path / f"check.{name}" for name in ("json", "xml", "html")}
    done = stack.workbench("check", *SMALL, "--json", str(reports["json"]), "--junit", str(reports["xml"]),
                           "--html", str(reports["html"]), *args, timeout=timeout, cwd=tmp_path)  # fmt: skip
    return done, reports


@pytest.mark.slow
def test_this_projects_pipeline_passes_the_whole_battery(check_stack, tmp_path):
    done, reports = _check(check_stack, tmp_path, "--pipeline", PIPELINE)
    assert done.returncode == 0, done.text[-6000:]
    card = orjson.loads(reports["json"].read_bytes())["scorecard"]
    rows = card["rows"]
    assert {r["scenario"] for r in rows} == {*NAMES, "run"}
    assert all(r["status"] == "pass" for r in rows), [r for r in rows if r["status"] != "pass"]
    by = {(r["scenario"], r["property"]) for r in rows}
    assert ("burst", "burst") in by and ("late", "late_placed") in by and ("malformed", "malformed") in by
    suites = ET.parse(reports["xml"]).getroot()
    assert int(suites.get("failures")) == 0 and int(suites.get("tests")) == len(rows)
    assert float(suites.get("time")) >= 20  # the whole check's wall time (it publishes for 25 s), not one reconcile's
    assert "every property holds" in done.text


@pytest.mark.slow
def test_with_no_pipeline_reading_the_battery_fails_and_junit_names_each_failure(check_stack, tmp_path):
    (tmp_path / "output").mkdir()  # where a pipeline wrote before (now stopped or crashed)
    done, reports = _check(check_stack, tmp_path, "--scenario", "malformed", "--scenario", "late", "--wait", "10s")
    # Last in this module: what it published stays in the subscription until the module's stack goes down.
    assert done.returncode == 1, done.text[-6000:]
    card = orjson.loads(reports["json"].read_bytes())["scorecard"]
    failed = {(r["scenario"], r["property"]) for r in card["rows"] if r["status"] == "fail"}
    assert {("malformed", "complete"), ("late", "complete"), ("malformed", "malformed")} <= failed
    missing = next(r for r in card["rows"] if (r["scenario"], r["property"]) == ("late", "complete"))
    assert missing["samples"] and "seen in no sink" in missing["samples"][0]["last_seen"]
    cases = ET.parse(reports["xml"]).getroot().iter("testcase")
    failures = {(c.get("classname"), c.get("name")) for c in cases if c.find("failure") is not None}
    assert ("workbench.check.late", "complete") in failures
