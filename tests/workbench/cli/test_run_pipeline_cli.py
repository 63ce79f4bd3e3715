"""`workbench run-pipeline` as a user meets it: the local run until idle, Ctrl-C, errors with their fix, Dataflow."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pipeline_support import files_under, generated, lines_of

from eventmodel import resources as names

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def no_stack(home, monkeypatch):
    """No emulator anywhere: not in the environment, not in the stack's state (an empty home)."""
    for name in ("PUBSUB_EMULATOR_HOST", "BIGQUERY_EMULATOR_HOST", "STORAGE_EMULATOR_HOST"):
        monkeypatch.delenv(name, raising=False)


def test_the_command_is_registered_with_its_help(cli_runner):
    result = cli_runner("run-pipeline", "--help")
    assert result.exit_code == 0
    assert "--stop-when-idle" in result.output and "DataflowRunner" in result.output


def one_line(text: str) -> str:
    """What the terminal showed, as one line however it wrapped."""
    return " ".join(text.split())


def test_without_a_local_stack_it_says_to_start_one(no_stack, capsys):
    from workbench.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["run-pipeline", "--stop-when-idle", "1"])
    assert exited.value.code == 2
    said = one_line(capsys.readouterr().err)
    assert "no Pub/Sub emulator is known" in said and "start it with `workbench up`" in said, said


def test_errors_name_the_fix(no_stack, capsys):
    from workbench.cli import main

    with pytest.raises(SystemExit):
        main(["run-pipeline"])
    err = capsys.readouterr().err
    assert "no Pub/Sub emulator is known" in err and "workbench up" in err

    with pytest.raises(SystemExit):
        main(["run-pipeline", "--emulator", "127.0.0.1:1", "--dataset", "", "--output-root", "gs://b/x"])
    err = capsys.readouterr().err
    assert "GCS emulator" in err and "workbench up --gcs" in err


@pytest.mark.parametrize(
    ("flag", "value", "says"),
    [
        ("--stop-when-idle", "0", "must be more than 0 seconds"),
        ("--pull-size", "5000", "must be between 1 and 1000 (Pub/Sub's limit per pull)"),
        ("--dedup-ttl", "0", "must be more than 0 seconds"),  # 0 would divide by zero
        ("--flush-seconds", "0", "must be more than 0 seconds"),  # or never flush
    ],
)
def test_bad_values_are_usage_errors_that_name_the_flag(no_stack, cli_runner, flag, value, says):
    result = cli_runner("run-pipeline", flag, value)
    assert result.exit_code == 2, result.output
    said = one_line(result.output)
    assert f"Invalid value for {flag}: {says}" in said, said


@pytest.mark.integration
def test_a_local_run_until_idle_prints_what_it_wrote(stack, tmp_path, cli_runner):
    _publish(stack, count=300, malformed_rate=0.1)
    output = tmp_path / "output"
    result = cli_runner(
        "run-pipeline",
        "--project", stack.project,
        "--output-root", str(output),
        "--dataset", stack.dataset,
        "--bigquery-emulator", stack.bigquery_host_port,
        "--stop-when-idle", "2s",
        "--flush-seconds", "1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "pipeline stopped (no message for 2 s)" in result.output
    assert "dead letters by reason" in result.output
    assert len(lines_of(files_under(str(output)))) > 200


@pytest.mark.integration
@pytest.mark.parametrize(
    ("root", "says"),
    [("gs:/bucket", "gs:/bucket looks like a GCS URL with one slash"), ("~/out", "~ is not expanded inside")],
)
def test_a_misspelt_output_root_is_refused_before_anything_starts_and_creates_no_folder(stack, tmp_path, root, says):
    """With a stack that answers (so only the output root can stop it): as a user types it, from a working folder."""
    cwd = tmp_path / "checkout"
    cwd.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WORKBENCH_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    argv = [sys.executable, "-m", "workbench.cli", "run-pipeline", "--project", stack.project, "--emulator",
            stack.pubsub, "--dataset", "", "--stop-when-idle", "1", f"--output-root={root}"]  # fmt: skip
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert says in result.stderr and "write --output-root" in result.stderr, result.stderr
    assert "DirectRunner" not in result.stdout + result.stderr, "refused before the pipeline started"
    assert list(cwd.iterdir()) == [], "no folder named after the typo"


@pytest.mark.integration
def test_ctrl_c_drains_writes_everything_and_exits_130(stack, tmp_path):
    count = _publish(stack, count=400)
    output = tmp_path / "output"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WORKBENCH_HOME": str(tmp_path / "home")}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "workbench.cli",
            "run-pipeline",
            "--project",
            stack.project,
            "--output-root",
            str(output),
            "--dataset",
            "",
            "--emulator",
            stack.pubsub,
            "--flush-seconds",
            "60",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        # Wait until everything was read (the files are not flushed yet: 60 s buffers), then interrupt.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _subscription(stack)["outstanding"] < count:
            time.sleep(0.5)
        read = _subscription(stack)
        assert read["outstanding"] == count
        # At-least-once: nothing is acknowledged before its file is written (a lease is not an ack).
        assert read["acked"] == 0
        time.sleep(1)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert process.returncode == 130, err.decode()[-2000:]
    assert len(lines_of(files_under(str(output)))) == count, "the drain wrote every buffered event"
    after = _subscription(stack)
    assert (after["acked"], after["outstanding"], after["backlog"]) == (count, 0, 0), "acked once written"


def _publish(stack, count: int, malformed_rate: float = 0.0) -> int:
    """Publish `count` generated messages (no duplicates); returns how many."""
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    topic = f"projects/{stack.project}/topics/{names.TOPIC}"
    try:
        messages = generated(count, seed=31, malformed_rate=malformed_rate)
        for future in [publisher.publish(topic, m.data, **m.attributes) for m in messages]:
            future.result(timeout=30)
    finally:
        publisher.stop()
    assert len({m.event_id for m in messages}) == len(messages), "no duplicates in this sample"
    return len(messages)


def _subscription(stack) -> dict:
    """The pipeline subscription's counters (acked, outstanding = delivered and leased, backlog): the emulator's
    admin counters."""
    from emulator.pubsub.admin import AdminClient

    with AdminClient(stack.pubsub) as admin:
        stats = admin.stats()["subscriptions"]
    return stats[f"projects/{stack.project}/subscriptions/{names.SUBSCRIPTION}"]


def test_dataflow_dry_run_through_the_cli(no_stack, monkeypatch, cli_runner):
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    result = cli_runner(
        "run-pipeline", "--runner", "DataflowRunner", "--project", "my-project", "--region", "europe-west1",
        "--temp-location", "gs://my-bucket/tmp", "--output-root", "gs://my-bucket/output", "--dry-run", "--no_auth",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "dry run" in result.output and "transforms translated" in result.output


def test_dataflow_without_a_temp_location_names_the_flag(no_stack, capsys):
    from workbench.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["run-pipeline", "--runner", "DataflowRunner", "--project", "my-project", "--region", "europe-west1"])
    assert exited.value.code == 2
    said = one_line(capsys.readouterr().err)
    assert "Dataflow needs --temp-location gs://BUCKET/tmp" in said, said  # the flag as this command spells it
    assert "pass a gs:// folder in a bucket the job's service account can write" in said, said
