"""A run manifest keeps a valid near-limit event whole in its `event` column (a natural-key sink contract finds
events by it), and every Python reader of events-*.csv reads such a row back (the csv module's default field limit is
131,072 characters)."""

from __future__ import annotations

import os
import subprocess
import sys

from pipeline_support import generated

from eventmodel.schema import MAX_PAYLOAD_BYTES
from publisher.manifest import EVENT_TEXT_LIMIT, PUBLISHED, EventLog, iter_events, run_dir, tally


def test_a_valid_event_up_to_the_payload_limit_is_kept_whole_and_read_back(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path))
    assert EVENT_TEXT_LIMIT == MAX_PAYLOAD_BYTES
    sizes = (MAX_PAYLOAD_BYTES - 1, MAX_PAYLOAD_BYTES)
    near = generated(2, seed=41, type_weights={"order": 1.0}, large_rate=1.0, large_sizes=sizes)
    oversize = generated(1, seed=41, run_id="run-oversize", malformed_rate=1.0, malformed_weights={"oversize_event": 1})
    assert [len(m.data) for m in near] == list(sizes) and len(oversize[0].data) > MAX_PAYLOAD_BYTES
    log = EventLog(run_dir("r1"), 0)
    for i, m in enumerate(near + oversize):
        log.record(m, PUBLISHED, f"m{i}")
    log.close()
    rows = {r["event_id"]: r for r in iter_events("r1")}
    assert [rows[m.event_id]["event"] for m in near] == [m.data.decode() for m in near]
    assert rows[oversize[0].event_id]["event"] == ""  # past the limit: its MD5 identifies it
    assert tally("r1")["kind:oversize_event"] == 1
    # A process that only imports the manifest module reads the rows too (the limit is raised at its import).
    script = "from publisher.manifest import iter_events\nprint(sorted(len(r['event']) for r in iter_events('r1')))\n"
    env_home = {"WORKBENCH_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         env={**os.environ, **env_home}, check=True).stdout  # fmt: skip
    assert out.strip() == str(sorted([0, *sizes]))
