"""A local backfill leaves nothing in the system temp folder (issue 23, item 10).

Each local backfill used to leave a `beam-temp*` folder there: Beam's DirectRunner first tried Prism, whose job
server makes that folder before its download fails offline, and nothing removed it (pipeline/runners.py). The
launcher now runs on pipeline.runners.local_runner; this test points the temp folder at its own and counts.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import orjson

from eventmodel import resources as names
from eventmodel.validate import Accepted, validate
from generator.stream import DEAD_LETTER, EventStream, GeneratorConfig
from pipeline import metrics as M

PROJECT = "backfill-leftovers"


def test_a_local_backfill_leaves_no_beam_temp_folder(make_stack, request, monkeypatch, tmp_path: Path):
    from workbench.pipeline_run.backfill_launcher import backfill

    stack = make_stack(request, PROJECT, bigquery=False)  # the dead letters' topic (and PUBSUB_EMULATOR_HOST)
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))  # what tempfile.gettempdir() answers, Beam included
    history = tmp_path / "history" / "20250101-000000-abcd"
    history.mkdir(parents=True)
    stream = EventStream(GeneratorConfig(seed=5), run_id="leftovers")
    events = [v for m in stream.take(20) if m.expected != DEAD_LETTER and isinstance(v := validate(m.data), Accepted)]
    (history / "part-00000.jsonl").write_bytes(b"\n".join(orjson.dumps(e.event) for e in events[:5]) + b"\n")

    before = sorted(temp.glob("beam-temp*"))
    summary = backfill(["--project", stack.project, "--history_uri", str(tmp_path / "history"),
                        "--output_root", str(tmp_path / "output"), "--dataset", "",
                        "--dead_letter_topic", names.DEAD_LETTER_TOPIC])  # fmt: skip
    assert summary.state == "DONE" and summary.counts[M.gcs_lines(events[0].event_type)] >= 1, summary
    assert before == [] and sorted(temp.glob("beam-temp*")) == []
