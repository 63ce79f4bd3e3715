"""The backfill's stages one by one: whole backfills of a local history folder into a local tree (no S3, no
BigQuery: the file sink and its dedup alone; dead letters to the Pub/Sub emulator's topic). The load jobs have
tests/backfill/test_bigquery_load.py."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from eventmodel import resources as names
from eventmodel.validate import Accepted, validate
from generator.stream import DEAD_LETTER, EventStream, GeneratorConfig
from pipeline import core
from pipeline import metrics as M

PROJECT = "backfill-stages"


HISTORY = (datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 5, 1, tzinfo=UTC))  # events spread over two months


def valid_events(n: int, seed: int = 3) -> list[Accepted]:
    stream = EventStream(GeneratorConfig(seed=seed, history=HISTORY), run_id="stages")
    found = [validate(m.data) for m in stream.take(n * 3) if m.expected != DEAD_LETTER]
    return [v for v in found if isinstance(v, Accepted)][:n]


# ------------------------------------------------------------------------------- local folder -> local tree


def run_backfill(history_dir: Path, output: Path, *extra: str) -> dict[str, int]:
    from pipeline.backfill import run
    from workbench.pipeline_run.backfill_launcher import final_counts

    result = run(["--runner", "DirectRunner", "--project", PROJECT, "--history_uri", str(history_dir),
                  "--output_root", str(output), "--dataset", "", "--dead_letter_topic", names.DEAD_LETTER_TOPIC,
                  *extra])  # fmt: skip
    result.wait_until_finish()
    return final_counts(result)


def lines_under(root: Path) -> dict[str, list[dict]]:
    return {str(p.relative_to(root)): [orjson.loads(x) for x in p.read_bytes().splitlines()]
            for p in sorted(root.rglob("*.json"))}  # fmt: skip


@pytest.fixture
def dead_letter_topic(make_stack, request) -> str:
    """The Pub/Sub emulator's dead-letter topic: a backfill must leave its dead letters somewhere, and these runs
    have no BigQuery dataset (pipeline.dead_letters.require_a_dead_letter_sink)."""
    make_stack(request, "backfill-stages", bigquery=False, project=PROJECT)
    return names.DEAD_LETTER_TOPIC


@pytest.fixture
def history_dir(tmp_path: Path, dead_letter_topic: str) -> Path:
    folder = tmp_path / "history" / "20250101-000000-abcd"
    folder.mkdir(parents=True)
    bodies = [orjson.dumps(e.event) for e in valid_events(12, seed=21)]
    (folder / "part-00000.jsonl").write_bytes(b"\n".join(bodies[:8]) + b"\n" + bodies[0] + b"\n")  # one repeat
    (folder / "part-00001.json").write_bytes(b"[\n" + b",\n".join(bodies[8:]) + b"\n]\n")
    (folder / "_SUCCESS").write_bytes(b"")
    return tmp_path / "history"


def test_a_folder_backfill_writes_each_event_once_and_a_rerun_writes_nothing(history_dir, tmp_path):
    output = tmp_path / "out"
    counts = run_backfill(history_dir, output)
    assert counts[M.READ] == 13 and counts[M.HISTORY_DUPLICATES] == 1 and counts[M.HISTORY_OBJECTS] == 2
    written = lines_under(output)
    events = [line for lines in written.values() for line in lines]
    assert len(events) == 12 and len({e["event_id"] for e in events}) == 12
    assert all(e["attributes"]["run_id"] == "20250101-000000-abcd" and e["message_id"] is None for e in events)
    assert all(e["attributes"][names.ATTR_SOURCE_OBJECT].endswith((".jsonl", ".json")) for e in events)
    counts = run_backfill(history_dir, output)
    assert counts.get(M.HISTORY_ALREADY_IN_GCS) == 12 and not counts.get(M.GCS_FILES)
    assert lines_under(output) == written


def test_names_never_collide_with_files_the_stream_wrote(history_dir, tmp_path):
    output = tmp_path / "out"
    first = next(iter(lines_under_history(history_dir)))
    event_type, minute = first["event_type"], core.minute_key(validate(orjson.dumps(first)).event_time)
    streamed = Path(core.file_path(str(output), event_type, minute, 0))
    streamed.parent.mkdir(parents=True)
    streamed.write_bytes(b'{"event_id": "streamed", "event": {"not": "this history"}}\n')
    run_backfill(history_dir, output)
    assert streamed.read_bytes() == b'{"event_id": "streamed", "event": {"not": "this history"}}\n'
    beside = Path(core.file_path(str(output), event_type, minute, 1))
    assert beside.exists(), sorted(p.name for p in streamed.parent.iterdir())


def lines_under_history(history_dir: Path) -> list[dict]:
    body = next(history_dir.rglob("part-00000.jsonl")).read_bytes()
    return [orjson.loads(line) for line in body.splitlines()]


def test_since_and_until_keep_only_events_in_their_window(history_dir, tmp_path):
    times = sorted(validate(orjson.dumps(e)).event_time for e in lines_under_history(history_dir))
    middle = times[len(times) // 2].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    output = tmp_path / "out"
    counts = run_backfill(history_dir, output, "--since", middle)
    kept = [line for lines in lines_under(output).values() for line in lines]
    outside, repeats = counts[M.HISTORY_OUTSIDE_WINDOW], counts.get(M.HISTORY_DUPLICATES, 0)
    assert kept and outside > 0 and outside + repeats + len(kept) == 13  # every record is one of the three
    assert all(validate(orjson.dumps(e["event"])).event_time.strftime("%Y-%m-%dT%H:%M:%S.%fZ") >= middle
               for e in kept)  # fmt: skip


def test_a_months_files_are_listed_then_read_one_element_each(history_dir, tmp_path):
    """The dedup reads what the GCS tree holds file by file (an element each, spread by a Reshuffle), not a whole
    month inside one element."""
    from pipeline.history_dedup import ListMonthFilesFn, ReadFileKeysFn

    output = tmp_path / "out"
    run_backfill(history_dir, output)
    month = next(p for p in sorted(output.glob("*/*/*")) if p.is_dir())  # TYPE/YYYY/MM
    event_type, year, number = month.relative_to(output).parts
    files = sorted(str(p) for p in month.rglob("*.json"))
    listed = list(ListMonthFilesFn(str(output)).process((event_type, f"{year}-{number}")))
    assert sorted(path for _, path in listed) == files and {t for t, _ in listed} == {event_type}
    for _, path in listed:
        keys = [k for k, _ in ReadFileKeysFn().process((event_type, path))]
        assert keys == [line["event_id"] for line in lines_of(Path(path))]


def lines_of(path: Path) -> list[dict]:
    return [orjson.loads(x) for x in path.read_bytes().splitlines()]


def test_counters_are_mirrored_in_process_while_a_run_asks_for_it():
    live = M.LiveCounts()
    M.counter("probe").inc(2)  # before: not mirrored
    M.mirror_counters(live)
    try:
        M.counter("probe").inc(3)
    finally:
        M.mirror_counters(None)
    M.counter("probe").inc(5)  # after: not mirrored
    assert live.snapshot() == {"probe": 3}


def test_aws_credentials_from_a_secret_payload():
    from pipeline.aws_credentials import credentials_from

    assert credentials_from(b'{"aws_access_key_id": "A", "aws_secret_access_key": "S"}') == {
        "AWS_ACCESS_KEY_ID": "A", "AWS_SECRET_ACCESS_KEY": "S"}  # fmt: skip
    assert credentials_from(b'{"aws_access_key_id": "A", "aws_secret_access_key": "S", "aws_session_token": "T"}')[
        "AWS_SESSION_TOKEN"] == "T"  # fmt: skip
    with pytest.raises(ValueError, match="lacks aws_secret_access_key"):
        credentials_from(b'{"aws_access_key_id": "A"}')
    with pytest.raises(ValueError, match="not JSON"):
        credentials_from(b"AKIA...:secret")


def test_the_summary_shows_load_retries_and_rows_not_loaded_when_there_were_any():
    from workbench.backfill_view import figures, summary

    quiet = {M.READ: 10, M.BIGQUERY_LOAD_JOBS: 2}
    assert figures(quiet)["load retries"] == 0
    assert "load retries" not in _summary_text(summary(quiet))
    throttled = {**quiet, M.BIGQUERY_RETRIES: 3, M.BIGQUERY_FAILED: 4}
    assert (figures(throttled)["load retries"], figures(throttled)["rows not loaded (dead letters)"]) == (3, 4)
    text = _summary_text(summary(throttled))
    assert "load retries" in text and "rows not loaded (dead letters)" in text


def _summary_text(tables) -> str:
    from rich.console import Console

    console = Console(width=200, record=True)
    for table in tables:
        console.print(table)
    return console.export_text()
