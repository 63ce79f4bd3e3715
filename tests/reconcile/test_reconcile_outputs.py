"""What `workbench reconcile` puts on disk and on the terminal: report files, exit status, narrow terminals.

A small run (60 valid events) is published to this project's Pub/Sub emulator and drained by the pipeline into a
GCS tree on disk (no BigQuery: the tests are about the outputs, and a tree is enough for a real verdict). The
CLI is then run as a user runs it, `python -m workbench.cli reconcile ...`, with WORKBENCH_HOME in a tmp folder.

- The exit status is the verdict (0 match, 1 mismatch) whatever --json / --html say, and 2 (with the fix, no
  traceback, before any reconcile work) for a path that cannot be written.
- On 60-, 80- and 160-column terminals every count in the tables is printed whole.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from rich.console import Console

from eventmodel import resources as names
from reconcile.pipeline_counters import read_pipeline_counts
from reconcile.report import Report
from workbench import reconcile_view
from workbench.errors import WorkbenchError
from workbench.reconcile_run import check_outputs, write_outputs

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "outputs-it"  # Beam wants 6+ characters
RUN = "outputs-it-run"


class Run:
    def __init__(self, home: Path, output: Path, pubsub: str) -> None:
        self.home, self.output, self.pubsub = home, output, pubsub

    def reconcile(
        self,
        *args: str,
        cwd: Path | None = None,
        columns: int = 200,
        output: Path | None = None,
        home: Path | None = None,
    ):
        """The CLI as a user runs it: GCS tree only (no BigQuery, no dead-letter topic in this run)."""
        env = {**os.environ, "WORKBENCH_HOME": str(home or self.home), "PUBSUB_EMULATOR_HOST": self.pubsub,
               "NO_GCE_CHECK": "true", "COLUMNS": str(columns)}  # fmt: skip
        tree = str(output or self.output)
        argv = [sys.executable, "-m", "workbench.cli", "reconcile", *args[:1], "--project", PROJECT,
                "--output-root", tree, "--no-bigquery", "--no-dead-letter-topic", *args[1:]]  # fmt: skip
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=cwd or self.home, env=env)


@pytest.fixture(scope="module")
def run(workbench_emulator, tmp_path_factory) -> Run:
    from generator.stream import GeneratorConfig
    from publisher.run import PublishPlan, publish
    from publisher.sinks import PubSubTarget
    from workbench.localstack.stack import create_pubsub_resources
    from workbench.pipeline_run.stream_launcher import LocalSettings
    from workbench.pipeline_run.stream_launcher import run as run_pipeline

    home = tmp_path_factory.mktemp("home")
    output = tmp_path_factory.mktemp("tree") / "output"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PUBSUB_EMULATOR_HOST", workbench_emulator.target)
        env.setenv("NO_GCE_CHECK", "true")
        env.setenv("WORKBENCH_HOME", str(home))
        create_pubsub_resources(workbench_emulator.target, PROJECT)
        plan = PublishPlan(
            run_id=RUN,
            target=PubSubTarget(PROJECT, names.TOPIC, workbench_emulator.target),
            rate=2000,
            count=60,
            generator=GeneratorConfig(seed=3),
        )
        assert publish(plan).status == "completed"
        args = ["--project", PROJECT, "--output_root", str(output), "--dataset", "", "--file_flush_seconds", "1"]
        assert run_pipeline(args, LocalSettings(stop_when_idle=2)).state == "DONE"
    return Run(home, output, workbench_emulator.target)


def broken_tree(run: Run, tmp_path: Path) -> Path:
    """A copy of the tree with one file gone: a real mismatch (exit 1)."""
    copy = tmp_path / "broken"
    shutil.copytree(run.output, copy)
    sorted(copy.rglob("*.json"))[0].unlink()
    return copy


# ---------------------------------------------------------------------------------------- report files


def test_reports_into_missing_folders_are_written_and_the_exit_is_the_verdict(run, tmp_path):
    json_path, html_path = tmp_path / "a" / "b" / "r.json", tmp_path / "c" / "d" / "r.html"
    done = run.reconcile(RUN, "--json", str(json_path), "--html", str(html_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    report = orjson.loads(json_path.read_bytes())
    assert report["verdict"] == "matched" and report["exit_code"] == 0
    assert "MATCHED" in html_path.read_text(encoding="utf-8")
    # The files are named before the verdict, which stays the last line on screen.
    assert f"full report: {json_path}" in done.stderr and f"visual report: {html_path}" in done.stderr
    assert done.stderr.rstrip().splitlines()[-1].startswith("✔ run outputs-it-run: all 60 events accounted for")


def test_a_mismatch_into_missing_folders_exits_1_with_its_reports(run, tmp_path):
    json_path = tmp_path / "new" / "r.json"
    done = run.reconcile(RUN, "--json", str(json_path), "--html", str(tmp_path / "new2" / "r.html"),
                         output=broken_tree(run, tmp_path))  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert orjson.loads(json_path.read_bytes())["verdict"] == "mismatch"
    assert (tmp_path / "new2" / "r.html").is_file()


@pytest.mark.parametrize(
    ("option", "where", "says"),
    [
        ("--json", "afile/r.json", "afile is a file"),
        ("--html", "afile/deeper/r.html", "afile is a file"),
        ("--json", "adir", "is a folder, not a file"),
        ("--html", "adir", "is a folder, not a file"),
    ],
)
def test_an_unwritable_report_path_exits_2_before_the_work(run, tmp_path, option, where, says):
    """Tests may run as root, where a read-only folder does not stop a write: a path under a regular file, and a
    folder given as the file, cannot be written by anyone."""
    (tmp_path / "afile").write_text("a regular file\n")
    (tmp_path / "adir").mkdir()
    # A run that does not exist: had the work started first, the error would name the run, not the path.
    done = run.reconcile("no-such-run", option, str(tmp_path / where), cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert says in done.stderr
    assert "no-such-run" not in done.stderr and done.stdout == ""
    assert "fix:" in done.stderr


def test_check_outputs_refuses_a_folder_and_the_same_file_twice_and_creates_folders(tmp_path):
    """The library's own check (the demo calls run_reconcile without click's)."""
    with pytest.raises(WorkbenchError, match="is a folder, not a file") as raised:
        check_outputs(tmp_path, None)
    assert raised.value.fix and "report.json" in raised.value.fix
    with pytest.raises(WorkbenchError, match="name the same file"):
        check_outputs(tmp_path / "r", tmp_path / "r")
    check_outputs(tmp_path / "x" / "y" / "r.json", tmp_path / "z" / "r.html")
    assert (tmp_path / "x" / "y").is_dir() and (tmp_path / "z").is_dir()
    assert list((tmp_path / "x" / "y").iterdir()) == []  # the write probe leaves nothing behind


def test_a_write_that_fails_after_the_check_is_an_error_not_a_verdict(tmp_path):
    """Between the check and the write the folder became a file: the failure comes back as a WorkbenchError
    (exit 2), never as an exception after a verdict."""
    json_path, html_path = tmp_path / "gone" / "r.json", tmp_path / "ok" / "r.html"
    check_outputs(json_path, html_path)
    (tmp_path / "gone").rmdir()
    (tmp_path / "gone").write_text("now a file\n")
    data = _report().to_dict()
    written, failed = write_outputs(data, json_path, html_path)
    assert written == []
    assert isinstance(failed, WorkbenchError)
    assert "--json" in failed.message and "could not be written" in failed.message and failed.fix
    written, failed = write_outputs(data, None, html_path)
    assert failed is None and written == [f"visual report: {html_path}"] and html_path.is_file()


def test_wait_takes_a_duration(run):
    done = run.reconcile(RUN, "--wait", "10s")
    assert done.returncode == 0, done.stdout + done.stderr
    refused = run.reconcile(RUN, "--wait", "ten")
    assert refused.returncode == 2 and "not a duration" in refused.stderr


# ------------------------------------------------------------------------------------- narrow terminals

BIG = 1_234_567


def _type_row(event_type: str, **counts: int) -> dict:
    keys = ["expected", "in_gcs", "in_bigquery", "missing", "gcs_duplicated", "gcs_redelivered",
            "bigquery_raw_duplicated", "misplaced", "altered", "dead_lettered", "sink_gave_up", "ok"]  # fmt: skip
    return {"event_type": event_type, **{k: counts.get(k, 0) for k in keys}}


def _problem(problem: str, event_id: str, **extra) -> dict:
    row = {"problem": problem, "event_id": event_id, "expected": "gcs,bigquery", "event_type": "order", "kind": None,
           "reason": None, "message_id": "1234567890123", "gcs_copies": 0, "bigquery_copies": 0, "dlt_copies": 0,
           "dlq_copies": 0, "dead_letter_reasons": None, "gcs_location": None, "bigquery_location": None}  # fmt: skip
    return row | extra


def _report(**overrides) -> Report:
    fields = dict(
        run_id="20261207-091500-abcd",
        run={"status": "completed", "started_at": "2026-12-07T09:15:00Z", "plan": {"rate": 500, "count": None}},
        checked={"gcs": True, "bigquery": True, "dead_letter_table": True, "dead_letter_topic": True},
        by_type=[
            _type_row("order", expected=BIG, in_gcs=BIG - 9470, in_bigquery=BIG - 9470, missing=9470, ok=BIG - 9470),
            _type_row(
                "user_activity",
                expected=2_345_678,
                in_gcs=2_345_678,
                in_bigquery=2_345_678,
                ok=2_345_678,
                gcs_redelivered=12,
                bigquery_raw_duplicated=345,
                misplaced=7,
                altered=3,
                dead_lettered=2,
            ),
        ],
        by_kind=[
            {
                "kind": "truncated_json",
                "reason": "PARSE_ERROR",
                "sent": 23_456,
                "accepted": 17,
                "expected_reason": 23_400,
                "other_reason": 0,
                "other_codes": None,
                "missing": 39,
                "bytes_altered": 0,
                "ok": 23_400,
            },
        ],
        problems=[_problem("missing", f"0714b821-287c-47d3-8694-1638{i:08d}") for i in range(12)]
        + [
            _problem(
                "misplaced",
                "9fb6142c-cd24-454a-b49a-6a9237c87dd2",
                gcs_copies=1,
                bigquery_copies=1,
                gcs_location="order/2026/12/07/09/15/order_2026120709150001.json",
            )
        ],
        raw_duplicates=[],
        unexpected=[
            {
                "sink": "gcs",
                "event_id": "e-unexpected",
                "message_id": "98765432109",
                "event_type": "order",
                "location": "order/2026/12/07/09/15/order_2026120709150002.json",
            }
        ],
        foreign=[],
        latency=[
            {"sink": "bigquery", "n": BIG, "p50": 3681, "p95": 12_345, "p99": 45_678, "max": 612_345},
            {"sink": "dead_letter_table", "n": 23_400, "p50": 120, "p95": 900, "p99": 1500, "max": 2500},
        ],
        histogram=[],
        sizes={"files": 4321, "gcs": BIG},
    )
    return Report(**(fields | overrides))


def _printed_numbers(report: Report) -> set[int]:
    """Every count the tables print (big enough that a cut one cannot hide as another)."""
    found = {r[k] for r in report.by_type for k in r if k != "event_type"}
    found |= {v for r in report.by_kind for v in r.values() if isinstance(v, int)}
    found |= {v for r in report.latency for v in r.values() if isinstance(v, int)}
    return {n for n in found if n >= 10}


def _render(renderables, width: int) -> str:
    console = Console(width=width, record=True, force_terminal=False, color_system=None)
    for r in renderables:
        console.print(r)
    return console.export_text()


def _whole(number: int, text: str) -> bool:
    return re.search(rf"(?<![\d,]){re.escape(f'{number:,}')}(?![\d,])", text) is not None


@pytest.mark.parametrize("width", [60, 80, 160])
def test_reconcile_tables_print_every_number_whole(width):
    report = _report()
    text = _render(
        [reconcile_view.type_table(report), reconcile_view.kind_table(report), reconcile_view.latency_table(report),
         *reconcile_view.problem_sample(report)],
        width,
    )  # fmt: skip
    assert "…" not in text, text
    cut = [n for n in _printed_numbers(report) if not _whole(n, text)]
    assert cut == [], text
    assert all(len(line) <= width for line in text.splitlines()), text
    for event_id in [p["event_id"] for p in report.problems[:10]] + ["e-unexpected"]:
        assert event_id in text  # ids are what people copy: never cut either
    if width == 160:  # wide enough: every column shows, no header word is folded
        for word in ["expected", "redeliv", "misplaced", "altered", "letters", "ACCEPTED", "reasons", "seen"]:
            assert word in text, text
        assert "left out" not in text and "all 0" not in text and "continued" not in text


def test_a_count_the_queries_add_later_shows_under_its_own_name():
    """Another count in by_type rows (say, events found only under an earlier run's id) needs no change here."""
    report = _report(by_type=[_type_row("order", expected=50, ok=40) | {"found_under_earlier_run": 10}])
    text = _render([reconcile_view.type_table(report)], 220)
    assert "found under earlier run" in text and _whole(10, text)
    problems = [_problem("a_problem_named_later", "e-later-1")]
    text = _render(reconcile_view.problem_sample(_report(problems=problems, unexpected=[])), 160)
    assert "1 a problem named later" in text and "e-later-1" in text


def test_the_cli_tables_are_whole_at_60_and_80_columns(run, tmp_path):
    """The real command on a real mismatch, on terminals of 60 and 80 columns (COLUMNS, as a shell sets it)."""
    broken = broken_tree(run, tmp_path)
    for width in (60, 80):
        done = run.reconcile(RUN, "--json", str(tmp_path / f"{width}.json"), columns=width, output=broken)
        assert done.returncode == 1, done.stdout + done.stderr
        assert "…" not in done.stdout, done.stdout
        report = orjson.loads((tmp_path / f"{width}.json").read_bytes())
        numbers = {r[k] for r in report["by_type"] for k in r if k != "event_type" and r[k]}
        numbers |= {r[k] for r in report["latency"] for k in ("n", "p50", "p95", "p99", "max")}
        assert [n for n in numbers if not _whole(n, done.stdout)] == [], done.stdout
        assert all(len(line) <= width for line in done.stdout.splitlines()), done.stdout


# ------------------------------------------------------------------------- the pipeline's own counters


def test_the_verdict_says_when_the_pipelines_counters_explain_the_mismatch(tmp_path, capsys):
    from workbench import terminal

    report = _report()
    explanation = "9,470 of the 9,470 events in no sink have ids the pipeline had already let through (its journal)"
    with terminal.console.capture() as captured, terminal.out.capture():
        reconcile_view.show(report, "./output", "events", explanation=explanation, written=["full report: r.json"])
    lines = captured.get().rstrip().splitlines()
    assert "MISMATCH" in lines[-2] and lines[-1].strip() == f"why: {explanation}"
    assert "full report: r.json" in captured.get()


def _journal(path: Path, entries: list[tuple[str, str]]) -> None:
    """A dedup journal as the pipeline writes it (pipeline.dedup_journal), entries (event id, message id)."""
    import time

    from pipeline.dedup_journal import DedupJournal

    journal = DedupJournal(str(path), ttl_seconds=600, run=f"test-{path.name}")
    journal.load()
    for event_id, message_id in entries:
        journal.add(event_id, message_id, time.time())
    journal.flush()


def test_the_dedup_journal_names_events_dropped_as_repeats(tmp_path):
    """Missing events whose ids the journal holds under another message were dropped as repeats; the same
    message (a redelivery the pipeline let through), a dead letter, or an event in a sink are not."""
    problems = [_problem("missing", f"e-{i}", message_id=f"m-{i}") for i in range(5)]
    problems.append(_problem("missing_in_gcs", "e-in-bq", message_id="m-bq", bigquery_copies=1))
    problems.append(_problem("missing", "e-letter", expected="dead_letter", message_id="m-letter"))
    _journal(tmp_path / "dedup-p-sub.tsv", [("e-0", "earlier-0"), ("e-1", "earlier-1"), ("e-2", "m-2"),
                                             ("e-in-bq", "earlier-bq"), ("e-letter", "earlier-letter")])  # fmt: skip
    _journal(tmp_path / "dedup-p-other.tsv", [("e-3", "earlier-3")])
    counts = read_pipeline_counts("r1", problems, home=tmp_path)
    assert (counts.not_in_any_sink, counts.repeats) == (5, 3)
    assert "3 of the 5 events in no sink" in counts.explanation()
    assert sorted(Path(s).name for s in counts.sources) == ["dedup-p-other.tsv", "dedup-p-sub.tsv"]


def test_nothing_to_explain_says_nothing(tmp_path):
    _journal(tmp_path / "dedup-p-sub.tsv", [("e-0", "earlier-0")])
    assert read_pipeline_counts("r1", [], home=tmp_path).explanation() is None  # nothing in no sink
    problems = [_problem("missing", "e-9", message_id="m-9")]
    assert read_pipeline_counts("r1", problems, home=tmp_path).explanation() is None  # the journal knows no e-9


def test_a_mismatch_the_pipeline_counted_is_explained_in_the_verdict_and_the_html(run, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(run.home, home)
    broken = broken_tree(run, tmp_path)
    plain = run.reconcile(RUN, output=broken, home=home)
    assert plain.returncode == 1 and "why:" not in plain.stderr  # no record of the pipeline: nothing claimed
    missing = int(re.search(r"MISMATCH: (\d+) missing", plain.stderr).group(1))
    # The journal holds the missing events' ids under other messages: the pipeline dropped them as repeats.
    report = orjson.loads(
        run.reconcile(RUN, "--json", str(tmp_path / "plain.json"), output=broken, home=home).returncode == 1
        and (tmp_path / "plain.json").read_bytes()
    )
    dropped = [p["event_id"] for p in report["problems"] if p["problem"] == "missing"]
    _journal(home / "pipeline" / "dedup-test-sub.tsv", [(event_id, f"earlier-{event_id}") for event_id in dropped])
    html_path = tmp_path / "r.html"
    done = run.reconcile(RUN, "--html", str(html_path), "--json", str(tmp_path / "r.json"), output=broken, home=home)
    assert done.returncode == 1, done.stderr
    lines = " ".join(done.stderr.split())
    assert f"why: {missing} of the {missing} events in no sink have ids the pipeline had already let through" in lines
    page = " ".join(html_path.read_text(encoding="utf-8").split())
    assert "What the pipeline counted" in page and f"{missing} of the {missing} events in no sink" in page
    assert orjson.loads((tmp_path / "r.json").read_bytes())["pipeline_counts"]["repeats"] == missing
