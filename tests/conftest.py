"""The local services every test directory shares, one session fixture per emulator, all started through the
workbench's own toolkit (workbench.localstack.emulators: free loopback ports, readiness, stop by process group).

- `workbench_emulator`: this project's Pub/Sub emulator; `official_emulator`: Google's, where gcloud and java are
  installed (skipped with the reason otherwise); `backend` is parametrized over both so that a suite runs the
  same assertions against each.
- `bigquery_emulator`: bqemulator; any project id works on it, so each test names its own project or dataset.
- `gcs_emulator`: a fresh in-memory GCS emulator per test (it slows as objects pile up).
- `s3_emulator`: moto's S3 server (in memory); each test makes its own bucket.
- `make_stack`: the one factory of a "stack with resources" on those emulators (a project, dataset and bucket of
  the test's or the module's own, deleted after it); `stack` is the pipeline tests' stack made with it.
- `home`: a WORKBENCH_HOME of the test's own; `cli_runner`: click's CliRunner for in-process `workbench` commands.

The whole suite runs in strict BigQuery mode (endpoints/bigquery_strict.py): every BigQuery client the workbench
builds refuses what real BigQuery refuses and bqemulator forgives. The variables are set here, at import, so that
xdist workers and every process a test spawns (the pipeline, the `workbench` CLI) inherit them; the used-job-id
registry is a fresh folder per session. `strict_bigquery` is a strict client on the session's emulator.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import stack_support
from click.testing import CliRunner, Result
from stack_support import LocalStack

from ddl.model import partition_rules
from endpoints import bigquery_strict
from workbench.localstack.emulators import (
    Emulator,
    official_pubsub_missing,
    start_bigquery_emulator,
    start_gcs_emulator,
    start_official_pubsub_emulator,
    start_pubsub_emulator,
    start_s3_emulator,
)

PROJECT = "p"  # the Pub/Sub tests' project on the shared emulators

os.environ[bigquery_strict.STRICT_ENV] = "1"
# The tables strict mode holds to a partition filter, from the DDL (the client's bottom-layer package cannot read it).
os.environ[bigquery_strict.RULES_ENV] = json.dumps(partition_rules())
if not os.environ.get(bigquery_strict.JOBS_ENV):  # the xdist controller makes it; its workers inherit it
    _jobs = tempfile.mkdtemp(prefix="workbench-strict-jobs-")
    os.environ[bigquery_strict.JOBS_ENV] = _jobs
    atexit.register(shutil.rmtree, _jobs, ignore_errors=True)


@pytest.fixture(scope="session")
def workbench_emulator() -> Iterator[Emulator]:
    with start_pubsub_emulator(project=PROJECT) as emulator:
        yield emulator


@pytest.fixture(scope="session")
def official_emulator() -> Iterator[Emulator]:
    reason = official_pubsub_missing()
    if reason:
        pytest.skip(f"official emulator unavailable: {reason}")
    with start_official_pubsub_emulator(project=PROJECT) as emulator:
        yield emulator


@pytest.fixture(params=["workbench", "official"])
def backend(request: pytest.FixtureRequest) -> Emulator:
    """The Pub/Sub emulator a conformance test runs against."""
    return request.getfixturevalue(f"{request.param}_emulator")


@pytest.fixture(scope="session")
def bigquery_emulator() -> Iterator[Emulator]:
    with start_bigquery_emulator(project="workbench-tests") as emulator:
        # A port an earlier emulator of this session had: its jobs are gone, so are their ids.
        with emulator.client() as client:
            bigquery_strict.JobRegistry.from_environment().forget(bigquery_strict.endpoint_of(client))
        yield emulator


@pytest.fixture
def strict_bigquery(bigquery_emulator) -> Iterator[bigquery_strict.StrictClient]:
    """A strict client (location US) on the session's emulator, as the workbench's factory builds it."""
    client = bigquery_emulator.client()
    assert isinstance(client, bigquery_strict.StrictClient), "the suite should run in strict BigQuery mode"
    yield client
    client.close()


@pytest.fixture
def gcs_emulator(monkeypatch) -> Iterator[str]:
    """Yields the bucket URL gs://workbench-test and points STORAGE_EMULATOR_HOST (and Beam's gs:// filesystem,
    anonymously) at a fresh emulator."""
    from endpoints.storage import use_anonymous_beam_credentials

    with start_gcs_emulator(bucket="workbench-test") as emulator:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.endpoint)
        use_anonymous_beam_credentials()
        yield "gs://workbench-test"


@pytest.fixture(scope="session")
def s3_emulator() -> Iterator[Emulator]:
    """moto's S3 server for the session: `.s3_client()` is boto3's, `.endpoint` is Beam's --s3_endpoint_url and
    `.exports` the AWS variables for a child process. Each test creates and names its own bucket."""
    with start_s3_emulator() as emulator:
        yield emulator


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A WORKBENCH_HOME of the test's own, empty (tmp_path/home): runs, the stack's state and its logs go there, never
    to the user's. NO_GCE_CHECK too: nothing here asks Google's metadata server for credentials."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("WORKBENCH_HOME", str(home))
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    return home


class WorkbenchRunner(CliRunner):
    """click's CliRunner, as Hatch's tests hold theirs: `cli_runner("publish", "--count", "5")` runs the `workbench`
    command in this process and lets an unexpected exception through (a crash is not an exit status);
    `cli_runner.invoke(command, args)` is CliRunner's own, for any click command."""

    def __call__(self, *args: str, **kwargs) -> Result:
        from workbench.cli import cli

        kwargs.setdefault("catch_exceptions", False)
        return self.invoke(cli, list(args), **kwargs)


@pytest.fixture(scope="session")
def cli_runner() -> WorkbenchRunner:
    return WorkbenchRunner()


@pytest.fixture(scope="session")
def make_stack():
    """The one factory of "a stack with resources" (tests/stack_support.py): `make_stack(request, name, ...)`, in
    a fixture of any scope or in a test, gives a LocalStack (a project of its own with the pipeline's topics and
    subscriptions, the BigQuery model, optionally an S3 bucket, WORKBENCH_HOME and the emulator variables set) and
    deletes it when the scope of `request` ends."""
    return stack_support.make_stack


@pytest.fixture
def stack(make_stack, request) -> LocalStack:
    """The pipeline's and the launcher's integration tests: every test in its own project (so its own topic,
    subscription and dead-letter pair) with the model in a dataset that is not the default one (so that a test
    sees whether --dataset was honoured)."""
    return make_stack(request, "pipeline-it", dataset="events_it")
