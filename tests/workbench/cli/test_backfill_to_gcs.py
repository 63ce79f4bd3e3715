"""A local `workbench backfill` whose --output-root is gs://, on the GCS emulator, run as a user runs it.

The stream and the backfill share their local-mode setup (workbench/pipeline_run/local_mode.py): emulator hosts in
the environment and anonymous credentials for Beam's own GCP clients. Without the latter, Beam's gs:// filesystem
takes the user's Application Default Credentials and refreshes them at oauth2.googleapis.com before it writes to
the emulator: offline the backfill fails (seen when the backfill's launcher did not install them). The CLI runs in
a child process with a user's environment (ADC from `gcloud auth application-default login`, no NO_GCE_CHECK), so
nothing the test process set up helps it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pytest

from eventmodel import resources as names

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROJECT = "backfill-gcs"
# What only the test process needs: a user's shell has none of these.
NOT_A_USERS = ("NO_GCE_CHECK", "GOOGLE_APPLICATION_CREDENTIALS", "CLOUDSDK_CONFIG")


def _cli(*args: str, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=Path(__file__).resolve().parents[3])  # fmt: skip


def _user_credentials(folder: Path) -> Path:
    """Application Default Credentials as `gcloud auth application-default login` leaves them: a user who works
    with real Google Cloud too has them, and local mode must not use them (they are refreshed at Google)."""
    path = folder / "application_default_credentials.json"
    fields = {"type": "authorized_user", "client_id": "workbench-test.apps.googleusercontent.com",
              "client_secret": "not-a-secret", "refresh_token": "not-a-token"}  # fmt: skip
    path.write_bytes(orjson.dumps(fields))
    return path


def test_a_local_backfill_to_gs_reconciles(
    make_stack, request, workbench_emulator, s3_emulator, gcs_emulator, tmp_path
):
    stack = make_stack(request, PROJECT, bigquery=False, s3=True)  # the dead letters' topic, the history's bucket
    bucket = stack.bucket
    env = {k: v for k, v in os.environ.items() if k not in NOT_A_USERS}
    env.update(s3_emulator.exports)
    env.update({"WORKBENCH_HOME": str(tmp_path / "home"), names.PUBSUB_EMULATOR_ENV: workbench_emulator.target,
                names.STORAGE_EMULATOR_ENV: os.environ[names.STORAGE_EMULATOR_ENV],
                "GOOGLE_APPLICATION_CREDENTIALS": str(_user_credentials(tmp_path))})  # fmt: skip
    seeded = _cli("publish", "--history", "2025-01-01..2025-01-08", "--count", "300", "--seed", "5",
                  "--to", f"s3://{bucket}/exports", "--objects", "6", "--run-id", "gcs-history", env=env)  # fmt: skip
    assert seeded.returncode == 0, seeded.stdout + seeded.stderr
    output_root = f"{gcs_emulator}/out-{uuid.uuid4().hex[:8]}"

    backfilled = _cli("backfill", f"s3://{bucket}/exports", "--project", stack.project, "--output-root",
                      output_root, "--dataset", "", env=env)  # fmt: skip
    assert backfilled.returncode == 0, backfilled.stdout + backfilled.stderr
    assert "backfill done" in backfilled.stderr

    reconciled = _cli("reconcile", "gcs-history", "--project", stack.project, "--output-root",
                      output_root, "--no-bigquery", env=env)  # fmt: skip
    assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr
    assert "all 300 events accounted for" in reconciled.stdout + reconciled.stderr
