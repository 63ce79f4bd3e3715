"""The scorecard as JUnit XML, the report every CI system shows natively (`workbench check --junit FILE`).

    >>> xml = to_junit(score(data), data.run_id, elapsed_s=84.2)            # doctest: +SKIP

One <testsuite> per scenario (and one for the run's own row), one <testcase> per property judged:
classname "workbench.check.<scenario>", name the property's title ("exactly-once", "complete", ...). A failed
property carries <failure message="<summary>" type="property"> with its evidence as text (counts, then the first
events with where each was last seen); a skipped one <skipped message="<why>"> with the fix. Each suite's
<properties> say which run, contract, promise and seed it was.

The XML follows Jenkins' JUnit schema junit-10.xsd (jenkinsci/xunit-plugin), the one pytest's own --junitxml
conforms to; tests/battery/test_junit.py validates against a copy of it. Every string from the sinks is escaped, and
characters XML 1.0 cannot carry at all (control characters) are replaced, so a hostile event id cannot break the
file a CI system parses.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from battery.model import FAIL, SKIP
from battery.scorecard import PropertyResult, Scorecard, evidence_lines

CLASSNAME = "workbench.check.{scenario}"
# XML 1.0's Char production: tab, newline, carriage return, and from U+0020 on, less the surrogates and U+FFFE/F.
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _text(value: object) -> str:
    return _NOT_XML.sub("\ufffd", str(value))


def _time(seconds: float) -> str:
    """A duration in the schema's SUREFIRE_TIME form: digits, at most three decimals."""
    return f"{max(0.0, seconds):.3f}"


def _testcase(row: PropertyResult) -> ET.Element:
    case = ET.Element("testcase", classname=_text(CLASSNAME.format(scenario=row.scenario)), name=_text(row.title),
                      time=_time(0))  # fmt: skip
    if row.status == FAIL:
        failure = ET.SubElement(case, "failure", message=_text(row.summary), type="property")
        failure.text = _text("\n".join(evidence_lines(row)))
    elif row.status == SKIP:
        skipped = ET.SubElement(case, "skipped", message=_text(row.summary))
        skipped.text = _text(f"fix: {row.fix}") if row.fix else None
    return case


def _suite(card: Scorecard, scenario: str, run_id: str) -> ET.Element:
    rows = card.rows_of(scenario)
    phase = next((p for p in card.phases if p.name == scenario), None)
    duration = (phase.finished_ms - phase.started_ms) / 1000 if phase else 0.0
    suite = ET.Element(
        "testsuite",
        name=_text(scenario),
        tests=str(len(rows)),
        failures=str(sum(r.status == FAIL for r in rows)),
        errors="0",  # a check that could not run writes no report (exit 2)
        skipped=str(sum(r.status == SKIP for r in rows)),
        time=_time(duration),
    )
    properties = ET.SubElement(suite, "properties")
    facts = [("run_id", run_id), ("contract", card.contract), ("promise", card.promise)]
    if phase is not None:
        facts += [("seed", phase.seed), ("rate", f"{phase.rate:g}"), ("sent", phase.sent)]
    for name, value in facts:
        ET.SubElement(properties, "property", name=name, value=_text(value))
    suite.extend(_testcase(r) for r in rows)
    return suite


def to_junit(card: Scorecard, run_id: str, elapsed_s: float) -> str:
    """The whole document, with its XML declaration. elapsed_s: the check's own time, on <testsuites>."""
    root = ET.Element(
        "testsuites",
        name=_text(f"workbench check {run_id}"),
        tests=str(len(card.rows)),
        failures=str(sum(r.status == FAIL for r in card.rows)),
        errors="0",
        time=_time(elapsed_s),
    )
    root.extend(_suite(card, scenario, run_id) for scenario in card.scenarios)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
