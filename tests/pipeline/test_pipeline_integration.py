"""The pipeline end to end on the real local stack, checked against the publisher's run manifest.

A run with malformed events, duplicates and late events is published to this project's Pub/Sub emulator, the
pipeline runs (DirectRunner, local reader) until idle, and then every sink is read back: the files and their
paths, the BigQuery rows (bqemulator), the dead-letter topic and the dead-letter table. Also here: the checks
that make wrong options fail fast, and the Dataflow dry run (offline translation of the streaming job).
"""

from __future__ import annotations

import collections
import os
import time

import orjson
import pytest
from pipeline_support import files_under
from pubsub_support import pull_all

from eventmodel import resources as names
from eventmodel import rows
from eventmodel.validate import parse_timestamp
from generator.stream import DEAD_LETTER, GeneratorConfig
from pipeline import core
from publisher.manifest import iter_events, payload_digest
from publisher.run import PublishPlan, publish
from publisher.sinks import PubSubTarget
from workbench.errors import WorkbenchError
from workbench.pipeline_run.stream_launcher import LocalSettings, run

pytestmark = pytest.mark.integration


def pipeline_args(stack, output_root: str) -> list[str]:
    return [
        "--project",
        stack.project,
        "--output_root",
        output_root,
        "--dataset",
        stack.dataset,
        "--bigquery_emulator_host",
        stack.bigquery,
        "--file_flush_seconds",
        "1",
    ]


def test_a_published_run_reaches_every_sink_as_the_manifest_says(stack, tmp_path, bigquery_emulator):
    run_id = "it-pipeline"
    plan = PublishPlan(
        run_id=run_id,
        target=PubSubTarget(stack.project, names.TOPIC, stack.pubsub),
        rate=3000,
        count=2500,
        generator=GeneratorConfig(seed=21, malformed_rate=0.08, duplicate_rate=0.06, late_rate=0.1),
    )
    assert publish(plan).status == "completed"
    # Two messages as production producers send them: no attributes at all (the message id identifies them).
    bare = [m for m in _valid_bodies(seed=22, count=2)]
    bare_ids = _publish_bare(stack, bare)

    output_root = str(tmp_path / "output")
    summary = run(pipeline_args(stack, output_root), LocalSettings(stop_when_idle=3))
    assert summary.state == "DONE"

    sent = list(iter_events(run_id))
    valid = {r["event_id"]: r for r in sent if r["expected"] != DEAD_LETTER}
    dead = {r["event_id"]: r for r in sent if r["expected"] == DEAD_LETTER}
    assert sum(r["duplicate"] == "1" for r in sent) > 50 and len(dead) > 100
    progress = summary.progress
    assert progress.read == len(sent) + len(bare)
    assert progress.dead_lettered == len(dead)
    assert progress.duplicates == len(sent) - len(valid) - len(dead)

    # Files: every valid event exactly once, in the folder of its own minute, with the bytes that were sent.
    lines = []
    for path in files_under(output_root):
        with open(path, "rb") as handle:
            for raw in handle:
                line = orjson.loads(raw)
                lines.append(line)
                event = line["event"]
                event_type = event["event_type"]
                moment = parse_timestamp(event[_time_field(event_type)])
                folder = core.minute_folder(output_root, event_type, core.minute_key(moment))
                assert os.path.dirname(path) == folder, (path, event)
                assert core.sequence_of(path, event_type, core.minute_key(moment)) is not None
    file_ids = collections.Counter(line["event_id"] for line in lines)
    assert file_ids == collections.Counter({**dict.fromkeys(valid, 1), **dict.fromkeys(bare_ids, 1)})
    for line in lines:
        if line["event_id"] in valid:
            assert payload_digest(orjson.dumps(line["event"])) == valid[line["event_id"]]["payload_digest"]
            assert line["attributes"]["run_id"] == run_id

    # BigQuery: one row per valid event in its type's table; dead letters in theirs.
    # tabledata.list, not a query: user_activity requires a partition filter of every query (strict mode, as BigQuery).
    client = bigquery_emulator.client()
    for event_type, table in rows.TABLES.items():
        found = [r["event_id"] for r in client.list_rows(f"{stack.project}.{stack.dataset}.{table}")]
        want = [i for i, r in valid.items() if r["expected"] == event_type]
        want += [i for i, (t, _) in bare_ids.items() if t == event_type]
        assert sorted(found) == sorted(want), table
    dead_rows = list(
        client.query(
            f"SELECT event_id, reason, stage FROM `{stack.project}.{stack.dataset}.{rows.DEAD_LETTER_TABLE}`"
        ).result()
    )
    assert sorted((r["event_id"], r["reason"]) for r in dead_rows) == sorted((i, r["reason"]) for i, r in dead.items())

    # The dead-letter topic: original bytes, original attributes, reason, source message id, stage.
    subscription = f"projects/{stack.project}/subscriptions/{names.DEAD_LETTER_SUBSCRIPTION}"
    letters = pull_all(subscription, stack.pubsub, expected=len(dead))
    assert len(letters) == len(dead)
    for letter in letters:
        attributes = dict(letter.attributes)
        row = dead[attributes[names.ATTR_EVENT_ID]]
        assert attributes[names.ATTR_DLQ_REASON] == row["reason"]
        assert attributes[names.ATTR_DLQ_SOURCE_MESSAGE_ID] == row["message_id"]
        assert attributes[names.ATTR_DLQ_STAGE] == core.STAGE_VALIDATE
        assert attributes[names.ATTR_DLQ_DETAIL]
        assert attributes[names.ATTR_RUN_ID] == run_id
        assert payload_digest(letter.data) == row["payload_digest"]


def _time_field(event_type: str) -> str:
    from eventmodel.schema import EVENT_TIME_FIELD

    return EVENT_TIME_FIELD[event_type]


def _valid_bodies(seed: int, count: int) -> list:
    from pipeline_support import generated

    return [m for m in generated(50, seed=seed) if m.expected != DEAD_LETTER][:count]


def _publish_bare(stack, messages) -> dict[str, tuple[str, str]]:
    """Publish bodies without attributes; returns message id -> (event type, body digest)."""
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    topic = f"projects/{stack.project}/topics/{names.TOPIC}"
    try:
        ids = [publisher.publish(topic, m.data).result(timeout=10) for m in messages]
    finally:
        publisher.stop()
    return {i: (m.expected, payload_digest(m.data)) for i, m in zip(ids, messages, strict=True)}


def test_a_missing_subscription_fails_fast_naming_the_fix(stack, tmp_path):
    started = time.monotonic()
    with pytest.raises(WorkbenchError) as raised:
        run([*pipeline_args(stack, str(tmp_path / "o")), "--subscription", "no-such-sub"])
    assert time.monotonic() - started < 15
    assert "no-such-sub" in raised.value.message and "does not exist" in raised.value.message
    assert "workbench up" in raised.value.fix


def test_an_unreachable_emulator_fails_fast(stack, tmp_path, monkeypatch):
    from workbench.localstack.ports import free_port

    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", f"127.0.0.1:{free_port()}")
    started = time.monotonic()
    with pytest.raises(WorkbenchError) as raised:
        run(pipeline_args(stack, str(tmp_path / "o")))
    assert time.monotonic() - started < 15
    assert "no Pub/Sub emulator answers" in raised.value.message
    assert "workbench up" in raised.value.fix


def test_an_unwritable_output_root_fails_fast(stack, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(WorkbenchError) as raised:
        run(pipeline_args(stack, str(blocker / "output")))
    assert "--output-root" in raised.value.message and "--output-root" in raised.value.fix


def test_missing_tables_fail_fast_naming_the_ddl_command(stack, tmp_path):
    args = pipeline_args(stack, str(tmp_path / "o"))
    args[args.index("--dataset") + 1] = "never_applied"
    with pytest.raises(WorkbenchError) as raised:
        run(args)
    assert "does not exist" in raised.value.message and "bq apply" in raised.value.fix


def test_the_dataflow_job_builds_and_translates_offline(monkeypatch):
    monkeypatch.delenv("PUBSUB_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    started = time.monotonic()
    summary = run(
        [
            "--runner",
            "DataflowRunner",
            "--project",
            "my-project",
            "--region",
            "europe-west1",
            "--temp_location",
            "gs://my-bucket/tmp",
            "--output_root",
            "gs://my-bucket/output",
            "--dry_run=True",
            "--no_auth",
        ]
    )
    assert time.monotonic() - started < 30
    assert summary.state == "DRY_RUN"
    job = summary.translated
    assert job.proto.type == 2, "JOB_TYPE_STREAMING"
    # The step names an update of a running job matches (docs/pipeline.md, "A new version"): the stages, then the
    # sink tail, one composite in the stream and the backfill alike (pipeline/sinks.py).
    names = {t.unique_name for t in job.proto_pipeline.components.transforms.values() if t.unique_name.count("/") <= 1}
    assert {
        "ReadEvents",
        "ParseAndValidate",
        "DeduplicateByEventId",
        "WriteToSinks",
        "WriteToSinks/WriteEventFiles",
        "WriteToSinks/WriteEventRows",
        "WriteToSinks/AllDeadLetters",
        "WriteToSinks/WriteDeadLetters",
    } <= names
    transforms = " ".join(t.spec.urn for t in job.proto_pipeline.components.transforms.values())
    assert "pubsub" in transforms.lower(), "the read is Dataflow's native Pub/Sub source"


def test_gcs_files_follow_the_tree_and_a_second_run_never_overwrites(gcs_emulator):
    import apache_beam as beam
    from apache_beam.io.filesystems import FileSystems
    from pipeline_support import as_pubsub, generated, stream_clock, streaming_options

    from pipeline.files import WriteEventFiles
    from pipeline.runners import local_runner
    from pipeline.validate import ParseAndValidate
    from workbench.pipeline_run.preflight import check_output_root

    root = f"{gcs_emulator}/output"
    check_output_root(root)  # the probe object is written and removed
    messages = generated(120, seed=41)
    for first in (0, 60):  # two runs (no shared state) over events of the same minutes
        with beam.Pipeline(runner=local_runner(), options=streaming_options()) as p:
            valid, _ = p | beam.Create(as_pubsub(messages[first : first + 60], start=first)) | ParseAndValidate()
            _ = valid | WriteEventFiles(root, clock=stream_clock)
    found = sorted(m.path for m in FileSystems.match([f"{root}/**"])[0].metadata_list)
    assert found, "files were written"
    per_minute = collections.defaultdict(list)
    for path in found:
        relative = path[len(root) + 1 :]
        event_type, year, month, day, hour, minute, name = relative.split("/")
        stamp = f"{year}{month}{day}{hour}{minute}"
        per_minute[(event_type, stamp)].append(core.sequence_of(name, event_type, stamp))
    assert all(sorted(seqs) == [0, 1] for seqs in per_minute.values()), per_minute
    lines = []
    for path in found:
        with FileSystems.open(path) as handle:
            lines += [orjson.loads(line) for line in handle.read().splitlines()]
    assert sorted(line["message_id"] for line in lines) == sorted(f"m{i}" for i in range(120))
