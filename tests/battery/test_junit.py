"""battery.junit: the scorecard as JUnit XML, validated against Jenkins' junit-10.xsd (the copy beside this file)."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import xmlschema
from battery_samples import full_battery

from battery.junit import to_junit
from battery.model import Budgets
from battery.scorecard import score

SCHEMA = xmlschema.XMLSchema(str(Path(__file__).with_name("junit-10.xsd")))


def _failing_run() -> tuple[str, str]:
    """A run with a missing event, a slow sink and unexpected rows; its XML and the missing event's id."""
    run, ids = full_battery(budgets=Budgets(latency_s=1))  # GCS lands 2 s after publish: over budget
    gone = ids["steady"][5]
    run.drop(gone, "bigquery").find("missing_in_bigquery", gone)
    run.unexpected.append({"sink": "gcs", "event_id": "never-sent", "message_id": "m-u", "location": "output/x.json"})
    return to_junit(score(run.data()), run.run_id, elapsed_s=84.25), gone


def _case(root: ET.Element, scenario: str, name: str) -> ET.Element:
    found = [c for c in root.iter("testcase") if c.get("classname") == f"workbench.check.{scenario}"
             and c.get("name") == name]  # fmt: skip
    assert len(found) == 1, (scenario, name)
    return found[0]


def test_a_clean_run_validates_and_every_testcase_passes() -> None:
    run, _ = full_battery()
    card = score(run.data())
    xml = to_junit(card, run.run_id, elapsed_s=61.5)
    SCHEMA.validate(xml)
    root = ET.fromstring(xml)
    assert root.tag == "testsuites" and root.get("tests") == str(len(card.rows)) and root.get("failures") == "0"
    assert root.get("time") == "61.500"
    assert [s.get("name") for s in root.findall("testsuite")] == card.scenarios
    assert not list(root.iter("failure")) and not list(root.iter("skipped"))


def test_a_failed_property_is_a_failed_testcase_carrying_its_evidence() -> None:
    xml, gone = _failing_run()
    SCHEMA.validate(xml)
    root = ET.fromstring(xml)
    failure = _case(root, "steady", "complete").find("failure")
    assert failure is not None and failure.get("type") == "property"
    assert failure.get("message") == "1 of 20 events missing: 1 missing in bigquery"
    assert "counts: events=20, failing=1, missing_in_bigquery=1" in failure.text
    assert f"  {gone}: missing_in_bigquery; gcs: output/" in failure.text
    latency = _case(root, "steady", "p95 latency within budget").find("failure")
    assert latency is not None and "over budget in gcs" in latency.get("message")
    assert _case(root, "run", "no rows the run never sent").find("failure") is not None
    # a property that holds has no child at all
    assert list(_case(root, "steady", "exactly-once")) == []


def test_suite_counts_and_properties() -> None:
    xml, _ = _failing_run()
    root = ET.fromstring(xml)
    steady = next(s for s in root.findall("testsuite") if s.get("name") == "steady")
    assert (steady.get("tests"), steady.get("failures"), steady.get("errors"), steady.get("skipped")) == (
        "5", "2", "0", "0")  # fmt: skip
    assert steady.get("time") == "0.200"  # 20 events at 100/s
    props = {p.get("name"): p.get("value") for p in steady.find("properties")}
    assert props == {"run_id": "20261201-102000-ab12", "contract": "event-workbench pipeline (built-in)",
                     "promise": "deduplicated", "seed": "100", "rate": "100", "sent": "20"}  # fmt: skip
    failures = sum(int(s.get("failures")) for s in root.findall("testsuite"))
    assert root.get("failures") == str(failures) and failures == 9  # complete, the run row, 7 latencies


def test_a_skipped_property_says_why_and_the_fix() -> None:
    run, _ = full_battery(with_lags=False)
    xml = to_junit(score(run.data()), run.run_id, elapsed_s=3)
    SCHEMA.validate(xml)
    skipped = _case(ET.fromstring(xml), "burst", "kept up with the burst").find("skipped")
    assert skipped is not None and "no landed time" in skipped.get("message")
    assert skipped.text.startswith("fix: map metadata.publish_time")


def test_hostile_strings_from_the_sinks_stay_valid_xml() -> None:
    run, _ = full_battery()
    hostile = "ev\x00il</failure>]]><script>&\x1b\ud800"
    run.unexpected.append({"sink": "gcs", "event_id": hostile, "message_id": "m", "location": "a&b<c>"})
    xml = to_junit(score(run.data()), run.run_id, elapsed_s=1234.5678)
    SCHEMA.validate(xml)
    text = _case(ET.fromstring(xml), "run", "no rows the run never sent").find("failure").text
    assert "ev\ufffdil</failure>]]><script>&\ufffd\ufffd: unexpected; gcs: a&b<c>" in text
    assert ET.fromstring(xml).get("time") == "1234.568"


def test_the_schema_refuses_what_ci_tools_would_not_read() -> None:
    # The copy is a real constraint: a suite without its counts, a testcase without a name are refused.
    assert not SCHEMA.is_valid('<testsuites><testsuite name="x"/></testsuites>')
    assert not SCHEMA.is_valid('<testsuites><testsuite name="x" tests="1" failures="0" errors="0">'
                               '<testcase classname="c"/></testsuite></testsuites>')  # fmt: skip
    assert not SCHEMA.is_valid('<testsuites time="1.5s"/>')


@pytest.mark.parametrize("elapsed", [0, 0.0004, 59.999, 5400])
def test_times_fit_the_schema(elapsed: float) -> None:
    run, _ = full_battery()
    SCHEMA.validate(to_junit(score(run.data()), run.run_id, elapsed_s=elapsed))


def test_the_schema_copy_accepts_what_pytest_itself_writes(tmp_path: Path) -> None:
    # pytest's --junitxml conforms to this schema (src/_pytest/junitxml.py says so): its output for a passing, a
    # failing and a skipped test validating here shows that the copy is the schema CI tools read.
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_sample.py").write_text(
        "import pytest\n\ndef test_ok():\n    pass\n\ndef test_bad():\n    assert 1 == 2\n\n"
        "@pytest.mark.skip(reason='not here')\ndef test_skipped():\n    pass\n"
    )
    report = tmp_path / "junit.xml"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}", "test_sample.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr  # the failing test, nothing else
    SCHEMA.validate(str(report))
    root = ET.parse(report).getroot()
    assert [len(list(root.iter(tag))) for tag in ("testcase", "failure", "skipped")] == [3, 1, 1]
