"""`workbench backfill` on the real local stack: moto's S3 server, the BigQuery emulator, the Pub/Sub emulator.

A history with every input shape (JSON lines, arrays, an object per event, gzip or not, many small objects and
a few large ones, the types mixed) and malformed records is seeded by `workbench publish --history`, backfilled,
and reconciled; a second backfill adds nothing. Objects that are not JSON at all, laid out by hand, or that the
reader may not read, each get their own outcome, and a missing bucket is refused before anything runs.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pytest
from stack_support import LocalStack

from eventmodel import reasons as R
from eventmodel import resources as names
from eventmodel import rows
from workbench.cli import cli

pytestmark = pytest.mark.integration


def every_partition(table: str) -> str:
    """A condition that keeps every row and names the partitioning column of a table that requires it
    (user_activity): BigQuery refuses a read without one, and so does the suite's strict mode."""
    from ddl.model import partition_rules

    column = partition_rules().get(table)
    return f" AND {column} >= TIMESTAMP '1970-01-01'" if column else ""


class Stack:
    """The module's LocalStack (tests/conftest.py's `make_stack`, with an S3 bucket) and the history seeded in it."""

    def __init__(self, resources: LocalStack, runner) -> None:
        self.project, self.home, self.output, self.bucket = (
            resources.project, resources.home, resources.output, resources.bucket)  # fmt: skip
        self.pubsub, self.bigquery, self.s3 = (
            resources.pubsub_emulator, resources.bigquery_emulator, resources.s3_emulator)  # fmt: skip
        self.client = resources.bigquery_client()
        self.runner = runner

    def flags(self, output: Path | None = None) -> list[str]:
        return ["--project", self.project, "--output-root", str(output or self.output),
                "--bigquery-emulator", self.bigquery.endpoint, "--emulator", self.pubsub.target]  # fmt: skip

    def backfill(self, uri: str, *extra: str, output: Path | None = None) -> tuple[int, str]:
        result = self.runner("backfill", uri, *self.flags(output), *extra)
        return result.exit_code, result.output

    def reconcile(self, run_id: str, output: Path | None = None) -> tuple[int, str]:
        result = self.runner.invoke(
            cli, ["reconcile", run_id, "--project", self.project, "--output-root", str(output or self.output)]
        )
        return result.exit_code, result.output

    def count(self, table: str, where: str = "TRUE") -> int:
        table_path = f"`{self.project}.{names.DATASET}.{table}`"
        sql = f"SELECT COUNT(*) AS n FROM {table_path} WHERE ({where}){every_partition(table)}"
        return next(iter(self.client.query(sql).result()))["n"]

    def letters(self, where: str) -> list[dict]:
        sql = (f"SELECT reason, stage, payload, event_id, TO_JSON_STRING(attributes) AS attributes "
               f"FROM `{self.project}.{names.DATASET}.dead_letters` WHERE {where}")  # fmt: skip
        return [dict(r.items()) for r in self.client.query(sql).result()]


@pytest.fixture(scope="module")
def stack(make_stack, request, cli_runner):
    it = Stack(make_stack(request, "backfill-it", s3=True), cli_runner)
    seeded = cli_runner(
        "publish", "--history", "2025-01-01..2025-03-01", "--count", "1500", "--malformed-rate", "0.06",
        "--duplicate-rate", "0.03", "--seed", "11", "--to", f"s3://{it.bucket}/exports", "--format", "mixed",
        "--compression", "mixed", "--objects", "24")  # fmt: skip
    assert seeded.exit_code == 0, seeded.output
    it.run_id = sorted((it.home / "runs").iterdir())[-1].name
    return it


def _objects_file(stack: Stack) -> list[dict]:
    import csv

    with (stack.home / "runs" / stack.run_id / "objects-0.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_the_seeded_history_has_every_input_shape(stack):
    objects = _objects_file(stack)
    formats = {o["format"] for o in objects}
    assert formats == {"ndjson", "array", "per-event"}
    assert {o["gzip"] for o in objects} == {"1", ""}
    sizes = sorted(int(o["records"]) for o in objects)
    assert sizes[0] <= 5 and sizes[-1] >= 100, f"many small objects and some large ones: {sizes}"


@pytest.fixture(scope="module")
def backfilled(stack) -> str:
    """The seeded history backfilled once (per test process: xdist may spread this module's tests)."""
    code, output = stack.backfill(f"s3://{stack.bucket}/exports")
    assert code == 0, output
    return output


def test_a_backfill_reconciles_and_a_second_one_changes_nothing(stack, backfilled):
    assert "backfill done" in backfilled
    code, output = stack.reconcile(stack.run_id)
    assert code == 0, output
    where = f"run_id = '{stack.run_id}'"
    before = {t: stack.count(t, where) for t in (*rows.TABLES.values(), rows.DEAD_LETTER_TABLE)}
    files = sorted(p.relative_to(stack.output) for p in stack.output.rglob("*.json"))
    assert sum(before.values()) > 1000 and before[rows.DEAD_LETTER_TABLE] > 20

    code, output = stack.backfill(f"s3://{stack.bucket}/exports")
    assert code == 0, output
    assert "already in BigQuery" in output and "dead letters already recorded" in output
    assert {t: stack.count(t, where) for t in before} == before, "a rerun adds no row"
    assert sorted(p.relative_to(stack.output) for p in stack.output.rglob("*.json")) == files, "nor a file"
    code, output = stack.reconcile(stack.run_id)
    assert code == 0, output


def test_rows_deleted_after_a_backfill_are_loaded_again_by_the_next_one(stack, backfilled):
    """An erasure or the undo run-book deletes a backfill's rows; the same backfill again must load them again.
    Its load jobs have ids of their own: the first run's, which BigQuery would refuse as duplicates (409, and the
    old job's success would stand for rows that are gone), are never met."""
    table, where = rows.TABLES["order"], f"run_id = '{stack.run_id}'"
    loaded = stack.count(table, where)
    assert loaded > 100
    stack.client.query(f"DELETE FROM `{stack.project}.{names.DATASET}.{table}` WHERE {where}").result()
    assert stack.count(table, where) == 0
    code, output = stack.backfill(f"s3://{stack.bucket}/exports")
    assert code == 0, output
    assert stack.count(table, where) == loaded
    code, output = stack.reconcile(stack.run_id)
    assert code == 0, output


def test_a_history_run_with_a_name_of_its_own_is_found_by_its_objects_metadata(stack, tmp_path):
    """`publish --run-id` may be any name: the backfill reads the run from x-amz-meta-workbench-run-id."""
    seeded = stack.runner(
        "publish", "--history", "2024-06-01..2024-06-03", "--count", "120", "--malformed-rate", "0.05",
        "--seed", "4", "--run-id", "june-history", "--to", f"s3://{stack.bucket}/named", "--objects", "3")  # fmt: skip
    assert seeded.exit_code == 0, seeded.output
    code, output = stack.backfill(f"s3://{stack.bucket}/named", output=tmp_path / "out")
    assert code == 0, output
    code, output = stack.reconcile("june-history", output=tmp_path / "out")
    assert code == 0, output


def test_more_objects_than_one_listing_page_are_all_read(stack, tmp_path):
    """S3 lists at most 1,000 keys a page: an object per event, 1,100 of them, all come back (and reconcile)."""
    seeded = stack.runner(
        "publish", "--history", "2024-03-01..2024-03-02", "--count", "1100", "--seed", "9", "--to",
        f"s3://{stack.bucket}/one-each", "--format", "per-event", "--objects", "1100")  # fmt: skip
    assert seeded.exit_code == 0, seeded.output
    run_id = sorted((stack.home / "runs").iterdir(), key=lambda p: p.stat().st_mtime)[-1].name
    output = tmp_path / "out"
    code, printed = stack.backfill(f"s3://{stack.bucket}/one-each", output=output)
    assert code == 0, printed
    assert sum(p.read_bytes().count(b"\n") for p in output.rglob("*.json")) == 1100
    code, printed = stack.reconcile(run_id, output=output)
    assert code == 0, printed


def test_reconcile_catches_a_backfill_that_lost_an_event(stack, backfilled, tmp_path):
    broken = tmp_path / "out"
    shutil.copytree(stack.output, broken)
    victim = next(p for p in sorted(broken.rglob("*.json")) if p.read_bytes().count(b"\n") == 1)
    lost = orjson.loads(victim.read_bytes())["event_id"]
    victim.unlink()
    code, output = stack.reconcile(stack.run_id, output=broken)
    assert code == 1, output
    assert lost[:12] in output


def test_a_second_backfill_completes_a_sink_the_first_left_short(stack, backfilled, tmp_path):
    """Files lost after a backfill (a bucket cleaned by mistake): the rerun writes only the missing files and
    leaves BigQuery alone, because each sink is deduplicated on its own."""
    partial = tmp_path / "out"
    shutil.copytree(stack.output, partial)
    gone = sorted(partial.glob("order/*/*/*"))[0]  # one day's order folder
    lost = sum(p.read_bytes().count(b"\n") for p in gone.rglob("*.json"))
    shutil.rmtree(gone)
    rows_before = stack.count(rows.TABLES["order"], f"run_id = '{stack.run_id}'")
    code, output = stack.backfill(f"s3://{stack.bucket}/exports", output=partial)
    assert code == 0, output
    assert sum(p.read_bytes().count(b"\n") for p in gone.rglob("*.json")) == lost
    assert stack.count(rows.TABLES["order"], f"run_id = '{stack.run_id}'") == rows_before
    code, output = stack.reconcile(stack.run_id, output=partial)
    assert code == 0, output


def test_objects_that_are_odd_or_unreadable_each_get_their_outcome(stack, tmp_path):
    from workbench.localstack.s3_permissions import s3_reads_denied

    client = stack.s3.s3_client()
    prefix = f"odd-{uuid.uuid4().hex[:6]}"
    event = orjson.loads(_one_valid_event())
    pretty = orjson.dumps([event], option=orjson.OPT_INDENT_2)
    client.put_object(Bucket=stack.bucket, Key=f"{prefix}/not-json.json", Body=b"\x00\x01 this is no JSON")
    client.put_object(Bucket=stack.bucket, Key=f"{prefix}/pretty.json", Body=pretty)
    client.put_object(Bucket=stack.bucket, Key=f"{prefix}/secret.jsonl", Body=_one_valid_event(2) + b"\n")
    denied = s3_reads_denied(stack.s3.endpoint, stack.bucket, f"{prefix}/secret.jsonl")
    with denied as reader, pytest.MonkeyPatch.context() as env:
        for name, value in reader.exports.items():
            env.setenv(name, value)
        code, output = stack.backfill(f"s3://{stack.bucket}/{prefix}", output=tmp_path / "out")
    assert code == 1, output
    assert "1 objects could not be read" in output and "run the same backfill again" in output
    base = f"s3://{stack.bucket}/{prefix}"
    letters = {r["event_id"]: r for r in stack.letters(f"STARTS_WITH(event_id, '{base}/')")}
    not_json = letters[f"{base}/not-json.json#0"]
    assert (not_json["reason"], bytes(not_json["payload"])) == (R.NOT_JSON, b"\x00\x01 this is no JSON")
    assert orjson.loads(not_json["attributes"])[names.ATTR_SOURCE_OBJECT] == f"{base}/not-json.json"
    unreadable = letters[f"{base}/secret.jsonl#unreadable"]
    assert unreadable["reason"] == R.SOURCE_UNREADABLE and unreadable["stage"] == "read"
    # The pretty-printed array's event was backfilled, under the backfill's own run id (no run folder in its key).
    assert len(list((tmp_path / "out").rglob("*.json"))) == 1


def _one_valid_event(n: int = 1) -> bytes:
    from generator.stream import DEAD_LETTER, EventStream, GeneratorConfig

    stream = EventStream(GeneratorConfig(seed=5), run_id="odd")
    return [m.data for m in stream.take(20) if m.expected != DEAD_LETTER][n - 1]


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True, env=env,
                          timeout=120)  # fmt: skip


def test_a_missing_bucket_or_an_empty_prefix_is_refused_before_anything_runs(stack, tmp_path):
    import os

    env = {**os.environ, **stack.s3.exports, "WORKBENCH_HOME": str(tmp_path)}
    flags = ["--project", stack.project, "--output-root", str(tmp_path / "out"), "--bigquery-emulator",
             stack.bigquery.endpoint, "--emulator", stack.pubsub.target]  # fmt: skip
    done = _cli("backfill", "s3://no-such-bucket-here/x", *flags, env=env)
    assert done.returncode == 2, done.stderr
    assert "does not exist" in done.stderr and "aws s3 mb s3://no-such-bucket-here" in done.stderr
    done = _cli("backfill", f"s3://{stack.bucket}/nothing-here", *flags, env=env)
    assert done.returncode == 2, done.stderr
    assert "nothing under" in done.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.json"))


def test_dataflow_dry_run_translates_the_backfill_offline(home, cli_runner):
    result = cli_runner.invoke(cli, [
        "backfill", "s3://history/exports", "--runner", "DataflowRunner", "--project", "my-project",
        "--region", "europe-west1", "--temp-location", "gs://my-bucket/tmp",
        "--output-root", "gs://my-bucket/output",
        "--aws-credentials-secret", "projects/my-project/secrets/aws/versions/1",
        "--dry-run", "--no_auth"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "dry run" in result.output and "transforms translated" in result.output


def test_dataflow_dry_run_takes_private_workers_on_a_subnetwork(home, cli_runner, monkeypatch):
    """docs/backfill.md's command for workers without public IPs (behind Cloud NAT) is handed to Beam whole, and
    the job translates with workers on private addresses on that subnetwork."""
    from apache_beam.options.pipeline_options import WorkerOptions

    from workbench.pipeline_run import backfill_launcher as launcher

    seen, submit = [], launcher.submit  # the real submit, watched for the options it is given
    monkeypatch.setattr(launcher, "submit", lambda options, build: seen.append(options) or submit(options, build))
    result = cli_runner.invoke(cli, [
        "backfill", "s3://history/exports", "--runner", "DataflowRunner", "--project", "my-project",
        "--region", "europe-west1", "--temp-location", "gs://my-bucket/tmp", "--output-root", "gs://my-bucket/output",
        "--dry-run", "--no_auth",
        "--no_use_public_ips", "--subnetwork", "regions/europe-west1/subnetworks/private"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "transforms translated" in result.output
    workers = seen[0].view_as(WorkerOptions)
    assert workers.use_public_ips is False and workers.subnetwork == "regions/europe-west1/subnetworks/private"


def one_line(text: str) -> str:
    """What the terminal showed, as one line however it wrapped."""
    return " ".join(text.split())


def test_dataflow_refuses_a_history_on_this_machine(home, tmp_path, monkeypatch, capsys):
    from workbench.cli import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main(["backfill", str(tmp_path), "--runner", "DataflowRunner", "--project", "my-project", "--region",
              "europe-west1", "--temp-location", "gs://b/tmp", "--output-root", "gs://b/out"])  # fmt: skip
    assert exited.value.code == 2
    said = one_line(capsys.readouterr().err)
    assert f"history {tmp_path} is on this machine: Dataflow's workers cannot read it" in said, said
    assert "s3://BUCKET/PREFIX" in said, said


def test_no_dead_letter_sink_at_all_is_refused(home, tmp_path, monkeypatch, capsys):
    """Refused before anything runs: were the check gone, the backfill would write into ./output, and this test runs
    where that is its own folder."""
    from workbench.cli import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main(["backfill", str(tmp_path), "--dataset", "", "--dead-letter-topic", ""])
    assert exited.value.code == 2
    said = one_line(capsys.readouterr().err)
    assert "--dataset '' and --dead-letter-topic '' leave the dead letters nowhere" in said, said
    assert "keep the dead_letters table (a --dataset) or a --dead-letter-topic" in said, said
    assert not (tmp_path / "output").exists()
