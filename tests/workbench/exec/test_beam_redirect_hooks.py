"""Canaries for the Beam 2.77 internals `workbench exec`'s redirect replaces (workbench/beam_redirect), and the
redirect's pure parts. Beam's Python SDK offers no public route for any of them (apache/beam #23598; see
bigquery.py): a Beam upgrade that moves one fails here, by name, instead of as a user's pipeline that writes to
real BigQuery, hangs asking for credentials, or deletes the emulator's datasets.

Nothing here patches Beam in the test process: what a hook does is checked in a child process that loads the
startup folder exactly as an exec'd command does.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys

import apache_beam
import pytest

from workbench.beam_redirect import bigquery as redirect
from workbench.beam_redirect import limits, settings
from workbench.beam_redirect.isolation import ours_first


def test_the_beam_version_these_hooks_were_read_from():
    assert apache_beam.__version__.startswith("2.77."), "re-read every hook of workbench/beam_redirect, then bump"


# ---------------------------------------------------------------------------------------------- Beam's internals


def test_the_apitools_client_keeps_its_url_in_base_url_and_asks_for_credentials_unless_told_not_to():
    from apache_beam.io.gcp.internal.clients.bigquery.bigquery_v2_client import BigqueryV2

    assert BigqueryV2.BASE_URL == "https://bigquery.googleapis.com/bigquery/v2/"
    parameters = inspect.signature(BigqueryV2.__init__).parameters
    assert list(parameters)[:4] == ["self", "url", "credentials", "get_credentials"]
    assert "url = url or self.BASE_URL" in inspect.getsource(BigqueryV2.__init__)
    list_source = inspect.getsource(BigqueryV2.DatasetsService.List)
    assert "self.GetMethodConfig('List')" in list_source and callable(BigqueryV2.DatasetsService.List.method_config)


def test_beams_bigquery_wrapper_builds_both_clients_without_an_endpoint():
    from apache_beam.io.gcp import bigquery_tools

    source = inspect.getsource(bigquery_tools.BigQueryWrapper.__init__)
    assert "BigQueryWrapper._bigquery_client(PipelineOptions())" in source
    assert "gcp_bigquery.Client(" in source
    assert "bigquery.BigqueryV2(" in inspect.getsource(bigquery_tools.BigQueryWrapper._bigquery_client)
    assert bigquery_tools.gcp_bigquery.__name__ == "google.cloud.bigquery"


def test_file_loads_asks_the_module_level_prefix_generator_and_refuses_only_a_non_gcs_base():
    from apache_beam.io.gcp import bigquery_file_loads

    parameters = inspect.signature(bigquery_file_loads.file_prefix_generator).parameters
    assert list(parameters) == ["with_validation", "pipeline_gcs_location", "temp_location"]
    expand = inspect.getsource(bigquery_file_loads.BigQueryBatchFileLoads.expand)
    assert "file_prefix_generator(\n                self._validate, self._custom_gcs_temp_location, temp_location)" in (
        expand
    )
    generator = inspect.getsource(bigquery_file_loads.file_prefix_generator)
    assert "with_validation and (not gcs_base or not gcs_base.startswith('gs://'))" in generator
    assert "fs.FileSystems.join(gcs_base, 'bq_load', prefix_uuid)" in generator


def test_load_jobs_go_through_perform_load_job_with_their_source_uris():
    from apache_beam.io.gcp import bigquery_file_loads, bigquery_tools

    parameters = inspect.signature(bigquery_tools.BigQueryWrapper.perform_load_job).parameters
    assert list(parameters)[:4] == ["self", "destination", "job_id", "source_uris"]
    assert "self.bq_wrapper.perform_load_job(" in inspect.getsource(bigquery_file_loads.TriggerLoadJobs)


def test_read_from_bigquery_cleans_up_every_dataset_its_label_filter_lists():
    from apache_beam.io.gcp import bigquery_tools

    source = inspect.getsource(bigquery_tools.BigQueryWrapper._clean_up_beam_labelled_temporary_datasets)
    assert "projectId=project_id, filter=filter_str" in source and "self._delete_dataset(" in source
    assert bigquery_tools._build_filter_from_labels({"a": "b", "c": "d"}) == "labels.a:b labels.c:d "


def test_direct_read_builds_its_storage_client_from_the_module_global():
    from apache_beam.io.gcp import bigquery as beam_bigquery

    assert beam_bigquery.bq_storage.__name__ == "google.cloud.bigquery_storage_v1"
    assert "bq_storage.BigQueryReadClient()" in inspect.getsource(beam_bigquery._CustomBigQueryStorageSource)


@pytest.mark.parametrize("method", ["DEFAULT", "STREAMING_INSERTS", "FILE_LOADS", "STORAGE_WRITE_API"])
@pytest.mark.parametrize("streaming", [True, False])
def test_the_write_method_is_computed_as_beam_computes_it(method, streaming):
    from apache_beam.io.gcp.bigquery import WriteToBigQuery

    transform = WriteToBigQuery("project:dataset.table", schema="a:STRING", method=method)
    assert limits.write_method(transform, streaming) == transform._compute_method(None, streaming)


def test_the_guarded_transforms_and_the_run_hooks_exist_with_the_signatures_the_hooks_take():
    from apache_beam.io.gcp import bigquery as beam_bigquery
    from apache_beam.pipeline import Pipeline
    from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner, DirectPipelineResult, DirectRunner

    for transform in (beam_bigquery.WriteToBigQuery, beam_bigquery.StorageWriteToBigQuery,
                      beam_bigquery.ReadFromBigQuery):  # fmt: skip
        assert len(inspect.signature(transform.expand).parameters) == 2  # (self, input)
    assert beam_bigquery.ReadFromBigQuery.Method.EXPORT == "EXPORT"
    assert "self.method = method" in inspect.getsource(beam_bigquery.ReadFromBigQuery.__init__)
    assert list(inspect.signature(Pipeline.run).parameters) == ["self", "test_runner_api"]
    assert ").run(False)" in inspect.getsource(Pipeline._run_internal)  # Beam's re-entry the hook lets through
    assert "self.runner.run_pipeline(self, self._options)" in inspect.getsource(Pipeline._run_internal)
    assert list(inspect.signature(BundleBasedDirectRunner.run_pipeline).parameters) == ["self", "pipeline", "options"]
    assert list(inspect.signature(DirectPipelineResult.wait_until_finish).parameters) == ["self", "duration"]
    assert DirectRunner.__name__ == "SwitchingDirectRunner"  # what check_before_run replaces for the local reader


def test_every_dataflow_only_option_is_one_beam_knows():
    import argparse

    from apache_beam.options.pipeline_options import GoogleCloudOptions

    parser = argparse.ArgumentParser()
    GoogleCloudOptions._add_argparse_args(parser)
    known = {action.dest for action in parser._actions}
    assert set(limits.DATAFLOW_CLOUD_OPTIONS) <= known
    assert {"project", "temp_location"} <= known - set(limits.DATAFLOW_CLOUD_OPTIONS)  # these mean something here
    assert limits.dataflow_only_options({"max_num_workers": 5, "region": "r", "project": "p", "streaming": True}) == [
        "max_num_workers",
        "region",
    ]


# --------------------------------------------------------------------------------- the chain, in a child process

CHILD = """
import json
import apache_beam
from apache_beam.io.gcp import bigquery, bigquery_tools
from apache_beam.io.gcp.internal.clients.bigquery.bigquery_v2_client import BigqueryV2
wrapper = bigquery_tools.BigQueryWrapper()
storage = bigquery.bq_storage.BigQueryReadClient()
print(json.dumps({
    "apitools": wrapper.client.url,
    "insert": wrapper.gcp_bq_client._connection.API_BASE_URL,
    "insert_credentials": type(wrapper.gcp_bq_client._credentials).__name__,
    "project": wrapper.gcp_bq_client.project,
    "storage": storage._transport.grpc_channel._channel.target().decode(),
    "credentials_asked": BigqueryV2.__init__.__code__.co_name,
}))
"""


def run_child(code: str, pythonpath: str = "") -> subprocess.CompletedProcess:
    """`python -c code` with the environment `workbench exec` gives (a stack's exports: nothing listens there)."""
    import os

    exports = {"PUBSUB_EMULATOR_HOST": "127.0.0.1:1", "BIGQUERY_EMULATOR_HOST": "http://127.0.0.1:9"}
    base = {k: v for k, v in os.environ.items() if not k.endswith("_EMULATOR_HOST")}
    base["PYTHONPATH"] = pythonpath
    env = settings.child_environment(base, exports, "exec-project", settings.ExecSettings())
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def test_an_execd_python_process_talks_to_the_emulator_only_anonymously():
    done = run_child(CHILD)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["apitools"] == "http://127.0.0.1:9/bigquery/v2/"
    assert seen["insert"] == "http://127.0.0.1:9"
    assert seen["insert_credentials"] == "AnonymousCredentials"
    assert seen["project"] == "exec-project"
    assert seen["storage"] == "dns:///127.0.0.1:19"  # the emulator's gRPC port: REST + BIGQUERY_GRPC_OFFSET


def test_a_process_that_never_imports_beam_is_left_alone():
    done = run_child("import sys; print('apache_beam' in sys.modules, 'workbench' in sys.modules)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]


def test_a_shadowed_sitecustomize_still_runs(tmp_path):
    (tmp_path / "sitecustomize.py").write_text("import builtins\nbuiltins.SHADOWED_RAN = True\n")
    done = run_child("import builtins; print(getattr(builtins, 'SHADOWED_RAN', False))", str(tmp_path))
    assert done.stdout.strip() == "True", done.stderr


# ----------------------------------------------------------------------------------------------- pure functions


@pytest.mark.parametrize(
    "expression, labels, expected",
    [
        ("labels.beam_temp:1 ", {"beam_temp": "1"}, True),
        ("labels.beam_temp:1 ", {"beam_temp": "2"}, False),
        ("labels.beam_temp:1 ", {}, False),
        ("labels.a labels.b:x", {"a": "anything", "b": "x"}, True),
        ("labels.a labels.b:x", {"a": "anything"}, False),
        ("name:x", {"name": "x"}, False),  # not a label filter: keeps nothing (Beam deletes what is listed)
    ],
)
def test_the_label_filter_keeps_what_bigquery_would_list(expression, labels, expected):
    assert redirect.label_filter_matches(expression, labels) is expected


def test_a_local_temp_location_is_made_absolute_and_gcs_is_kept(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert redirect.local_file_prefix("tmp") == str(tmp_path / "tmp")
    assert redirect.local_file_prefix("gs://b/tmp") == "gs://b/tmp"
    assert redirect.local_file_prefix("") is None and redirect.local_file_prefix(None) is None
    assert redirect.storage_read_address("http://127.0.0.1:9050") == "127.0.0.1:9060"


@pytest.mark.parametrize(
    "runner, dry_run, refused",
    [
        (None, False, None),
        ("DirectRunner", False, None),
        ("BundleBasedDirectRunner", False, None),
        ("DataflowRunner", True, None),
        ("DataflowRunner", False, "submits the job to Google Cloud"),
        ("PrismRunner", False, "does not run offline"),
        ("FlinkRunner", False, "does not run offline"),
    ],
)
def test_which_runners_run_under_exec(runner, dry_run, refused):
    problem = limits.runner_problem(runner, dry_run)
    assert (problem is None) if refused is None else (refused in problem)


def test_the_settings_travel_through_the_environment():
    chosen = settings.ExecSettings(read=settings.STOCK, idle_seconds=None, max_unacked=7)
    assert settings.ExecSettings.from_environment(chosen.to_environment()) == chosen
    assert settings.ExecSettings.from_environment({}) == settings.ExecSettings()


def test_the_child_environment_puts_the_stack_first_and_the_startup_folder_on_pythonpath():
    base = {"PUBSUB_EMULATOR_HOST": "elsewhere:1", "BIGQUERY_EMULATOR_HOST": "http://stale:1", "PYTHONPATH": "/mine",
            "HOME": "/h", settings.OWN_PIPELINE_ENV: "1"}  # fmt: skip
    exports = {"PUBSUB_EMULATOR_HOST": "127.0.0.1:8085", "PUBSUB_PROJECT_ID": "p"}
    env = settings.child_environment(base, exports, "p", settings.ExecSettings())
    assert env["PUBSUB_EMULATOR_HOST"] == "127.0.0.1:8085" and env["GOOGLE_CLOUD_PROJECT"] == "p"
    assert "BIGQUERY_EMULATOR_HOST" not in env  # not the stack's: dropped, so BigQuery IO is refused with the fix
    # A run-pipeline earlier in the caller's process marked it: the user's command must still be redirected.
    assert settings.OWN_PIPELINE_ENV not in env
    assert env["PYTHONPATH"].split(":") == [str(settings.STARTUP_DIR), "/mine"]
    assert env["NO_GCE_CHECK"] == "true" and env["HOME"] == "/h" and env[settings.ACTIVE_ENV] == "1"
    assert (settings.STARTUP_DIR / "sitecustomize.py").is_file()


def test_the_workbench_modules_imported_for_a_user_never_take_the_users_names(tmp_path, monkeypatch):
    import importlib

    (tmp_path / "pipeline.py").write_text("MINE = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    saved = {n: m for n, m in sys.modules.items() if n == "pipeline" or n.startswith("pipeline.")}
    for name in saved:
        monkeypatch.delitem(sys.modules, name)
    with ours_first():
        ours = importlib.import_module("pipeline.delivery")
    assert hasattr(ours, "release")  # the workbench's, although the user's pipeline.py came first on sys.path
    assert "pipeline" not in sys.modules  # and it does not stay under the user's name
    assert importlib.import_module("pipeline").MINE
    del sys.modules["pipeline"]  # the user's, gone with its folder; monkeypatch puts back what was there before


def _pubsub_pipeline(*flags: str):
    import apache_beam as beam
    from apache_beam.io.gcp.pubsub import ReadFromPubSub
    from apache_beam.options.pipeline_options import PipelineOptions

    pipeline = beam.Pipeline(options=PipelineOptions(["--streaming", *flags]))
    _ = pipeline | ReadFromPubSub(subscription="projects/my-project/subscriptions/s") | beam.Map(len)
    return pipeline


def test_the_fast_reader_takes_the_bundle_based_runner_and_the_stock_read_keeps_beams(capsys):
    from workbench.beam_redirect import runs

    fast, stock = _pubsub_pipeline("--runner", "DirectRunner"), _pubsub_pipeline("--runner", "DirectRunner")
    runs.check_before_run(fast, settings.ExecSettings())
    runs.check_before_run(stock, settings.ExecSettings(read=settings.STOCK))
    assert type(fast.runner).__name__ == "BundleBasedDirectRunner"
    assert type(stock.runner).__name__ == "SwitchingDirectRunner"
    assert runs.reads_pubsub(fast) and capsys.readouterr().err == ""


def test_dataflow_only_options_are_reported_in_one_line(capsys):
    """(DataflowRunner's refusal is in test_exec.py: building a Dataflow pipeline here, without the exec'd process's
    anonymous credentials and emulators, spends minutes looking for Google Cloud.)"""
    from workbench.beam_redirect import runs

    runs.check_before_run(_pubsub_pipeline("--max_num_workers", "5", "--region", "r"), settings.ExecSettings())
    assert capsys.readouterr().err == (
        "workbench exec: --max_num_workers, --region are read only by Dataflow: the local DirectRunner ignores them\n"
    )


MOVED = """
import importlib.abc, importlib.util, sys

class Moved(importlib.abc.MetaPathFinder):  # as if Beam had renamed a hook's target
    def find_spec(self, name, path=None, target=None):
        if name != "apache_beam.io.gcp.bigquery_file_loads":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            del module.file_prefix_generator

        spec.loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, Moved())
"""


def test_a_beam_whose_internals_moved_stops_with_one_line_and_the_fix(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(MOVED)
    done = run_child("import apache_beam\nprint('built')", str(tmp_path))
    assert done.returncode == 2 and "built" not in done.stdout, done.stderr[-2000:]
    assert done.stderr.startswith("workbench exec: the Beam redirect failed on apache-beam 2.77"), done.stderr
    assert "file_prefix_generator" in done.stderr and "Traceback" not in done.stderr


def test_the_readers_timestamp_attribute_is_read_as_beams_reader_reads_it():
    from apache_beam.runners.direct.transform_evaluator import _PubSubReadEvaluator
    from apache_beam.utils.timestamp import Timestamp

    from workbench.pipeline_run.direct_runner import attribute_timestamp

    source = inspect.getsource(_PubSubReadEvaluator._read_from_pubsub)
    rules = ("Timestamp(micros=int(rfc3339_or_milli) * 1000)", "Timestamp.from_rfc3339(rfc3339_or_milli)",
             "Timestamp.MICROS_PRECISION, allow_lossy_conversion=True")  # fmt: skip
    for rule in rules:
        assert rule in source
    assert attribute_timestamp("1735689600123") == Timestamp(micros=1735689600123000)
    assert attribute_timestamp("2025-01-01T00:00:00.123456789Z") == Timestamp(micros=1735689600123456)
    with pytest.raises(ValueError, match="Bad timestamp value"):
        attribute_timestamp("yesterday")


BUILD = """
import sys
import apache_beam as beam
from apache_beam.io.gcp.bigquery import ReadFromBigQuery, WriteToBigQuery
from apache_beam.options.pipeline_options import PipelineOptions

pipeline = beam.Pipeline(options=PipelineOptions(sys.argv[2:]))
if sys.argv[1] == "read":
    _ = pipeline | ReadFromBigQuery(table="project:dataset.table")
else:
    _ = pipeline | beam.Create([{"a": "x"}]) | WriteToBigQuery("project:dataset.table", schema="a:STRING",
                                                               method=sys.argv[1])
print("built")
"""


@pytest.mark.parametrize(
    "args, without_bigquery, expected",
    [
        (["FILE_LOADS"], False, "WriteToBigQuery(method=FILE_LOADS) needs a place for its load files"),
        (["FILE_LOADS", "--temp_location", "gs://bucket/tmp"], False, "is on gs://, but the local stack runs no GCS"),
        (["STREAMING_INSERTS"], True, "the local stack runs no BigQuery emulator"),
        (["read", "--temp_location", "/tmp"], False, "ReadFromBigQuery(method=EXPORT) has BigQuery export to GCS"),
    ],
)
def test_what_the_local_stack_cannot_serve_is_refused_where_the_pipeline_is_built(args, without_bigquery, expected):
    import os

    exports = {"PUBSUB_EMULATOR_HOST": "127.0.0.1:1"} | (
        {} if without_bigquery else {"BIGQUERY_EMULATOR_HOST": "http://127.0.0.1:9"}
    )
    base = {k: v for k, v in os.environ.items() if not k.endswith("_EMULATOR_HOST")}
    env = settings.child_environment(base, exports, "p", settings.ExecSettings())
    done = subprocess.run([sys.executable, "-c", BUILD, *args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "built" not in done.stdout, done.stderr[-2000:]
    assert done.stderr.startswith("workbench exec: ") and expected in done.stderr, done.stderr[-2000:]
    assert len(done.stderr.strip().splitlines()) == 1  # one line, no traceback
