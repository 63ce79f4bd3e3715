"""The backfill's Flex Template (pipeline/flex_template/backfill_main.py, backfill_metadata.json, the Dockerfile's
`backfill` stage): its parameters are the options the backfill reads, each refused exactly where the backfill
refuses it, its launcher builds the batch job offline, and its image is the stream's with another launcher file.
The stream's template has the same checks in tests/pipeline/test_pipeline_packaging.py."""

from __future__ import annotations

import argparse
import ast
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import S3Options

from pipeline.backfill import build_backfill, make_options
from pipeline.options import TIMESTAMP, EventPipelineOptions, HistoryOptions

ROOT = Path(__file__).resolve().parents[2]
FLEX = ROOT / "pipeline" / "flex_template"
LAUNCHER = FLEX / "backfill_main.py"
LOCAL_ONLY = {"bigquery_emulator_host"}  # the BigQuery emulator: no place on Dataflow
# Beam's S3 options the backfill hands to boto3 (pipeline.history_read.s3_client_settings). Only the region is a
# parameter: keys in job options are shown to every viewer of the job (docs/backfill.md, "AWS credentials"), and
# the endpoint, TLS and verify settings are for S3-compatible stores on this machine.
S3_PARAMETERS = {"s3_region_name"}
S3_NEVER = {"s3_access_key_id", "s3_secret_access_key", "s3_session_token"}


def metadata(name: str = "backfill_metadata.json") -> dict:
    return json.loads((FLEX / name).read_text())


def parameters(name: str = "backfill_metadata.json") -> dict[str, dict]:
    found = metadata(name)["parameters"]
    assert len(found) == len({p["name"] for p in found}), "a parameter declared twice"
    return {p["name"]: p for p in found}


class _RecordedReads(dict):
    """PipelineOptions keep every view's values in one dict (`_all_options`) and read them by key: this one notes
    the keys read, so a test learns which options the backfill's code consults, from the code itself."""

    def __init__(self, values: dict) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)


def options_the_backfill_reads() -> set[str]:
    options = make_options(["--runner", "DirectRunner", "--project", "my-project", "--history_uri", "s3://b/x",
                            "--output_root", "gs://b/out", "--since", "2025-01-01T00:00:00Z"])  # fmt: skip
    reads = _RecordedReads(options._all_options)
    options._all_options = reads
    build_backfill(beam.Pipeline(options=options), options)  # built, never run
    return reads.read


def _names(cls) -> set[str]:
    parser = argparse.ArgumentParser()
    cls._add_argparse_args(parser)
    return {action.dest for action in parser._actions if action.dest != "help"}


def test_the_parameters_are_the_options_the_backfill_reads():
    read = options_the_backfill_reads()
    ours = (_names(EventPipelineOptions) | _names(HistoryOptions)) & read
    declared = set(parameters())
    assert ours, "the recording saw no option read: the check would pass on anything"
    assert declared - read == set(), "declared, but the backfill never reads it"
    assert ours - LOCAL_ONLY - declared == set(), "read by the backfill, but not a template parameter"
    assert declared & LOCAL_ONLY == set()
    s3 = _names(S3Options)
    assert declared & s3 == S3_PARAMETERS and read >= S3_PARAMETERS
    assert s3 >= S3_NEVER, "Beam renamed its S3 key options: update S3_NEVER"


def test_a_parameter_both_templates_declare_is_declared_alike():
    """Stream and backfill share the sinks' options: one rule for each, whichever template launches."""
    stream, backfill = parameters("metadata.json"), parameters()
    shared = set(stream) & set(backfill)
    assert {"output_root", "dataset", "dead_letter_topic", "sink_retry_seconds", "file_max_lines"} <= shared
    for name in sorted(shared):
        for key in ("label", "isOptional", "regexes"):
            assert stream[name].get(key) == backfill[name].get(key), f"{name}: {key} differs"


def test_the_template_is_a_batch_job():
    data = metadata()
    assert data["streaming"] is False  # a bounded source: pipeline.backfill.make_options says so
    # Streaming modes mean nothing to a batch job (the metadata reference lists them for streaming templates).
    assert not {"supportsAtLeastOnce", "supportsExactlyOnce", "defaultStreamingMode"} & set(data)


def _matches(parameter: dict, value: str) -> bool:
    return all(re.search(pattern, value) for pattern in parameter.get("regexes", []))


def _backfill_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(exit_on_error=False)
    for cls in (EventPipelineOptions, HistoryOptions, S3Options):
        cls._add_argparse_args(parser)
    return parser


def _backfill_takes(name: str, value: str) -> bool:
    parser = _backfill_parser()
    try:
        parser.parse_args([f"--{name}={value}"])
    except (SystemExit, argparse.ArgumentError):
        return False
    return True


NUMBERS = ["-1", "0", "0.0", "0.5", "1", "5", "600", "2.50", "five", "", "1e3", "inf", "nan", " 5"]
TIMES_BOTH_TAKE = ["2025-01-01T00:00:00Z", "2025-02-01T00:00:00.5Z", "2025-01-01T01:00:00+01:00",
                   "2024-02-29T23:59:59.123456-05:30"]  # fmt: skip
TIMES_NEITHER_TAKES = ["yesterday", "", "2025-13-01T00:00:00Z", "2025-01-01T24:00:00Z", "2025-01-01T00:00:60Z",
                       "1735689600"]  # fmt: skip
# Forms Python's fromisoformat takes (zone-less is read as UTC) that the template refuses: its help asks for
# RFC 3339 with a zone, so a launch never depends on a guessed zone.
TIMES_ONLY_THE_BACKFILL_TAKES = ["2025-01-01", "2025-01-01T00:00:00", "2025-01-01 00:00:00Z"]


def _typed_parameters() -> dict[str, object]:
    types = {a.dest: a.type for a in _backfill_parser()._actions if a.type is not None}
    return {name: types[name] for name in parameters() if name in types}


def test_every_typed_parameter_has_samples():
    typed = _typed_parameters()
    assert set(typed) >= {"sink_retry_seconds", "file_max_lines", "since", "until"}
    for name, kind in typed.items():
        assert kind is TIMESTAMP or kind.__name__ in ("float", "int"), f"{name}: no samples for its type {kind}"


@pytest.mark.parametrize("name", sorted(_typed_parameters()))
def test_the_template_takes_a_value_exactly_when_the_backfill_does(name):
    """The regexes Dataflow checks a launch against and the backfill's own option types agree, value by value, so
    a value the backfill would refuse is refused before a launcher VM starts."""
    parameter = parameters()[name]
    if _typed_parameters()[name] is TIMESTAMP:
        for value in TIMES_BOTH_TAKE:
            assert _matches(parameter, value) and _backfill_takes(name, value), value
        for value in TIMES_NEITHER_TAKES:
            assert not _matches(parameter, value) and not _backfill_takes(name, value), value
        for value in TIMES_ONLY_THE_BACKFILL_TAKES:
            assert not _matches(parameter, value) and _backfill_takes(name, value), value
        return
    for value in NUMBERS:
        assert _matches(parameter, value) == _backfill_takes(name, value), f"{name}={value!r}"


FREE_TEXT = {  # options argparse takes as any text: the rule is the regex's, stated here
    "history_uri": (["s3://workbench-history/exports", "gs://b-1/x/y", "s3://bucket"],
                    # Dataflow's workers cannot read this machine's disk (the backfill launcher refuses it).
                    ["./history", "/tmp/history", "file:///tmp/h", "s3:/b/x", "https://s3.amazonaws.com/b/x", "s3://"]),
    "output_root": (["gs://my-bucket/output", "gs://b-1/x/y"], ["./output", "s3://b/x", "gs://"]),
    "aws_credentials_secret": (["projects/my-project/secrets/aws-history-reader/versions/3",
                                "projects/123456789/secrets/aws_keys/versions/latest"],
                               ["aws-history-reader", "projects/p/secrets/s", "projects/p/secrets/s/versions/0",
                                "projects/p/secrets/s/versions/", "AKIAIOSFODNN7EXAMPLE"]),
    "s3_region_name": (["us-east-1", "eu-west-3", "ap-southeast-2", "us-gov-west-1"],
                       ["US-EAST-1", "us-east", "useast1", ""]),
    "dataset": (["", "events", "my_events_2"], ["bad-name", "events.orders"]),
    "dead_letter_topic": (["", "backend-events-dead-letter", "projects/p/topics/dlq-topic"], ["a", "projects/p/x"]),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(FREE_TEXT))
def test_free_text_parameters_take_what_the_backfill_can_use(name):
    good, bad = FREE_TEXT[name]
    for value in good:
        assert _matches(parameters()[name], value), value
    for value in bad:
        assert not _matches(parameters()[name], value), value


def test_every_constrained_parameter_is_checked_here():
    checked = set(FREE_TEXT) | set(_typed_parameters())
    constrained = {name for name, p in parameters().items() if p.get("regexes")}
    assert constrained <= checked, constrained - checked
    assert {name for name, p in parameters().items() if not p.get("isOptional")} == {"history_uri", "output_root"}


# One valid value per parameter, passed as the Flex Template launcher passes parameters: --name=value.
VALID = {
    "history_uri": "s3://workbench-history/exports",
    "output_root": "gs://my-bucket/output",
    "dataset": "events",
    "bigquery_project": "my-warehouse",
    "dead_letter_topic": "backend-events-dead-letter",
    "since": "2025-01-01T00:00:00Z",
    "until": "2025-02-01T00:00:00Z",
    "backfill_run_id": "backfill-2025-01",
    "aws_credentials_secret": "projects/my-project/secrets/aws-history-reader/versions/3",
    "s3_region_name": "us-east-1",
    "sink_retry_seconds": "120",
    "file_max_lines": "5000",
}
DATAFLOW = ["--project=my-project", "--region=europe-west1", "--temp_location=gs://my-bucket/tmp", "--no_auth",
            "--dry_run=True"]  # fmt: skip


def _launch_flags() -> list[str]:
    assert set(VALID) == set(parameters()), "every parameter needs a sample value here"
    for name, value in VALID.items():
        assert _matches(parameters()[name], value), name
    return [f"--{name}={value}" for name, value in VALID.items()] + DATAFLOW


def test_the_launcher_translates_the_batch_job_with_every_parameter(monkeypatch):
    import runpy

    monkeypatch.setenv("NO_GCE_CHECK", "true")
    launch = runpy.run_path(str(LAUNCHER))["launch"]  # the file, not the module: the image runs the file
    result = launch(_launch_flags())
    job = result.job
    assert job.proto.type == 1, "JOB_TYPE_BATCH"
    names = {t.unique_name for t in job.proto_pipeline.components.transforms.values() if t.unique_name.count("/") <= 1}
    assert {"ReadHistory", "ParseAndValidate", "InWindow", "DropLoaded", "WriteToSinks", "WriteToSinks/WriteEventFiles",
            "WriteToSinks/LoadEventRows", "WriteToSinks/WriteDeadLetters"} <= names  # fmt: skip
    options = job.options.get_all_options()
    assert options["runner"] == "DataflowRunner", "the launcher's default when the template names no runner"
    assert options["history_uri"] == VALID["history_uri"] and options["s3_region_name"] == "us-east-1"
    assert options["since"] == "2025-01-01T00:00:00.000000Z"


def test_the_launcher_script_runs_as_the_image_runs_it(tmp_path):
    """python /template/backfill_main.py --name=value ...: its folder is sys.path[0], nothing else is set up."""

    def launch(*flags: str) -> subprocess.CompletedProcess:
        env = {"PATH": "/usr/bin:/bin", "NO_GCE_CHECK": "true", "HOME": str(tmp_path)}
        return subprocess.run([sys.executable, str(LAUNCHER), *flags], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=180)  # fmt: skip

    done = launch(*_launch_flags())
    assert done.returncode == 0, done.stderr[-3000:]
    without_history = [f for f in _launch_flags() if not f.startswith("--history_uri=")]
    done = launch(*without_history)
    assert done.returncode != 0
    assert "a backfill needs --history_uri" in done.stderr


def test_the_launcher_returns_once_submitted():
    """The Flex Template docs: the launcher must exit after run, never wait_until_finish (which would hold the
    launcher VM for the whole backfill)."""
    tree = ast.parse(LAUNCHER.read_text())
    attributes = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    assert "wait_until_finish" not in attributes
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "run"]
    assert [ast.unparse(k.value) for c in calls for k in c.keywords if k.arg == "default_runner"] == ["DATAFLOW"]
    imports = {(n.module, a.name) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert {("pipeline.backfill", "run"), ("pipeline.runners", "DATAFLOW")} <= imports


# --- The image: one Dockerfile, the stream's and the backfill's templates as stages on one `workers` stage ---


def stages() -> tuple[list[str], dict[str, list[str]], dict[str, str]]:
    """(instructions before the first FROM, each stage's instructions, each stage's FROM reference)."""
    lines, joined = [], ""
    for raw in (FLEX / "Dockerfile").read_text().splitlines():
        if raw.strip().startswith("#") or not raw.strip():
            continue
        joined += raw.rstrip("\\").strip() + " "
        if not raw.rstrip().endswith("\\"):
            lines.append(joined.strip())
            joined = ""
    preamble, body, bases, current = [], {}, {}, None
    for line in lines:
        if line.startswith("FROM "):
            words = line.split()
            current = words[3] if len(words) > 3 and words[2].upper() == "AS" else f"stage{len(body)}"
            body[current], bases[current] = [], words[1]
        elif current is None:
            preamble.append(line)
        else:
            body[current].append(line)
    return preamble, body, bases


def _env(instructions: list[str]) -> dict[str, str]:
    found = {}
    for line in instructions:
        if line.startswith("ENV "):
            name, _, value = line[4:].partition("=")
            found[name.strip()] = value.strip().strip('"')
    return found


def test_each_template_is_a_stage_on_one_workers_stage():
    _, body, bases = stages()
    assert list(body)[-1] == "stream", "a build without --target must make the stream's image, as before"
    launchers = {"stream": "main.py", "backfill": "backfill_main.py"}
    for stage, launcher in launchers.items():
        assert bases[stage] == "workers", stage
        # Only which launcher: the bases, the copies and the install are the workers stage's, written once.
        assert {line.split()[0] for line in body[stage]} <= {"ARG", "ENV"}, stage
        assert _env(body[stage]) == {"FLEX_TEMPLATE_PYTHON_PY_FILE": f"${{WORKDIR}}/{launcher}"}, stage
        copied = [line for line in body["workers"] if line.startswith("COPY ") and f"flex_template/{launcher}" in line]
        assert copied and copied[0].split()[-1] == "./", f"{launcher} is not copied into the workdir"
        assert (FLEX / launcher).is_file()
    assert "FLEX_TEMPLATE_PYTHON_PY_FILE" not in _env(body["workers"]), "a launcher chosen below the templates"
    external = [stage for stage, base in bases.items() if base not in body]
    assert external == ["launcher", "workers"], "an image pinned outside the shared stages"
    froms = [w.split("=", 1)[1] for lines in body.values() for line in lines for w in line.split() if "--from=" in w]
    assert {ref for ref in froms if ref not in body} == {"apache/beam_python3.11_sdk:2.77.0"}
    assert all(not ref.endswith(":latest") for ref in [*bases.values(), *froms])


def test_every_variable_a_stage_uses_is_in_its_scope():
    """Docker's rule ("Understand how ARG and FROM interact", Dockerfile reference): an ARG before the first FROM
    serves FROM lines only; a stage uses it after its own `ARG NAME`. Forgotten, ${WORKDIR} is empty and the
    launcher path becomes /main.py, which no build error reports."""
    preamble, body, bases = stages()
    global_args = {line.split()[1].split("=")[0] for line in preamble if line.startswith("ARG ")}
    for base in bases.values():
        assert set(re.findall(r"\$\{?(\w+)", base)) <= global_args, base
    inherited: dict[str, set[str]] = {}
    for stage, lines in body.items():
        known = set(inherited.get(bases[stage], set()))  # ENV carries into a stage built FROM this one; ARG does not
        for line in lines:
            used = set(re.findall(r"\$\{?(\w+)", line)) if not line.startswith(("ENTRYPOINT", "CMD")) else set()
            assert used <= known, f"{stage}: {line!r} uses {used - known}, not in scope"
            if line.startswith("ARG "):
                known.add(line.split()[1].split("=")[0])
            if line.startswith("ENV "):
                known.update(_env([line]))
        inherited[stage] = {name for name in known if name in _env(lines)} | inherited.get(bases[stage], set())


def test_the_wheel_carries_both_templates(tmp_path):
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns(".venv", ".git", "output", ".workbench", "build", "dist", "*.egg-info",
                                    "__pycache__", ".pytest_cache", ".ruff_cache", "tests")  # fmt: skip
    shutil.copytree(ROOT, source, ignore=ignore)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "wheels"), str(source)], check=True, capture_output=True, timeout=300)  # fmt: skip
    [wheel] = (tmp_path / "wheels").glob("event_workbench-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("main.py", "metadata.json", "backfill_main.py", "backfill_metadata.json", "setup.py"):
        assert f"pipeline/flex_template/{name}" in names, name


def test_the_launcher_refuses_no_dead_letter_sink(monkeypatch):
    """Launched straight from gcloud, the template never passes through `workbench backfill`'s own refusal: the
    graph itself refuses to leave the dead letters nowhere (pipeline.dead_letters.WriteDeadLetters)."""
    import runpy

    monkeypatch.setenv("NO_GCE_CHECK", "true")
    launch = runpy.run_path(str(LAUNCHER))["launch"]
    flags = [f for f in _launch_flags() if not f.startswith(("--dataset=", "--dead_letter_topic="))]
    with pytest.raises(ValueError, match="dead letters nowhere"):
        launch([*flags, "--dataset=", "--dead_letter_topic="])
