"""What ships to Dataflow: the import closure of the pipeline, the Flex Template files, and their versions."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import apache_beam
import pytest
import setuptools

from pipeline.options import EventPipelineOptions

ROOT = Path(__file__).resolve().parents[2]
FLEX = ROOT / "pipeline" / "flex_template"
FORBIDDEN = ("faker", "locust", "rich", "click", "workbench", "generator")
# The project's own packages that ship to Dataflow's workers (pipeline/flex_template/setup.py, Dockerfile).
WORKER_PACKAGES = ["endpoints", "eventmodel", "pipeline"]
FIRST_PARTY = [p.removesuffix("*") for p in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
               ["packages"]["find"]["include"]]  # fmt: skip


def _pipeline_import_closure() -> set[str]:
    """Every module loaded by importing each module of pipeline/, in a fresh interpreter."""
    code = (
        "import importlib, pkgutil, sys, pipeline;"
        "[importlib.import_module(m.name) for m in pkgutil.walk_packages(pipeline.__path__, 'pipeline.')];"
        "print(','.join(sorted(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return set(result.stdout.strip().split(","))


def test_the_pipeline_imports_nothing_workers_do_not_have():
    loaded = _pipeline_import_closure()
    assert sorted(m for m in loaded if m.split(".")[0] in FORBIDDEN) == []
    # Of the project's own packages, exactly those the workers get: the service clients (endpoints) included, since
    # the sinks' DoFns make their BigQuery and S3 clients on the workers.
    ours = {m.split(".")[0] for m in loaded} & set(FIRST_PARTY)
    assert sorted(ours) == WORKER_PACKAGES


def metadata() -> dict:
    return json.loads((FLEX / "metadata.json").read_text())


def test_every_template_parameter_is_a_pipeline_option():
    known = set(EventPipelineOptions([]).get_all_options())
    names = [p["name"] for p in metadata()["parameters"]]
    assert len(names) == len(set(names))
    assert set(names) <= known, set(names) - known
    ours = {k for k in EventPipelineOptions([]).view_as(EventPipelineOptions)._visible_option_list()}
    local_only = {"bigquery_emulator_host", "dedup_journal"}  # the emulator, and the DirectRunner's state file
    assert ours - set(names) <= local_only, "every option but the local-only ones is a parameter"


@pytest.mark.parametrize(
    ("name", "good", "bad"),
    [
        ("output_root", ["gs://my-bucket/output", "gs://b-1/x/y"], ["./output", "s3://b/x", "gs://"]),
        ("subscription", ["backend-events-topic-sub", "projects/p/subscriptions/backend-events-topic-sub"], ["a"]),
        ("file_flush_seconds", ["5", "0.5"], ["-1", "five"]),
    ],
)
def test_parameter_regexes_accept_what_the_pipeline_takes(name, good, bad):
    (parameter,) = [p for p in metadata()["parameters"] if p["name"] == name]
    patterns = [re.compile(r) for r in parameter["regexes"]]
    for value in good:
        assert all(p.search(value) for p in patterns), value
    for value in bad:
        assert not all(p.search(value) for p in patterns), value


NUMBERS = ["-1", "0", "0.0", "0.5", "1", "5", "600", "2.50", "five", "", "1e3"]
SAMPLES = {
    "sink_retry_seconds": NUMBERS,
    "file_flush_seconds": NUMBERS,
    "dedup_ttl_seconds": NUMBERS,
    "file_max_lines": NUMBERS,
    "dedup_shards": NUMBERS,
    "dataset": ["", "events", "my_events_2", "bad-name"],
    "dead_letter_topic": ["", "backend-events-dead-letter", "projects/p/topics/dlq-topic", "a"],
}


def _pipeline_takes(name: str, value: str) -> bool:
    import argparse

    parser = argparse.ArgumentParser()
    EventPipelineOptions._add_argparse_args(parser)
    try:
        parser.parse_args([f"--{name}={value}"])
    except SystemExit:
        return False
    return True


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_the_template_accepts_a_value_exactly_when_the_pipeline_does(name, capsys):
    """The regexes Dataflow checks a launch against and the pipeline's own option types agree, value by value:
    what the pipeline refuses (a TTL of 0 would divide by zero, 0 lines per file never flush) the template
    refuses too, and the empty string options.py documents as "disabled" passes both."""
    (parameter,) = [p for p in metadata()["parameters"] if p["name"] == name]
    patterns = [re.compile(r) for r in parameter["regexes"]]
    for value in SAMPLES[name]:
        template = all(p.search(value) for p in patterns)
        if name in ("dataset", "dead_letter_topic"):  # free text to argparse; the rule is the regex's
            assert template == (value == "" or value in SAMPLES[name][1:3]), value
        else:
            assert template == _pipeline_takes(name, value), f"{name}={value!r}: template {template}"
    capsys.readouterr()  # argparse's usage messages


def test_a_value_the_pipeline_refuses_is_named_with_its_rule(capsys):
    assert not _pipeline_takes("dedup_ttl_seconds", "0")
    assert "--dedup_ttl_seconds: must be more than 0, got 0" in capsys.readouterr().err
    assert not _pipeline_takes("file_max_lines", "0")
    assert "--file_max_lines: must be at least 1, got 0" in capsys.readouterr().err


def test_the_template_is_streaming_and_its_modes_are_consistent():
    data = metadata()
    assert data["streaming"] is True
    if "defaultStreamingMode" in data:  # only valid when both modes are supported
        assert data["supportsAtLeastOnce"] and data["supportsExactlyOnce"]


def test_dockerfile_copies_what_exists_and_runs_the_flex_entry_point():
    text = (FLEX / "Dockerfile").read_text()
    for line in text.splitlines():
        if line.startswith("COPY") and "--from" not in line:
            *sources, _destination = line.split()[1:]
            for source in sources:
                assert (ROOT / source).exists(), source
    assert 'FLEX_TEMPLATE_PYTHON_PY_FILE="${WORKDIR}/main.py"' in text
    stages = {line.split()[-1] for line in text.splitlines() if line.startswith("FROM ") and " AS " in line}
    bases = [line.split()[1] for line in text.splitlines() if line.startswith("FROM ")]
    bases = [image for image in bases if image not in stages]  # `FROM workers AS ...`: a stage, not an image
    bases += [word.split("=", 1)[1] for word in text.split() if word.startswith("--from=") and ":" in word]
    for image in bases:  # every base pinned: a version, a dated tag chosen at build time, or a digest
        assert ":" in image and not image.endswith((":latest", ":3.11-slim")), image
    assert "COPY pipeline/flex_template/setup.py pipeline/flex_template/main.py ./" in text
    for package in WORKER_PACKAGES:  # what setup.py packages must be in the image to be installed
        assert f"COPY {package} ./{package}" in text, package


def test_beam_is_the_same_version_everywhere():
    version = apache_beam.__version__
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pinned = [d for d in pyproject["project"]["dependencies"] if d.startswith("apache-beam[")]
    assert pinned and all(d.endswith(f"]=={version}") for d in pinned), pinned
    # The workers' image has the aws extra too: the backfill reads s3:// on them (docs/backfill.md).
    assert pinned == [f"apache-beam[gcp,aws]=={version}"], pinned
    assert f"apache-beam[gcp,aws]=={version}" in (FLEX / "setup.py").read_text()
    assert f"beam_python3.11_sdk:{version}" in (FLEX / "Dockerfile").read_text()


def test_the_worker_package_holds_the_clients_the_event_model_and_the_pipeline_only():
    include = [name for package in WORKER_PACKAGES for name in (package, f"{package}.*")]
    found = setuptools.find_packages(where=str(ROOT), include=include)
    assert sorted({name.split(".")[0] for name in found}) == WORKER_PACKAGES
    assert f"include={include!r}".replace("'", '"') in " ".join((FLEX / "setup.py").read_text().split())


def test_the_flex_entry_point_defaults_to_dataflow():
    text = (FLEX / "main.py").read_text()
    assert "from pipeline.runners import DATAFLOW" in text and "run(default_runner=DATAFLOW)" in text
