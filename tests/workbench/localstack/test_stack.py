"""`workbench up/down/status/env` against real emulator processes on free loopback ports."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import time

import pytest

from eventmodel import resources as names
from workbench.cli import cli
from workbench.errors import WorkbenchError
from workbench.localstack import processes, stack
from workbench.localstack.ports import free_port, port_in_use

pytestmark = pytest.mark.integration


def config(**overrides) -> stack.StackConfig:
    ports = {"pubsub_port": free_port(), "bigquery_port": free_port(), "gcs_port": free_port()}
    return stack.StackConfig(**{**ports, **overrides})


def pids() -> dict[str, int]:
    return {name: entry["pid"] for name, entry in stack.read_state()["services"].items()}


def test_up_starts_everything_creates_resources_and_is_idempotent(home, monkeypatch):
    cfg = config(with_gcs=True)
    stack.up(cfg)
    first = pids()
    assert set(first) == {"pubsub", "bigquery", "gcs"}
    assert all(row["state"] == "running" for row in stack.status())

    exports = stack.env_exports()
    assert exports["PUBSUB_EMULATOR_HOST"] == f"127.0.0.1:{cfg.pubsub_port}"
    assert exports["BIGQUERY_EMULATOR_HOST"] == f"http://127.0.0.1:{cfg.bigquery_port}"
    assert exports["STORAGE_EMULATOR_HOST"] == f"http://127.0.0.1:{cfg.gcs_port}"

    from google.cloud import pubsub_v1

    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", exports["PUBSUB_EMULATOR_HOST"])
    subscriber = pubsub_v1.SubscriberClient()
    sub = subscriber.get_subscription(subscription=f"projects/{cfg.project}/subscriptions/{names.SUBSCRIPTION}")
    assert sub.topic.endswith(f"/topics/{names.TOPIC}")
    # No Pub/Sub dead-letter policy: Dataflow supports none on the subscription it reads (the pipeline dead-letters).
    assert not sub.dead_letter_policy.dead_letter_topic
    assert sub.ack_deadline_seconds == stack.ACK_DEADLINE_S
    subscriber.get_subscription(subscription=f"projects/{cfg.project}/subscriptions/{names.DEAD_LETTER_SUBSCRIPTION}")
    subscriber.close()

    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    client = bigquery.Client(
        project=cfg.project,
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": exports["BIGQUERY_EMULATOR_HOST"]},
    )
    tables = {t.table_id for t in client.list_tables(f"{cfg.project}.{names.DATASET}")}
    assert {"orders", "inventory", "user_activity", "dead_letters"} <= tables

    stack.up(cfg)  # again: nothing restarts, nothing fails on existing resources
    assert pids() == first

    stopped = stack.down()
    assert sorted(stopped) == ["bigquery", "gcs", "pubsub"]
    assert all(processes.command_line(pid) is None for pid in first.values())
    assert stack.env_exports() == {}


def test_a_dead_service_is_restarted_by_up(home):
    cfg = config(with_bigquery=False)
    stack.up(cfg)
    old = pids()["pubsub"]
    os.killpg(old, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while (processes.alive(old) or port_in_use("127.0.0.1", cfg.pubsub_port)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stack.status()[0]["state"] == "stopped"
    stack.up(cfg)
    assert pids()["pubsub"] != old
    assert stack.status()[0]["state"] == "running"


def test_the_pubsub_admin_service_is_off_unless_the_stack_asks_for_it(home):
    """Fault injection is for the chaos demo and fault tests: `workbench up` alone serves no admin service;
    StackConfig(pubsub_admin=True) (`workbench up --pubsub-admin`) restarts the emulator with it."""
    from emulator.pubsub.admin import AdminClient
    from emulator.pubsub.errors import EmulatorError

    cfg = config(with_bigquery=False)
    stack.up(cfg)
    target = stack.env_exports()["PUBSUB_EMULATOR_HOST"]
    with AdminClient(target) as admin, pytest.raises(EmulatorError, match="admin service"):
        admin.faults()
    stack.up(dataclasses.replace(cfg, pubsub_admin=True))
    with AdminClient(target) as admin:
        assert admin.set_faults(duplicate_rate=0.5)["global"]["duplicate_rate"] == 0.5
    assert "--admin" in stack.read_state()["services"]["pubsub"]["argv"]


def test_up_never_restarts_a_pubsub_emulator_that_would_lose_messages_without_consent(home):
    """`up` with other settings restarts a running service; a Pub/Sub emulator in memory that holds messages is
    refused instead (they would be gone), until the user says --restart."""
    from pubsub_support import publish_one

    cfg = config(with_bigquery=False)
    stack.up(cfg)
    first = pids()["pubsub"]
    target = stack.env_exports()["PUBSUB_EMULATOR_HOST"]
    publish_one(target, f"projects/{cfg.project}/topics/{names.TOPIC}")
    with pytest.raises(WorkbenchError) as refused:
        stack.up(dataclasses.replace(cfg, pubsub_admin=True))
    assert "1 messages were published to it" in refused.value.message
    assert "--restart" in refused.value.fix
    assert pids()["pubsub"] == first  # untouched
    stack.up(dataclasses.replace(cfg, pubsub_admin=True), restart=True)
    assert pids()["pubsub"] != first and "--admin" in stack.read_state()["services"]["pubsub"]["argv"]


def test_a_port_in_use_is_a_clear_error(home):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        with pytest.raises(WorkbenchError) as raised:
            stack.up(config(with_bigquery=False, pubsub_port=port))
    assert f"port {port}" in raised.value.message
    assert f"pid {os.getpid()}" in raised.value.message  # who holds it
    assert "workbench up --pubsub-port N" in raised.value.fix


def test_a_port_held_by_the_stack_of_another_home_names_that_home(home, tmp_path, monkeypatch):
    """From another folder (another ./.workbench), the port belongs to the workbench's own stack: say whose, how
    to stop it, and in the caller's words (the demo's option, not up's)."""
    other = tmp_path / "other-checkout" / ".workbench"
    monkeypatch.setenv("WORKBENCH_HOME", str(other))
    cfg = config(with_bigquery=False)
    stack.up(cfg)
    try:
        monkeypatch.setenv("WORKBENCH_HOME", str(home / "mine"))
        with pytest.raises(WorkbenchError) as raised:
            stack.up(cfg, port_option="workbench demo --{}-port N")
    finally:
        monkeypatch.setenv("WORKBENCH_HOME", str(other))
        stack.down()
    assert f"held by the workbench stack of another home, {other}" in raised.value.message
    assert f"WORKBENCH_HOME={other} workbench down" in raised.value.fix
    assert "workbench demo --pubsub-port N" in raised.value.fix


def test_down_never_signals_a_process_it_did_not_start(home):
    import subprocess
    import sys

    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        state = {
            "services": {
                "pubsub": {
                    "pid": stranger.pid,
                    "argv": ["python", "-m", "emulator.pubsub"],
                    "host": "127.0.0.1",
                    "port": 1,
                    "exports": {},
                    "log": "",
                    "started_at": "",
                }
            }
        }
        stack._write_state(state)
        assert stack.down() == []
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_cli_env_prints_exports_and_status_shows_the_table(home, cli_runner):
    cfg = config(with_bigquery=False)
    runner = cli_runner
    result = runner.invoke(cli, ["up", "--no-bigquery", "--pubsub-port", str(cfg.pubsub_port)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["env"])
    assert f"export PUBSUB_EMULATOR_HOST=127.0.0.1:{cfg.pubsub_port}" in result.output
    assert f"export PUBSUB_PROJECT_ID={names.DEFAULT_PROJECT}" in result.output
    result = runner.invoke(cli, ["status"])
    assert "pubsub" in result.output and "running" in result.output
    result = runner.invoke(cli, ["down"])
    assert result.exit_code == 0
    assert stack.env_exports() == {}


def _rows(cfg: stack.StackConfig) -> list[str]:
    from endpoints.bigquery import bigquery_client

    client = bigquery_client(cfg.project, f"127.0.0.1:{cfg.bigquery_port}", "US")
    return [r["event_id"] for r in client.query(f"SELECT event_id FROM `{cfg.project}.events.dead_letters`").result()]


def _insert(cfg: stack.StackConfig, event_id: str) -> None:
    from endpoints.bigquery import bigquery_client
    from eventmodel import rows

    client = bigquery_client(cfg.project, f"127.0.0.1:{cfg.bigquery_port}", "US")
    row = rows.dead_letter_row(b"x", reason="NOT_JSON", detail="d", stage="validate", message_id=event_id,
                               publish_time=None, attributes={"event_id": event_id})  # fmt: skip
    assert not client.insert_rows_json(f"{cfg.project}.events.dead_letters", [row])


def _kill(name: str, port: int) -> None:
    pid = pids()[name]
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while (processes.alive(pid) or port_in_use("127.0.0.1", port)) and time.monotonic() < deadline:
        time.sleep(0.05)


def test_bigquery_keeps_its_rows_across_a_crash_and_down_up_until_reset(home):
    cfg = config()
    stack.up(cfg)
    _insert(cfg, "before-crash")
    _kill("bigquery", cfg.bigquery_port)  # kill -9: no chance to flush anything
    stack.up(cfg)
    assert _rows(cfg) == ["before-crash"]
    _insert(cfg, "before-down")
    stack.down()
    stack.up(cfg)
    assert sorted(_rows(cfg)) == ["before-crash", "before-down"]
    stack.down(reset=True)
    stack.up(cfg)
    assert _rows(cfg) == []  # reset: the next up starts empty (the DDL applied again)


def test_bigquery_in_memory_loses_its_rows_with_the_process(home):
    cfg = config(bigquery_persistent=False, with_gcs=False)
    stack.up(cfg)
    _insert(cfg, "gone")
    stack.down()
    stack.up(cfg)
    assert _rows(cfg) == []
