"""`workbench publish` and `workbench runs` as a user meets them: output, files, manifests and error messages."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from publisher.manifest import iter_events, list_runs, payload_digest
from workbench.cli import cli
from workbench.localstack.ports import free_port

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def home(home: Path, monkeypatch) -> Path:
    """tests/conftest.py's home (the runs' manifests and the published files go there), and no emulator from the
    caller's shell: a PUBSUB_EMULATOR_HOST it exported would take these runs."""
    monkeypatch.delenv("PUBSUB_EMULATOR_HOST", raising=False)
    return home


def read_lines(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_publish_to_a_file_writes_every_message_and_a_manifest(home, cli_runner):
    target = home / "events.jsonl"
    result = cli_runner(
        "publish",
        "--rate",
        "5000",
        "--count",
        "500",
        "--malformed-rate",
        "0.1",
        "--seed",
        "3",
        "--to",
        str(target),
        "--run-id",
        "file-run",
    )
    assert result.exit_code == 0, result.output
    lines = read_lines(target)
    assert len(lines) == 500
    rows = list(iter_events("file-run"))
    assert [r["event_id"] for r in rows] == [line["attributes"]["event_id"] for line in lines]
    assert all(
        payload_digest(base64.b64decode(line["data"])) == row["payload_digest"]
        for line, row in zip(lines, rows, strict=True)
    )
    assert {line["attributes"]["run_id"] for line in lines} == {"file-run"}
    runs = list_runs()
    assert runs[0]["run_id"] == "file-run" and runs[0]["status"] == "completed"
    assert runs[0]["totals"]["published"] == 500
    assert runs[0]["counts"]["expected:dead_letter"] == sum(r["expected"] == "dead_letter" for r in rows) > 0


def _publish_file(cli_runner, home: Path, name: str, *args: str):
    return cli_runner("publish", "--rate", "5000", "--to", str(home / f"{name}.jsonl"), "--run-id", name, *args)


def _payloads(lines: list[dict]) -> list[bytes]:
    return [base64.b64decode(line["data"]) for line in lines]


# Timestamps spread over a fixed range by the seed, not read from the clock: runs compare byte for byte.
HISTORY = ("--history", "2025-01-01..2025-01-02")


def test_same_seed_same_events_under_new_ids(home, cli_runner):
    """A rerun with the same seed sends the same events, but as new events: ids of its own (a pipeline that
    deduplicates by event id would otherwise drop the whole rerun as repeats)."""
    for name in ("a", "b"):
        published = _publish_file(
            cli_runner, home, name, "--count", "200", "--seed", "9", "--malformed-rate", "0.1", *HISTORY
        )
        assert published.exit_code == 0, published.output
    first, second = read_lines(home / "a.jsonl"), read_lines(home / "b.jsonl")
    assert _payloads(first) == _payloads(second)
    assert not {x["attributes"]["event_id"] for x in first} & {x["attributes"]["event_id"] for x in second}


def test_replay_sends_the_runs_events_under_its_ids(home, cli_runner):
    args = ("--count", "300", "--seed", "9", "--malformed-rate", "0.1", "--duplicate-rate", "0.05", *HISTORY)
    assert _publish_file(cli_runner, home, "original", *args).exit_code == 0
    replayed = _publish_file(cli_runner, home, "again", "--replay", "original")  # its seed, shares and count
    assert replayed.exit_code == 0, replayed.output
    first, again = read_lines(home / "original.jsonl"), read_lines(home / "again.jsonl")
    assert [x["attributes"]["event_id"] for x in again] == [x["attributes"]["event_id"] for x in first]
    assert _payloads(again) == _payloads(first)
    assert {x["attributes"]["run_id"] for x in again} == {"again"}
    manifest = orjson.loads((home / "runs" / "again" / "manifest.json").read_bytes())
    assert manifest["generator"]["ids_of"] == "original"
    # A replay of the replay draws the same ids again: the namespace is the original's.
    assert _publish_file(cli_runner, home, "third", "--replay", "again", "--count", "50").exit_code == 0
    third = read_lines(home / "third.jsonl")
    assert [x["attributes"]["event_id"] for x in third] == [x["attributes"]["event_id"] for x in first[:50]]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--replay", "nope"], "no run 'nope' to replay"),
        (["--replay", "original", "--seed", "4"], "with its own generator settings: drop --seed"),
        (["--replay", "original", "--malformed-rate", "0.2"], "drop --malformed-rate"),
        (["--replay", "original", "--malformed-rate", "0.1", "--late-rate", "0.1"], "drop --late-rate"),
        (["--replay", "original", "--workers", "2"], "drop --workers 2 to replay it"),
    ],
)
def test_a_replay_that_would_send_other_events_is_refused(home, args, says, cli_runner):
    assert _publish_file(cli_runner, home, "original", "--count", "20", "--malformed-rate", "0.1").exit_code == 0
    result = _main("publish", "--to", str(home / "x.jsonl"), *args)
    assert result.returncode == 2, result.stderr
    assert says in " ".join(result.stderr.split())


def test_no_emulator_no_stack_and_no_project_says_what_to_start(home, monkeypatch):
    for name in ("PUBSUB_PROJECT_ID", "GOOGLE_CLOUD_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    started = time.monotonic()
    result = _main("publish", "--count", "5")
    assert time.monotonic() - started < 15
    assert result.returncode == 2, result.stderr
    text = " ".join(result.stderr.split())
    assert "no Pub/Sub emulator is running and no GCP project is named" in text
    assert "workbench up" in text and "--project" in text


def test_to_stdout_streams_json_lines(home, cli_runner):
    result = cli_runner.invoke(cli, ["publish", "--count", "20", "--rate", "1000", "--to", "-"])
    assert result.exit_code == 0
    data_lines = [line for line in result.stdout.splitlines() if line.startswith('{"data"')]
    assert len(data_lines) == 20


def test_runs_lists_nothing_yet_with_a_hint(home, cli_runner):
    result = cli_runner("runs")
    assert "no runs yet" in result.output and "workbench publish" in result.output


def test_runs_shows_where_each_run_went(home):
    from publisher.manifest import write_manifest

    write_manifest("r-s3", {"run_id": "r-s3", "status": "completed", "started_at": "2026-12-01T10:00:00",
                            "target": {"kind": "s3", "run_prefix": "s3://hist/exports/r-s3/"}})  # fmt: skip
    write_manifest("r-file", {"run_id": "r-file", "status": "completed", "started_at": "2026-12-01T09:00:00",
                              "target": {"kind": "file", "path": "events.jsonl"}})  # fmt: skip
    listed = subprocess.run(  # a wide terminal of its own: rich wraps cells to the width it finds
        [sys.executable, "-m", "workbench.cli", "runs"], capture_output=True, text=True, timeout=60, cwd=ROOT,
        env={**os.environ, "COLUMNS": "200", "NO_GCE_CHECK": "true"},
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert "s3://hist/exports/r-s3/" in listed.stdout and "events.jsonl" in listed.stdout


def test_runs_never_cuts_a_run_id_on_a_narrow_terminal(home, cli_runner):
    """The run id is what people copy: a 40-column terminal wraps the other columns, never the id."""
    out = home / "e.jsonl"
    assert (
        cli_runner("publish", "--count", "5", "--to", str(out), "--run-id", "20261201-081344-fd45-narrow").exit_code
        == 0
    )
    listed = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "runs"], capture_output=True, text=True, timeout=60, cwd=ROOT,
        env={**os.environ, "COLUMNS": "40", "NO_GCE_CHECK": "true"},
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert "20261201-081344-fd45-narrow" in listed.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--rate", "0"], "--rate must be greater than 0"),
        (["--rate", "-5"], "--rate must be greater than 0"),
        (["--malformed-rate", "1.5"], "--malformed-rate must be a share between 0 and 1"),
        (["--duplicate-rate", "-0.1"], "--duplicate-rate must be a share between 0 and 1"),
        (["--profile", "zigzag"], "unknown --profile 'zigzag'. Write one of: constant | ramp"),
        (["--profile", "ramp:soon"], "'soon' is not a duration"),
        (["--duration", "ten"], "'ten' is not a duration"),
        (["--count", "0"], "--count must be a positive number"),
        (["--malformed-kinds", "nope=1"], "--malformed-kinds: unknown name(s) nope; known:"),
        (["--malformed-kinds", "bad_uuid=x"], "write KIND=WEIGHT pairs"),
        (["--history", "yesterday"], "write START..END in ISO form"),
        (["--workers", "2"], "--workers applies to Pub/Sub"),
    ],
)
def test_bad_flags_say_what_to_write_instead(home, args, says, cli_runner):
    result = cli_runner.invoke(cli, ["publish", *args, "--to", str(home / "x.jsonl")])
    assert result.exit_code == 2
    assert says in result.output


def _main(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "workbench.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "NO_GCE_CHECK": "true"},
    )


@pytest.mark.parametrize(
    ("to", "says", "fix"),
    [
        ("{home}/missing/dir/events.jsonl", "does not exist", "mkdir -p"),
        ("{home}", "is a directory", "name a file inside it"),
        ("/proc/version", "cannot be written", "--to -"),
    ],
)
def test_unwritable_to_path_names_the_fix(home, to, says, fix):
    result = _main("publish", "--count", "5", "--to", to.format(home=home))
    assert result.returncode == 2
    assert says in result.stderr and fix in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_emulator_fails_fast_with_how_to_start_it(home):
    started = time.monotonic()
    result = _main("publish", "--count", "5", "--emulator", f"127.0.0.1:{free_port()}")
    assert time.monotonic() - started < 10
    assert result.returncode == 2
    assert "no Pub/Sub emulator is listening" in result.stderr
    assert "workbench up" in result.stderr


def test_ctrl_c_stops_cleanly_with_a_consistent_manifest(home):
    target = home / "events.jsonl"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "workbench.cli",
            "publish",
            "--rate",
            "300",
            "--duration",
            "60s",
            "--to",
            str(target),
            "--run-id",
            "stopped",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while (not target.exists() or target.stat().st_size < 20_000) and time.monotonic() < deadline:
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr
    manifest = list_runs()[0]
    assert manifest["status"] == "interrupted"
    written = len(target.read_bytes().splitlines())
    assert manifest["totals"]["published"] == written == len(list(iter_events("stopped"))) > 0


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--to", "s3://history/x"], "--to s3:// needs --count"),
        (["--count", "5", "--to", "s3://History/x"], "'History' is not a bucket name"),
        (["--count", "5", "--objects", "6", "--to", "s3://history/x"], "--objects must be between 1 and --count (5)"),
        (["--count", "5", "--workers", "2", "--to", "s3://history/x"], "S3 objects are written by one process"),
        (["--count", "5", "--gzip", "--compression", "none", "--to", "s3://history/x"], "drop one of --gzip"),
        (["--count", "5", "--format", "parquet", "--to", "s3://history/x"], "'parquet' is not one of"),
        (["--count", "5", "--format", "array", "--gzip"], "--format, --gzip apply to --to s3://BUCKET/PREFIX only"),
        (["--count", "5", "--objects", "3", "--to", "x.jsonl"], "--objects apply to --to s3://BUCKET/PREFIX only"),
    ],
)
def test_bad_s3_flags_say_what_to_write_instead(home, args, says, cli_runner):
    """Refused before any S3 call (no server runs here) and before the run exists."""
    result = cli_runner.invoke(cli, ["publish", *args])
    assert result.exit_code == 2
    assert says in result.output
    assert not (home / "runs").exists()


def test_help_names_the_s3_flags(home, cli_runner):
    text = cli_runner("publish", "--help").output
    for flag in ("s3://BUCKET/PREFIX", "--format", "--compression", "--gzip", "--objects", "--split-by-type"):
        assert flag in text


def test_a_run_of_phases_is_not_replayed_and_the_battery_is_named(home):
    from generator.stream import GeneratorConfig
    from publisher.run import Phase, PublishPlan, publish
    from publisher.sinks import FileTarget

    phases = (Phase("steady", 1000, 20, generator=GeneratorConfig(seed=1)),
              Phase("late", 1000, 10, generator=GeneratorConfig(seed=2, late_rate=1.0)))  # fmt: skip
    assert publish(PublishPlan(run_id="battery", target=FileTarget(str(home / "b.jsonl")), phases=phases)).status == (
        "completed"
    )
    result = _main("publish", "--to", str(home / "x.jsonl"), "--replay", "battery")
    assert result.returncode == 2, result.stderr
    said = " ".join(result.stderr.split())
    assert "run battery is a run of phases" in said and "workbench check" in said


def test_off_a_terminal_the_live_views_last_frame_ends_its_line(home):
    # CI logs: rich leaves a Live's last frame without a line end when the output is not a terminal.
    result = _main("publish", "--count", "20", "--to", str(home / "x.jsonl"))
    assert result.returncode == 0, result.stderr
    bar = next(line for line in result.stderr.splitlines() if "━" in line)  # the views write to stderr
    assert "completed" not in bar, bar
