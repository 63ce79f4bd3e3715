"""Reconcile on the real local stack: a clean run matches, and every way of breaking it is caught and named.

One run (malformed events, duplicates, two attribute-less "foreign" messages) is published to this project's
Pub/Sub emulator and drained by the pipeline into a GCS tree on disk, the BigQuery emulator and the dead-letter
topic. Each test then breaks one thing (on a copy of the tree, or in a table it restores afterwards) and
checks that `reconcile` exits 1 and names the event.
"""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path

import orjson
import pytest
from stack_support import LocalStack

from endpoints import Endpoints
from eventmodel import resources as names
from eventmodel import rows
from generator.stream import DEAD_LETTER, GeneratorConfig
from publisher.manifest import iter_events
from publisher.run import PublishPlan, publish
from publisher.sinks import PubSubTarget
from reconcile.errors import ReconcileError
from reconcile.run import ReconcileTarget, reconcile
from workbench.cli import main

pytestmark = pytest.mark.integration

RUN = "reconcile-it-run"


class Stack:
    """The module's LocalStack (tests/conftest.py's `make_stack`) with what the tests do to it."""

    def __init__(self, resources: LocalStack) -> None:
        self.project = resources.project
        self.pubsub = resources.pubsub
        self.bigquery = resources.bigquery_emulator
        self.home = resources.home
        self.output = resources.output
        self.client = resources.bigquery_client()

    def target(self, output: Path | None = None, **overrides) -> ReconcileTarget:
        base = ReconcileTarget(
            output_root=str(output or self.output),
            project=self.project,
            dataset=names.DATASET,
            endpoints=Endpoints(bigquery=self.bigquery.endpoint, pubsub=self.pubsub),
            allow_foreign=True,
        )
        return ReconcileTarget(**{**base.__dict__, **overrides})

    def table(self, name: str) -> str:
        return f"`{self.project}.{names.DATASET}.{name}`"

    def sql(self, statement: str) -> list:
        return list(self.client.query(statement).result())

    def run_pipeline(self) -> None:
        from workbench.pipeline_run.stream_launcher import LocalSettings, run

        args = ["--project", self.project, "--output_root", str(self.output), "--dataset", names.DATASET,
                "--bigquery_emulator_host", self.bigquery.endpoint, "--file_flush_seconds", "1"]  # fmt: skip
        assert run(args, LocalSettings(stop_when_idle=3)).state == "DONE"


def publish_bare(stack: Stack, bodies: list[bytes], attributes: dict[str, str] | None = None) -> list[str]:
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    topic = f"projects/{stack.project}/topics/{names.TOPIC}"
    try:
        return [publisher.publish(topic, body, **(attributes or {})).result(timeout=10) for body in bodies]
    finally:
        publisher.stop()


@pytest.fixture(scope="module")
def stack(make_stack, request):
    it = Stack(make_stack(request, "reconcile-it"))
    plan = PublishPlan(
        run_id=RUN,
        target=PubSubTarget(it.project, names.TOPIC, it.pubsub),
        rate=3000,
        count=1500,
        generator=GeneratorConfig(seed=31, malformed_rate=0.08, duplicate_rate=0.03, late_rate=0.05),
    )
    assert publish(plan).status == "completed"
    # Production producers set no attributes: two such events during the run are foreign to every manifest.
    valid = [orjson.loads(b) for b in _valid_bodies(2)]
    it.foreign_ids = publish_bare(it, [orjson.dumps(v) for v in valid])
    it.run_pipeline()
    return it


def _valid_bodies(count: int) -> list[bytes]:
    from generator.stream import EventStream

    stream = EventStream(GeneratorConfig(seed=99), run_id="bare")
    return [m.data for m in stream.take(20) if m.expected != DEAD_LETTER][:count]


def sent_rows() -> list[dict]:
    return list(iter_events(RUN))


def copy_tree(stack: Stack, tmp_path: Path) -> Path:
    copy = tmp_path / "output"
    shutil.copytree(stack.output, copy)
    return copy


def files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.json"))


def problems_of(report) -> dict[str, str]:
    return {p["event_id"]: p["problem"] for p in report.problems}


def ids_in(path: Path) -> list[str]:
    return [orjson.loads(line)["event_id"] for line in path.read_bytes().splitlines() if line.strip()]


# ------------------------------------------------------------------------------------------------ clean


def test_a_clean_run_reconciles_and_twice_gives_the_same_answer(stack):
    first = reconcile(RUN, stack.target())
    assert first.exit_code == 0, first.headline()
    sent = sent_rows()
    unique_valid = {r["event_id"] for r in sent if r["expected"] != DEAD_LETTER}
    unique_dead = {r["event_id"] for r in sent if r["expected"] == DEAD_LETTER}
    assert sum(r["expected"] for r in first.by_type) == len(unique_valid)
    assert sum(r["in_gcs"] for r in first.by_type) == len(unique_valid)
    assert sum(r["sent"] for r in first.by_kind) == len(unique_dead) > 80
    assert first.sizes["dead_letter_topic"] >= len(unique_dead)
    assert {r["sink"] for r in first.latency} >= {"gcs", "bigquery", "dead_letter_table"}
    second = reconcile(RUN, stack.target())
    assert second.exit_code == 0
    assert (second.by_type, second.by_kind, second.sizes) == (first.by_type, first.by_kind, first.sizes)


def test_the_comparison_inside_bigquery_gives_the_same_verdicts(stack, tmp_path):
    """The BigQuery engine (scratch tables on the emulator; the event tables read where they are)."""
    local = reconcile(RUN, stack.target(engine="duckdb"))
    inside = reconcile(RUN, stack.target(engine="bigquery"))
    assert inside.engine == "bigquery" and inside.exit_code == 0, inside.headline()
    ints = lambda rows_: [{k: (int(v or 0) if k not in ("event_type", "kind", "reason", "other_codes") else v)  # noqa: E731
                           for k, v in r.items()} for r in rows_]  # fmt: skip
    assert ints(inside.by_type) == ints(local.by_type)
    assert sorted(ints(inside.by_kind), key=str) == sorted(ints(local.by_kind), key=str)
    assert sorted(r["message_id"] for r in inside.foreign) == sorted(r["message_id"] for r in local.foreign)
    tree = copy_tree(stack, tmp_path)
    victim = next(p for p in files(tree) if "/user_activity/" in str(p))
    lines = victim.read_bytes().splitlines(keepends=True)
    line = orjson.loads(lines[-1])
    line["event"]["metadata"]["platform"] = "tablet" if line["event"]["metadata"]["platform"] != "tablet" else "web"
    victim.write_bytes(b"".join([*lines[:-1], orjson.dumps(line) + b"\n", b"{not json\n"]))
    broken = reconcile(RUN, stack.target(tree, engine="bigquery"))
    assert problems_of(broken) == {line["event_id"]: "altered"}
    left = stack.sql(f"SELECT table_name FROM `{stack.project}.{names.DATASET}_reconcile.INFORMATION_SCHEMA.TABLES`")
    assert not left  # every scratch table dropped


def test_foreign_events_are_reported_by_message_id_and_fail_unless_allowed(stack):
    report = reconcile(RUN, stack.target(allow_foreign=False))
    assert report.exit_code == 1
    assert sorted({r["message_id"] for r in report.foreign}) == sorted(stack.foreign_ids)
    assert not report.problems and not report.unexpected


# ---------------------------------------------------------------------------------------------- breakage


def test_a_deleted_file_is_missing_from_gcs(stack, tmp_path):
    tree = copy_tree(stack, tmp_path)
    victim = files(tree)[0]
    gone = set(ids_in(victim))
    victim.unlink()
    report = reconcile(RUN, stack.target(tree))
    assert report.exit_code == 1
    assert problems_of(report) == dict.fromkeys(gone & set(_own_ids()), "missing_in_gcs")


def test_a_line_copied_from_another_message_is_duplicated(stack, tmp_path):
    tree = copy_tree(stack, tmp_path)
    victim = files(tree)[0]
    line = orjson.loads(victim.read_bytes().splitlines()[0])
    copy = orjson.dumps({**line, "message_id": "republished-" + line["message_id"]}) + b"\n"
    victim.write_bytes(victim.read_bytes() + copy)
    report = reconcile(RUN, stack.target(tree))
    assert report.exit_code == 1
    assert problems_of(report) == {line["event_id"]: "duplicated"}


def test_the_same_message_written_twice_is_a_redelivery_reported_not_failed(stack, tmp_path):
    # At-least-once: a message redelivered after a crash is written again as itself.
    tree = copy_tree(stack, tmp_path)
    victim = files(tree)[0]
    first_line = victim.read_bytes().splitlines(keepends=True)[0]
    victim.write_bytes(victim.read_bytes() + first_line)
    report = reconcile(RUN, stack.target(tree))
    assert report.exit_code == 0, problems_of(report)
    event_id = orjson.loads(first_line)["event_id"]
    assert [(r["event_id"], r["gcs_copies"]) for r in report.raw_duplicates] == [(event_id, 2)]


def test_one_changed_field_is_altered(stack, tmp_path):
    tree = copy_tree(stack, tmp_path)
    victim = next(p for p in files(tree) if "/order/" in str(p))
    lines = victim.read_bytes().splitlines(keepends=True)
    line = orjson.loads(lines[0])
    line["event"]["items"][0]["quantity"] += 1
    lines[0] = orjson.dumps(line) + b"\n"
    victim.write_bytes(b"".join(lines))
    report = reconcile(RUN, stack.target(tree))
    assert report.exit_code == 1
    assert problems_of(report) == {line["event_id"]: "altered"}
    assert report.problems[0]["gcs_location"] == str(victim)


@pytest.mark.parametrize("renamed", [False, True], ids=["name-of-old-minute", "renamed-to-fit-the-folder"])
def test_a_file_moved_to_another_minute_is_misplaced(stack, tmp_path, renamed):
    """Caught by the file name (it names the old minute) and, renamed to fit, by the events' own time."""
    tree = copy_tree(stack, tmp_path)
    victim = files(tree)[0]
    moved_ids = set(ids_in(victim))
    minute = victim.parent
    new_minute = f"{(int(minute.name) + 1) % 60:02d}"
    other = minute.parent / new_minute
    other.mkdir(exist_ok=True)
    name = victim.name
    if renamed:  # <type>_<YYYYMMDDHH><mm><NNNN>.json: the mm moves with the folder, a fresh sequence
        stamp = name.rsplit("_", 1)[1]
        name = f"{name.rsplit('_', 1)[0]}_{stamp[:10]}{new_minute}9999.json"
    victim.rename(other / name)
    report = reconcile(RUN, stack.target(tree))
    assert report.exit_code == 1
    assert problems_of(report) == dict.fromkeys(moved_ids & set(_own_ids()), "misplaced")


def test_a_file_in_another_type_folder_is_misplaced(stack, tmp_path):
    tree = copy_tree(stack, tmp_path)
    victim = next(p for p in files(tree) if "/inventory/" in str(p))
    moved_ids = set(ids_in(victim))
    target = Path(str(victim.parent).replace("/inventory/", "/order/"))
    target.mkdir(parents=True, exist_ok=True)
    victim.rename(target / victim.name)
    report = reconcile(RUN, stack.target(tree))
    assert report.exit_code == 1
    assert set(problems_of(report).values()) == {"misplaced"}
    assert set(problems_of(report)) == moved_ids & set(_own_ids())


def test_a_gs_tree_is_read_through_the_pipelines_filesystem(stack, gcs_emulator):
    """The same run copied into the GCS emulator: it reconciles from gs://, and a deleted object is caught."""
    import os

    from apache_beam.io.filesystems import FileSystems

    root = f"{gcs_emulator}/output"
    for path in files(stack.output):
        with FileSystems.create(f"{root}/{path.relative_to(stack.output)}") as sink:
            sink.write(path.read_bytes())
    gcs = os.environ["STORAGE_EMULATOR_HOST"]
    target = stack.target(endpoints=Endpoints(bigquery=stack.bigquery.endpoint, pubsub=stack.pubsub, storage=gcs))
    target = ReconcileTarget(**{**target.__dict__, "output_root": root})
    report = reconcile(RUN, target)
    assert report.exit_code == 0, report.headline()
    assert report.sizes["files"] == len(files(stack.output))
    victim = files(stack.output)[0]
    FileSystems.delete([f"{root}/{victim.relative_to(stack.output)}"])
    broken = reconcile(RUN, target)
    assert problems_of(broken) == dict.fromkeys(set(ids_in(victim)) & set(_own_ids()), "missing_in_gcs")
    assert broken.problems[0]["bigquery_location"]  # still seen in BigQuery


def _own_ids() -> list[str]:
    return [r["event_id"] for r in sent_rows()]


def _delete_and_restore(stack: Stack, table: str, event_id: str):
    backup = f"{table}_backup_{uuid.uuid4().hex[:8]}"
    stack.sql(f"CREATE TABLE {stack.table(backup)} AS SELECT * FROM {stack.table(table)} WHERE event_id = '{event_id}'")
    stack.sql(f"DELETE FROM {stack.table(table)} WHERE event_id = '{event_id}'")

    def restore() -> None:
        stack.sql(f"INSERT INTO {stack.table(table)} SELECT * FROM {stack.table(backup)}")
        stack.sql(f"DROP TABLE {stack.table(backup)}")

    return restore


def test_a_deleted_bigquery_row_is_missing_from_bigquery(stack):
    victim = next(r["event_id"] for r in sent_rows() if r["expected"] == "order")
    restore = _delete_and_restore(stack, rows.table_of("order"), victim)
    try:
        report = reconcile(RUN, stack.target())
    finally:
        restore()
    assert report.exit_code == 1
    assert problems_of(report) == {victim: "missing_in_bigquery"}
    assert report.problems[0]["gcs_location"]  # where it was last seen


def test_a_dropped_dead_letter_is_missing_from_the_dead_letter_table(stack):
    victim = next(r for r in sent_rows() if r["expected"] == DEAD_LETTER)
    restore = _delete_and_restore(stack, rows.DEAD_LETTER_TABLE, victim["event_id"])
    try:
        report = reconcile(RUN, stack.target())
    finally:
        restore()
    assert report.exit_code == 1
    assert problems_of(report) == {victim["event_id"]: "missing_in_dead_letter_table"}
    kind = next(k for k in report.by_kind if k["kind"] == victim["kind"])
    assert kind["missing"] == 1


def test_a_topic_the_subscription_cannot_cover_is_left_out_with_a_note(stack):
    """A reconcile subscription created after the run began (recreated, or first made by a reconcile on GCP) never
    received the run's first dead letters: the verdict leaves the topic out and says why, never 'missing'."""
    from google.protobuf import field_mask_pb2

    from endpoints.pubsub import subscriber_client
    from reconcile.sources import CREATED_LABEL

    subscriber = subscriber_client(stack.pubsub)
    path = subscriber.subscription_path(stack.project, names.DEAD_LETTER_RECONCILE_SUBSCRIPTION)

    def label(created: str) -> None:
        subscription = subscriber.get_subscription(subscription=path, timeout=10)
        labels = {**dict(subscription.labels), CREATED_LABEL: created}
        update = {"name": path, "topic": subscription.topic, "labels": labels}
        subscriber.update_subscription(
            request={"subscription": update, "update_mask": field_mask_pb2.FieldMask(paths=["labels"])}, timeout=10
        )

    original = dict(subscriber.get_subscription(subscription=path, timeout=10).labels)[CREATED_LABEL]
    # The module's run began seconds ago: a subscription made ten minutes after it (past the 2-minute tolerance).
    label(str(int(time.time()) + 600))
    try:
        report = reconcile(RUN, stack.target())
    finally:
        label(original)
        subscriber.close()
    assert report.exit_code == 0, report.headline()
    assert report.checked["dead_letter_topic"] is False
    assert not any(p["problem"] == "missing_in_dead_letter_topic" for p in report.problems)
    assert any(n.startswith("dead-letter topic not compared:") for n in report.notes), report.notes


def test_wait_polls_until_the_sinks_catch_up(stack, tmp_path):
    """--wait: a file that lands while reconcile waits turns the verdict to matched, seen by a later poll."""
    import threading

    from reconcile.run import reconcile_waiting

    tree = copy_tree(stack, tmp_path)
    victim = files(tree)[0]
    body = victim.read_bytes()
    victim.unlink()
    threading.Timer(4.0, victim.write_bytes, args=(body,)).start()
    polls = []
    report = reconcile_waiting(RUN, stack.target(tree), wait_s=60, on_poll=lambda r, left, what: polls.append(r))
    assert report.exit_code == 0
    assert polls[0].exit_code == 1 and len(polls) >= 2


def test_wait_stops_once_nothing_changes(stack, tmp_path, monkeypatch):
    import time

    from reconcile import run as run_module

    monkeypatch.setattr(run_module, "STABLE_FOR_S", 3.0)
    tree = copy_tree(stack, tmp_path)
    files(tree)[0].unlink()
    began = time.monotonic()
    report = run_module.reconcile_waiting(RUN, stack.target(tree), wait_s=120)
    assert report.exit_code == 1 and time.monotonic() - began < 60
    assert "did not change" in report.notes[-1]


# --------------------------------------------------------------------------------------- exit statuses


def test_the_cli_exits_0_and_writes_the_reports(stack, tmp_path, monkeypatch, capsys):
    _point_cli_at(stack, monkeypatch)
    json_path, html_path = tmp_path / "r.json", tmp_path / "r.html"
    with pytest.raises(SystemExit) as exit_:
        main(["reconcile", RUN, "--output-root", str(stack.output), "--project", stack.project, "--allow-foreign",
              "--json", str(json_path), "--html", str(html_path)])  # fmt: skip
    assert exit_.value.code == 0
    report = orjson.loads(json_path.read_bytes())
    assert report["verdict"] == "matched" and report["exit_code"] == 0
    assert "<svg" in html_path.read_text()
    unique = len({r["event_id"] for r in sent_rows()})
    sinks = "gcs, bigquery, dead_letter_table, dead_letter_topic"
    said = " ".join(capsys.readouterr().err.split())  # as one line, however the terminal wrapped it
    assert f"run {RUN}: all {unique:,} events accounted for ({sinks})" in said, said


def test_the_cli_exits_1_naming_the_event(stack, tmp_path, monkeypatch, capsys):
    _point_cli_at(stack, monkeypatch)
    tree = copy_tree(stack, tmp_path)
    victim = files(tree)[-1]
    lines = victim.read_bytes().splitlines(keepends=True)
    victim.write_bytes(b"".join(lines[1:]))
    with pytest.raises(SystemExit) as exit_:
        main(["reconcile", RUN, "--output-root", str(tree), "--project", stack.project, "--allow-foreign"])
    assert exit_.value.code == 1
    printed = capsys.readouterr()
    assert orjson.loads(lines[0])["event_id"] in printed.out
    assert "MISMATCH" in printed.err


def test_the_cli_exits_2_when_it_cannot_reconcile(stack, monkeypatch, capsys):
    _point_cli_at(stack, monkeypatch)
    with pytest.raises(SystemExit) as exit_:
        main(["reconcile", "no-such-run", "--project", stack.project])
    assert exit_.value.code == 2
    assert "workbench runs" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["reconcile", RUN, "--project", stack.project, "--output-root", "/nonexistent/tree"])
    assert exit_.value.code == 2
    for name in ("PUBSUB_EMULATOR_HOST", "BIGQUERY_EMULATOR_HOST"):  # the local project, and no stack up
        monkeypatch.delenv(name)
    with pytest.raises(SystemExit) as exit_:
        main(["reconcile", RUN, "--output-root", str(stack.output)])
    assert exit_.value.code == 2
    assert "the local stack is not running" in capsys.readouterr().err
    _point_cli_at(stack, monkeypatch)
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", "http://127.0.0.1:9")  # nothing listens on port 9
    with pytest.raises(SystemExit) as exit_:
        main(["reconcile", RUN, "--project", stack.project, "--output-root", str(stack.output)])
    assert exit_.value.code == 2
    assert "no BigQuery emulator answers" in capsys.readouterr().err


def test_a_running_run_or_one_stopped_with_messages_in_flight_cannot_be_reconciled(stack, tmp_path, monkeypatch):
    """A drained interrupted run can (tests/publisher/test_stop_signals.py reconciles one end to end); a run still
    publishing, or one whose forced stop left messages without an outcome, cannot."""
    from publisher.manifest import run_dir, this_process, write_manifest
    from reconcile.run import resolve_run

    manifest = orjson.loads((run_dir(RUN) / "manifest.json").read_bytes())
    in_flight = {**manifest["totals"], "published": manifest["totals"]["published"] - 3, "in_flight": 3}
    for status, changes, words in (
        ("running", {"publisher": this_process()}, "still publishing"),
        ("interrupted", {"totals": in_flight}, "interrupted with messages in flight: 3 of its"),
    ):
        run_id = f"{RUN}-{status}"
        write_manifest(run_id, {**manifest, "run_id": run_id, "status": status, **changes})
        shutil.copy(run_dir(RUN) / "events-0.csv", run_dir(run_id) / "events-0.csv")
        with pytest.raises(ReconcileError, match=words):
            reconcile(run_id, stack.target())
        shutil.rmtree(run_dir(run_id))
    drained = f"{RUN}-drained"
    write_manifest(drained, {**manifest, "run_id": drained, "status": "interrupted"})
    assert resolve_run(drained)["status"] == "interrupted"
    shutil.rmtree(run_dir(drained))


def _point_cli_at(stack: Stack, monkeypatch) -> None:
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", stack.pubsub)
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", stack.bigquery.endpoint)
    monkeypatch.setenv("WORKBENCH_HOME", str(stack.home))


# ------------------------------------------------------------------------- last: the run is changed for good


# ------------------------------------------------------------------------------------------ sink contracts


def _contract_file(tmp_path: Path, stack: Stack, keyless: bool = False, values: dict | None = None) -> str:
    """This project's pipeline described by a contract file of the user's kind: the built-in document, with the
    event ids taken out (so every event is found by its natural key) and conversions declared."""
    import yaml

    from reconcile.contract import default_document

    document = default_document(str(stack.output), names.DATASET)
    if keyless:
        document["gcs"]["metadata"].pop("event_id")
        for table in document["bigquery"]["tables"]:
            table["metadata"].pop("event_id")
    for table in document["bigquery"]["tables"]:
        for path, spec in (values or {}).get(table["type"], {}).items():
            table["columns"][path] = spec
    path = tmp_path / "ours.sinks.yaml"
    path.write_text(yaml.safe_dump(document))
    return str(path)


def test_which_field_was_altered_is_named_with_both_values(stack, tmp_path):
    tree = copy_tree(stack, tmp_path)
    victim = next(p for p in files(tree) if "/order/" in str(p))
    lines = victim.read_bytes().splitlines(keepends=True)
    line = orjson.loads(lines[0])
    before = line["event"]["items"][0]["quantity"]
    line["event"]["items"][0]["quantity"] = before + 1
    line["event"]["shipping_address"]["city"] = "Nowhere"
    lines[0] = orjson.dumps(line) + b"\n"
    victim.write_bytes(b"".join(lines))
    report = reconcile(RUN, stack.target(tree))
    assert problems_of(report) == {line["event_id"]: "altered"}
    found = {(r["sink"], r["field"]): (r["published"], r["held"]) for r in report.altered_fields}
    assert found == {
        ("gcs:order", "items[0].quantity"): (str(before), str(before + 1)),
        ("gcs:order", "shipping_address.city"): (_published(line["event_id"])["shipping_address"]["city"], "Nowhere"),
    }
    gcs = next(e for e in report.entries if e["entry"] == "gcs:order")
    assert gcs["altered"] == 1 and gcs["missing"] == 0


def _published(event_id: str) -> dict:
    row = next(r for r in sent_rows() if r["event_id"] == event_id)
    return orjson.loads(row["event"])


def test_a_pipeline_that_keeps_no_event_id_is_reconciled_by_natural_key(stack, tmp_path):
    contract = _contract_file(tmp_path, stack, keyless=True)
    report = reconcile(RUN, stack.target(sinks=contract))
    assert report.exit_code == 0, (report.headline(), report.problems[:5])
    clean = reconcile(RUN, stack.target())
    assert [(r["event_type"], r["ok"]) for r in report.by_type] == [(r["event_type"], r["ok"]) for r in clean.by_type]
    entries = {e["entry"]: e for e in report.entries}
    assert entries["bigquery:orders"]["missing"] == 0 and entries["bigquery:orders"]["held"] > 0
    inside = reconcile(RUN, stack.target(sinks=contract, engine="bigquery"))  # keys matched inside BigQuery too
    assert inside.engine == "bigquery" and inside.exit_code == 0, (inside.headline(), inside.problems[:5])
    # Broken: a row gone is found missing by key, as it is by id.
    victim = next(r["event_id"] for r in sent_rows() if r["expected"] == "order")
    restore = _delete_and_restore(stack, rows.table_of("order"), victim)
    try:
        broken = reconcile(RUN, stack.target(sinks=contract))
    finally:
        restore()
    assert problems_of(broken) == {victim: "missing_in_bigquery"}
    assert {e["entry"]: e["missing"] for e in broken.entries}["bigquery:orders"] == 1


def test_a_declared_tolerance_forgives_what_it_declares_and_no_more(stack, tmp_path):
    contract = _contract_file(
        tmp_path, stack, values={"order": {"total_amount": {"column": "total_amount", "tolerance": 0.1}}}
    )
    victim = next(r["event_id"] for r in sent_rows() if r["expected"] == "order")
    table = stack.table(rows.table_of("order"))
    backup = stack.sql(f"SELECT total_amount FROM {table} WHERE event_id = '{victim}'")[0][0]
    try:
        stack.sql(f"UPDATE {table} SET total_amount = total_amount + 0.01 WHERE event_id = '{victim}'")
        within = reconcile(RUN, stack.target(sinks=contract))
        strict = reconcile(RUN, stack.target())
        stack.sql(f"UPDATE {table} SET total_amount = total_amount + 1 WHERE event_id = '{victim}'")
        beyond = reconcile(RUN, stack.target(sinks=contract))
    finally:
        stack.sql(f"UPDATE {table} SET total_amount = {backup} WHERE event_id = '{victim}'")
    assert within.exit_code == 0, (within.headline(), within.unexpected[:3], within.foreign[:3])
    assert problems_of(strict) == {victim: "altered"}  # undeclared, a cent is a change
    assert problems_of(beyond) == {victim: "altered"}
    [diff] = [r for r in beyond.altered_fields if r["sink"] == "bigquery:orders"]
    assert diff["field"] == "total_amount" and diff["published"] != diff["held"]


# Last: it leaves a stray event of this run's id in the sinks for good.
def test_an_event_no_manifest_knows_is_unexpected(stack, tmp_path):
    stray = orjson.loads(_valid_bodies(3)[2])
    event_id = str(uuid.uuid4())
    publish_bare(stack, [orjson.dumps(stray)], {"event_id": event_id, "run_id": RUN, "event_type": stray["event_type"]})
    stack.run_pipeline()
    report = reconcile(RUN, stack.target())
    assert report.exit_code == 1
    assert {(r["sink"], r["event_id"]) for r in report.unexpected} == {("gcs", event_id), ("bigquery", event_id)}
    assert not report.problems
    # Found by natural key, the stray's rows carry this run's id and match no event it sent: unexpected too.
    keyless = reconcile(RUN, stack.target(sinks=_contract_file(tmp_path, stack, keyless=True)))
    assert keyless.exit_code == 1 and not keyless.problems
    assert {(r["sink"], r["event_id"]) for r in keyless.unexpected} == {("gcs", None), ("bigquery", None)}
