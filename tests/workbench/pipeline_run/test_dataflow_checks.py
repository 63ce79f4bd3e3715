"""Dataflow settings are checked as Dataflow would, before Beam sees them: one line naming the rule and the fix,
in milliseconds and offline (unchecked, a bad project id is a traceback from deep in Beam and a bad bucket makes
Beam try to create a staging bucket over the network)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from workbench.errors import WorkbenchError
from workbench.pipeline_run.preflight import bucket_problem, check_dataflow

ROOT = Path(__file__).resolve().parents[3]
GOOD = {
    "--project": "my-project",
    "--region": "europe-west1",
    "--temp_location": "gs://my-bucket/tmp",
    "--output_root": "gs://my-bucket/output",
}


def options(**changes: str | None) -> PipelineOptions:
    flags = {**GOOD, **{f"--{k}": v for k, v in changes.items()}}
    return PipelineOptions([f"{k}={v}" for k, v in flags.items() if v is not None])


def test_settings_dataflow_takes_pass():
    check_dataflow(options())
    check_dataflow(options(project="example.com:my-project", region="northamerica-northeast2"))


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"project": None}, "no project given"),
        ({"project": "workbench-local"}, "not the local default"),
        ({"project": "p1"}, "is not a Google Cloud project id"),
        ({"project": "My-Project"}, "is not a Google Cloud project id"),
        ({"project": "my-project-"}, "is not a Google Cloud project id"),
        ({"region": None}, "Dataflow needs --region"),
        ({"region": "europe"}, "is not a Google Cloud region"),
        ({"temp_location": None}, "Dataflow needs --temp_location"),
        ({"temp_location": "gs://b/tmp"}, "bucket 'b' is not a Cloud Storage bucket name"),
        ({"temp_location": "/tmp/beam"}, "it is not a gs:// URL"),
        ({"output_root": "./output"}, "--output_root ./output: it is not a gs:// URL"),
        ({"output_root": "gs://My_Bucket/out"}, "is not a Cloud Storage bucket name"),
        ({"output_root": "gs://google-events/out"}, "is reserved"),
    ],
)
def test_each_setting_dataflow_would_refuse_is_named(change, says):
    with pytest.raises(WorkbenchError, match=says) as raised:
        check_dataflow(options(**change))
    assert raised.value.fix


@pytest.mark.parametrize(
    ("url", "ok"),
    [("gs://my-bucket", True), ("gs://a.b.c/x", True), ("gs://ab", False), ("gs://-bucket", False),
     ("gs://192.168.5.4/x", False), ("gs://googbucket", False), ("gs://" + "a" * 64, False),
     ("gs://" + ".".join(["a" * 63] * 3), True)],
)  # fmt: skip
def test_bucket_names_follow_cloud_storage_rules(url, ok):
    assert (bucket_problem(url) is None) == ok, bucket_problem(url)


@pytest.mark.parametrize(
    ("flags", "says"),
    [(["--project", "p1"], "is not a Google Cloud project id"),
     (["--project", "my-project", "--temp-location", "gs://b/tmp"], "--temp-location gs://b/tmp: bucket 'b'")],
)  # fmt: skip
def test_the_command_fails_fast_offline_without_a_traceback(flags, says, tmp_path):
    argv = [sys.executable, "-m", "workbench.cli", "run-pipeline", "--runner", "DataflowRunner",
            "--region", "europe-west1", "--temp-location", "gs://my-bucket/tmp", "--output-root", "gs://o-bucket/x",
            *flags]  # fmt: skip
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin", "NO_GCE_CHECK": "true", "HOME": str(tmp_path)})  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    assert says in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert time.monotonic() - started < 60, "no network wait before the message"
