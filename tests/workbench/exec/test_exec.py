"""`workbench exec` as a user runs it: `workbench up`, then their own stock-Beam pipeline (stock_pipeline.py beside
this file: no import of the workbench) through `python -m workbench.cli exec -- python stock_pipeline.py ...`,
reading the stack's `backend-events-topic-sub` and writing BigQuery and files with Beam's own IO.

One stack (Pub/Sub, BigQuery and GCS emulators, free ports, a WORKBENCH_HOME of its own) serves the module; each
test publishes its own keys and drains what it publishes, so the subscription is empty between tests (checked
through the emulator's Stats service). Slow: every exec starts Beam.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from emulator.pubsub.admin import AdminClient
from endpoints.bigquery import bigquery_client
from endpoints.pubsub import publisher_client
from eventmodel import resources as names
from workbench.localstack.ports import free_port, free_port_pair

PIPELINE = Path(__file__).with_name("stock_pipeline.py")
READER = Path(__file__).with_name("stock_bigquery_read.py")
PROJECT = names.DEFAULT_PROJECT
SUBSCRIPTION = f"projects/{PROJECT}/subscriptions/{names.SUBSCRIPTION}"
CLIENT_ENV = ("PUBSUB_EMULATOR_HOST", "PUBSUB_PROJECT_ID", "GOOGLE_CLOUD_PROJECT", "BIGQUERY_EMULATOR_HOST",
              "STORAGE_EMULATOR_HOST", "WORKBENCH_HOME", "PYTHONPATH")  # fmt: skip
EXEC_TIMEOUT_S = 240


@dataclass
class Stack:
    home: Path
    exports: dict[str, str]

    @property
    def pubsub(self) -> str:
        return self.exports["PUBSUB_EMULATOR_HOST"]

    @property
    def bigquery(self) -> str:
        return self.exports["BIGQUERY_EMULATOR_HOST"]

    @property
    def storage(self) -> str:
        return self.exports["STORAGE_EMULATOR_HOST"]


def user_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLIENT_ENV}
    return {**env, "WORKBENCH_HOME": str(home), "NO_GCE_CHECK": "true", "COLUMNS": "200"}


def workbench(home: Path, cwd: Path, *args: str, timeout: float = EXEC_TIMEOUT_S) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "workbench.cli", *args]
    done = subprocess.run(argv, cwd=cwd, env=user_env(home), capture_output=True, text=True, timeout=timeout)
    done.text = done.stdout + done.stderr  # type: ignore[attr-defined]
    return done


def exec_pipeline(stack: Stack, cwd: Path, exec_args: list[str], pipeline_args: list[str], script: Path = PIPELINE):
    """`workbench exec [exec_args] -- python stock_pipeline.py [pipeline_args] --streaming ...`, as a user types it."""
    command = [sys.executable, str(script), *pipeline_args]
    return workbench(stack.home, cwd, "exec", *exec_args, "--", *command)


def pipeline_args(table: str, output: str, *extra: str, method: str = "STREAMING_INSERTS") -> list[str]:
    target = f"{PROJECT}:{names.DATASET}.{table}"
    return ["--subscription", SUBSCRIPTION, "--table", target, "--method", method, "--output_dir", output,
            "--streaming", "--runner", "DirectRunner", "--project", PROJECT, *extra]  # fmt: skip


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Stack:
    home = tmp_path_factory.mktemp("exec-home")
    ports = ["--pubsub-port", str(free_port_pair()), "--bigquery-port", str(free_port_pair()),
             "--gcs", "--gcs-port", str(free_port())]  # fmt: skip
    try:
        up = workbench(home, home, "up", *ports, timeout=180)
        assert up.returncode == 0, up.text[-3000:]
        shown = workbench(home, home, "env", timeout=60)
        exports = dict(line.removeprefix("export ").split("=", 1) for line in shown.stdout.split("\n") if "=" in line)
        yield Stack(home, exports)
    finally:
        workbench(home, home, "down", "--reset", timeout=120)


def publish(stack: Stack, prefix: str, count: int, attributes=lambda i: {}) -> set[str]:
    """`count` JSON messages {key, n} on the stack's topic, with attributes(n); returns their keys."""
    client = publisher_client(stack.pubsub)
    topic = client.topic_path(PROJECT, names.TOPIC)
    keys = [f"{prefix}-{i}" for i in range(count)]
    futures = [client.publish(topic, json.dumps({"key": key, "n": i}).encode(), **attributes(i))
               for i, key in enumerate(keys)]  # fmt: skip
    for future in futures:
        future.result(timeout=30)
    client.transport.close()
    return set(keys)


def table_keys(stack: Stack, table: str) -> list[str]:
    client = bigquery_client(PROJECT, stack.bigquery, "US")
    try:
        query = f"SELECT key FROM `{PROJECT}.{names.DATASET}.{table}`"
        return [row.key for row in client.query(query, location="US").result()]
    finally:
        client.close()


def local_file_keys(folder: Path) -> list[str]:
    return [
        json.loads(line)["key"] for path in sorted(folder.glob("*.jsonl")) for line in path.read_text().splitlines()
    ]


def subscription_counts(stack: Stack) -> dict:
    with AdminClient(stack.pubsub, timeout=10) as admin:
        return admin.stats()["subscriptions"][SUBSCRIPTION]


def read_summary(text: str) -> str:
    return next(line for line in text.splitlines() if line.startswith("workbench exec: read "))


@pytest.mark.integration
@pytest.mark.slow
def test_streaming_inserts_rows_and_files_land_and_the_run_ends_when_idle(stack, tmp_path):
    keys = publish(stack, "streaming", 300)
    started = time.monotonic()
    done = exec_pipeline(stack, tmp_path, ["--stop-when-idle", "3s"], pipeline_args("exec_streaming", "files"))
    assert done.returncode == 0, done.text[-3000:]
    assert time.monotonic() - started < 120  # it ended by itself, well before the timeout
    assert "read 300 messages (no message for 3 s); 300 acknowledged" in read_summary(done.text)
    assert sorted(table_keys(stack, "exec_streaming")) == sorted(keys)
    assert sorted(local_file_keys(tmp_path / "files")) == sorted(keys)
    assert subscription_counts(stack)["backlog"] == 0


@pytest.mark.integration
@pytest.mark.slow
def test_file_loads_through_a_local_temp_folder(stack, tmp_path):
    """FILE_LOADS with a relative local --temp_location: Beam insists on gs://, the redirect takes the folder (made
    absolute, since the emulator runs elsewhere) and the emulator's load job reads the files from there."""
    keys = publish(stack, "loads", 200)
    args = pipeline_args("exec_file_loads", "files", "--temp_location", "tmp", method="FILE_LOADS")
    done = exec_pipeline(stack, tmp_path, ["--stop-when-idle", "3s"], args)
    assert done.returncode == 0, done.text[-3000:]
    assert sorted(table_keys(stack, "exec_file_loads")) == sorted(keys)
    assert list((tmp_path / "tmp" / "bq_load").rglob("*")), "the load files went somewhere else"
    assert subscription_counts(stack)["backlog"] == 0


@pytest.mark.integration
@pytest.mark.slow
def test_file_loads_and_files_on_the_gcs_emulator(stack, tmp_path):
    """gs:// everywhere: Beam's file write and FILE_LOADS' temp files go to the GCS emulator; the load job's files
    are handed to the BigQuery emulator (which reads gs:// only from a folder of its own) as local copies."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    keys = publish(stack, "gcs", 150)
    bucket = "gs://workbench-local"
    args = pipeline_args("exec_gcs_loads", f"{bucket}/exec-files", "--temp_location", f"{bucket}/tmp",
                         method="FILE_LOADS")  # fmt: skip
    done = exec_pipeline(stack, tmp_path, ["--stop-when-idle", "3s"], args)
    assert done.returncode == 0, done.text[-3000:]
    assert sorted(table_keys(stack, "exec_gcs_loads")) == sorted(keys)
    client = storage.Client(PROJECT, AnonymousCredentials(), client_options={"api_endpoint": stack.storage})
    blobs = [b for b in client.list_blobs("workbench-local", prefix="exec-files/") if b.name.endswith(".jsonl")]
    lines = [json.loads(line)["key"] for blob in blobs for line in blob.download_as_text().splitlines()]
    assert sorted(lines) == sorted(keys)


@pytest.mark.integration
@pytest.mark.slow
def test_a_backlog_older_than_its_event_time_windows_is_kept_whole(stack, tmp_path):
    """3,000 messages, three pulls, all published before the run and older than their 5 s windows by the time it
    reads them. With the wall clock as the read's watermark (Beam's own reader) the second and third pulls are late
    for their windows and dropped; the local reader's watermark follows the backlog's publish times."""
    keys = publish(stack, "backlog", 3000)
    time.sleep(6)  # every window of the backlog has ended by the wall clock
    args = pipeline_args("exec_backlog", "files", "--temp_location", "tmp", method="FILE_LOADS")
    done = exec_pipeline(stack, tmp_path, ["--stop-when-idle", "3s"], args)
    assert done.returncode == 0, done.text[-3000:]
    assert "read 3,000 messages" in read_summary(done.text)
    assert sorted(local_file_keys(tmp_path / "files")) == sorted(keys)
    assert sorted(table_keys(stack, "exec_backlog")) == sorted(keys)


@pytest.mark.integration
@pytest.mark.slow
def test_event_times_come_from_the_timestamp_attribute_as_with_beams_reader(stack, tmp_path):
    """ReadFromPubSub(timestamp_attribute="ts"): milliseconds or RFC 3339, as Beam's reader reads them. The events
    are from 2025-01-01 (two in each 5 s window): the files are placed in those windows, none is dropped as late."""
    start = 1735689600000  # 2025-01-01T00:00:00Z in ms

    def ts(i: int) -> dict[str, str]:
        millis = start + i * 2500
        return {"ts": str(millis) if i % 2 else f"2025-01-01T00:{millis // 60000 % 60:02d}:{millis // 1000 % 60:02d}Z"}

    keys = publish(stack, "eventtime", 40, ts)
    args = pipeline_args("exec_event_time", "files", "--timestamp_attribute", "ts")
    done = exec_pipeline(stack, tmp_path, ["--stop-when-idle", "3s"], args)
    assert done.returncode == 0, done.text[-3000:]
    assert sorted(local_file_keys(tmp_path / "files")) == sorted(keys)
    starts = {path.name[len("rows-") :][:19] for path in (tmp_path / "files").glob("*.jsonl")}  # window starts
    assert len(starts) == 20 and all(start.startswith("2025-01-01T00:0") for start in starts), starts


@pytest.mark.integration
@pytest.mark.slow
def test_one_run_reads_at_most_max_unacked_and_the_next_run_reads_the_rest(stack, tmp_path):
    keys = publish(stack, "bounded", 1200)
    args = pipeline_args("exec_bounded", "files", "--temp_location", "tmp", method="FILE_LOADS")
    first = exec_pipeline(stack, tmp_path, ["--stop-when-idle", "3s", "--max-unacked", "700"], args)
    assert first.returncode == 0, first.text[-3000:]
    assert "read 700 messages (reached --max-unacked" in read_summary(first.text)  # a pull is cut to fit, too
    assert "700 acknowledged" in read_summary(first.text)
    second = exec_pipeline(stack, tmp_path, ["--stop-when-idle", "3s", "--max-unacked", "700"], args)
    assert second.returncode == 0, second.text[-3000:]
    assert "read 500 messages (no message for 3 s); 500 acknowledged" in read_summary(second.text)
    assert sorted(table_keys(stack, "exec_bounded")) == sorted(keys)


@pytest.mark.integration
@pytest.mark.slow
def test_a_first_sigint_drains_buffered_files_and_acknowledges_everything(stack, tmp_path):
    """The files' window (an hour) cannot close while the test runs: they are written only because the stop drains
    the pipeline (the watermark goes to the end of time and every window fires)."""
    keys = publish(stack, "drain", 200)
    command = [sys.executable, "-m", "workbench.cli", "exec", "--no-idle-stop", "--", sys.executable, str(PIPELINE),
               *pipeline_args("exec_drain", "files", "--file_window_seconds", "3600")]  # fmt: skip
    process = subprocess.Popen(command, cwd=tmp_path, env=user_env(stack.home), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while len(set(_keys_or_none(stack, "exec_drain"))) < len(keys) and time.monotonic() < deadline:
            assert process.poll() is None, process.stdout.read()[-3000:]
            time.sleep(1)
        assert set(_keys_or_none(stack, "exec_drain")) == keys, "the rows never arrived"
        assert not local_file_keys(tmp_path / "files"), "the files' window closed before the stop: no drain to prove"
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output[-3000:]
    assert "SIGINT: draining" in output
    assert "read 200 messages (interrupted (SIGINT)); 200 acknowledged" in read_summary(output)
    assert sorted(local_file_keys(tmp_path / "files")) == sorted(keys)
    assert subscription_counts(stack)["backlog"] == 0


def _keys_or_none(stack: Stack, table: str) -> list[str]:
    try:
        return table_keys(stack, table)
    except Exception:  # the table does not exist before the first insert
        return []


@pytest.mark.integration
@pytest.mark.slow
def test_read_from_bigquery_direct_read_and_every_dataset_survives_it(stack, tmp_path):
    """ReadFromBigQuery(DIRECT_READ) reads through the emulator's Storage Read service; its cleanup step deletes
    every dataset a label-filtered list returns, and the bare emulator ignores the filter (it lost them all)."""
    client = bigquery_client(PROJECT, stack.bigquery, "US")
    try:
        client.query(f"CREATE TABLE `{PROJECT}.{names.DATASET}.exec_source` AS SELECT 'a' AS key UNION ALL SELECT 'b'",
                     location="US").result()  # fmt: skip
        datasets_before = sorted(d.dataset_id for d in client.list_datasets())
        done = workbench(stack.home, tmp_path, "exec", "--", sys.executable, str(READER),
                         f"{PROJECT}:{names.DATASET}.exec_source", str(tmp_path / "read"), "--project", PROJECT,
                         "--runner", "DirectRunner")  # fmt: skip
        assert done.returncode == 0, done.text[-3000:]
        read = sorted(line for path in tmp_path.glob("read*") for line in path.read_text().splitlines())
        assert read == ["a", "b"]
        assert sorted(d.dataset_id for d in client.list_datasets()) == datasets_before
    finally:
        client.close()


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--method", "STORAGE_WRITE_API"], "WriteToBigQuery(method=STORAGE_WRITE_API) needs Java"),
        (["--runner", "DataflowRunner", "--region", "europe-west1"], "--runner DataflowRunner submits the job"),
    ],
)
def test_what_cannot_run_locally_is_refused_with_what_to_do_instead(stack, tmp_path, extra, expected):
    done = exec_pipeline(stack, tmp_path, [], [*pipeline_args("exec_refused", "files"), *extra])
    assert done.returncode == 2, done.text[-3000:]
    refusal = [line for line in done.stderr.splitlines() if line.startswith("workbench exec: ")]
    assert len(refusal) == 1 and expected in refusal[0], done.text[-3000:]
    assert "Traceback" not in done.text


@pytest.mark.integration
@pytest.mark.slow
def test_a_users_own_module_named_pipeline_keeps_its_name(stack, tmp_path):
    """The workbench's reader imports the workbench's `pipeline` package; a user's pipeline.py (first on sys.path)
    must neither be imported in its place nor be replaced by it."""
    script = tmp_path / "pipeline.py"
    shutil.copy(PIPELINE, script)
    (tmp_path / "run_mine.py").write_text("import sys\nimport pipeline\n\npipeline.run(sys.argv[1:])\n")
    keys = publish(stack, "named", 50)
    done = exec_pipeline(stack, tmp_path, ["--stop-when-idle", "3s"], pipeline_args("exec_named", "files"),
                         script=tmp_path / "run_mine.py")  # fmt: skip
    assert done.returncode == 0, done.text[-3000:]
    assert sorted(table_keys(stack, "exec_named")) == sorted(keys)


def test_exec_without_a_stack_refuses_with_the_fix(tmp_path):
    done = workbench(tmp_path / "no-stack-home", tmp_path, "exec", "--", sys.executable, "-c", "print('ran')",
                     timeout=60)  # fmt: skip
    assert done.returncode == 2, done.text
    assert "no local stack is running" in done.text and "workbench up" in done.text
    assert "ran" not in done.stdout
